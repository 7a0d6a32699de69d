// Starts the report thread from its TypeScript source (tests and benches run the sources):
// tsx compiles it on the fly. A built server starts dist/reports/worker.js directly.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
