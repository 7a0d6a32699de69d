// Entry point when running from source (tests, `tsx`): the same as bin/ratchet.js.
import { main } from './main.js';

main(process.argv).catch((err) => {
  console.error(`ratchet: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
