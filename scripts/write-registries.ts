/**
 * Writes the lists core owns into the files the other languages read, so they are declared once:
 * `node --import tsx scripts/write-registries.ts` after changing packages/core/src/methods.ts or a
 * feedback kind. packages/core/src/registries.test.ts fails while a written file is stale.
 */
import { writeFileSync } from 'node:fs';
import { registryFiles } from '../packages/core/src/registry-files.js';

const root = new URL('../', import.meta.url);
for (const [path, content] of Object.entries(registryFiles())) {
  writeFileSync(new URL(path, root), content);
  console.log(`wrote ${path}`);
}
