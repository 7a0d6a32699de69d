import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { importCircles, importGraph, listSources, readSource } from './import-graph.js';

const root = resolve(import.meta.dirname, '..');
const packagesDir = join(root, 'packages');
const packageSources = () =>
  listSources(packagesDir, (name) => name === 'node_modules' || name === 'dist' || name === 'e2e').filter(
    (p) => relative(packagesDir, p).split('/')[1] === 'src',
  );

describe('import graph', () => {
  it('has no import circles in any package (type-only imports included)', () => {
    const graph = importGraph(packageSources().map(readSource), packagesDir);
    const circles = importCircles(graph).map((c) => c.map((p) => relative(root, p)));
    expect(circles).toEqual([]);
  });

  it('finds a planted circle, and a circle of type-only imports', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ratchet-circles-'));
    writeFileSync(join(dir, 'a.ts'), "import { b } from './b.js';\nexport const a = b;\n");
    writeFileSync(join(dir, 'b.ts'), "import type { T } from './c.js';\nexport const b = 1 as T;\n");
    writeFileSync(join(dir, 'c.ts'), "export type { A } from './a.js';\nexport type T = number;\n");
    writeFileSync(join(dir, 'd.ts'), "import { a } from './a.js';\nexport const d = a;\n");
    const graph = importGraph(listSources(dir).map(readSource), packagesDir);
    expect(importCircles(graph).map((c) => c.map((p) => relative(dir, p)))).toEqual([
      ['a.ts', 'b.ts', 'c.ts'],
    ]);
  });

  it('the loop imports no SDK: simulated users live with the demo tooling (packages/cli/src/demo)', () => {
    const loopFiles = listSources(join(packagesDir, 'loop', 'src')).map(readSource);
    const sdkUsers = loopFiles.filter((f) => f.specifiers.some((s) => s.startsWith('@ratchet/sdk')));
    expect(sdkUsers.map((f) => relative(root, f.path))).toEqual([]);
  });
});
