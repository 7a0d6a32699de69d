import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  importCircles,
  importGraph,
  listSources,
  networkCalls,
  nodeBuiltinImports,
  nodeGlobalUses,
  readSource,
} from './import-graph.js';

const root = resolve(import.meta.dirname, '..');
const packagesDir = join(root, 'packages');
const packageSources = () =>
  listSources(packagesDir, (name) => name === 'node_modules' || name === 'dist' || name === 'e2e').filter(
    (p) => relative(packagesDir, p).split('/')[1] === 'src',
  );

const isTestFile = (p: string) => /\.test\.tsx?$/.test(p) || p.includes('/test-utils/');

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

describe('core is browser-safe', () => {
  const coreSources = () => listSources(join(packagesDir, 'core', 'src')).filter((p) => !isTestFile(p));

  it('imports no Node built-in and no package but zod', () => {
    const offending = coreSources().flatMap((p) => {
      const file = readSource(p);
      const foreign = file.specifiers.filter((s) => !s.startsWith('.') && s !== 'zod');
      return [...new Set([...nodeBuiltinImports(file), ...foreign])].map((s) => `${relative(root, p)}: ${s}`);
    });
    expect(offending).toEqual([]);
  });

  it("calls no network and uses none of Node's globals (Buffer, process...)", () => {
    expect(coreSources().flatMap(networkCalls)).toEqual([]);
    expect(coreSources().flatMap(nodeGlobalUses)).toEqual([]);
  });

  it('the checks catch a planted Node import and a planted fetch', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ratchet-core-'));
    mkdirSync(join(dir, 'sub'));
    const file = join(dir, 'sub', 'x.ts');
    writeFileSync(
      file,
      "import { createHash } from 'node:crypto';\nimport fs from 'fs';\n// fetch( in a comment is fine\nexport const get = () => fetch('http://x');\nexport const y = { fetch: 1 };\nexport const z = Buffer.from('a');\n",
    );
    expect(nodeBuiltinImports(readSource(file))).toEqual(['node:crypto', 'fs']);
    expect(networkCalls(file).map((s) => s.split(' ')[1])).toEqual(['fetch']);
    expect(nodeGlobalUses(file).map((s) => s.split(' ')[1])).toEqual(['Buffer']);
  });
});

describe('the dashboard takes its shapes from core', () => {
  const declared = (files: string[]) =>
    new Set(
      files.flatMap((p) =>
        [...readFileSync(p, 'utf8').matchAll(/^export (?:interface|type) (\w+)/gm)].map((m) => m[1]!),
      ),
    );

  it('declares no interface or type that core declares (types.ts, the hand-made copy, is gone)', () => {
    expect(existsSync(join(packagesDir, 'web', 'src', 'app', 'types.ts'))).toBe(false);
    const core = declared(listSources(join(packagesDir, 'core', 'src')).filter((p) => !isTestFile(p)));
    const web = declared(listSources(join(packagesDir, 'web', 'src')));
    expect([...web].filter((name) => core.has(name))).toEqual([]);
  });
});
