#!/usr/bin/env node
import { main } from '../dist/main.js';

main(process.argv).catch((err) => {
  console.error(`ratchet: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
