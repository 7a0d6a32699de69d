// The open-loop load generator as its own process (argv[2]: an OpenLoopConfig as JSON); prints
// its OpenLoopResult as one JSON line.
import { type OpenLoopConfig, runOpenLoop } from '../lib/openloop.js';

const config = JSON.parse(process.argv[2] ?? '{}') as OpenLoopConfig;
const result = await runOpenLoop(config);
console.log(JSON.stringify(result));
