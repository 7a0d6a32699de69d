// `ratchet` from the TypeScript sources, exactly as packages/cli/bin/ratchet.js runs the build:
// node --conditions=source --import tsx bench/procs/ratchet.ts serve ...
import { main } from '@ratchet/cli';

main(process.argv).catch((err) => {
  console.error(`ratchet: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
