import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

/**
 * The import graph of the TypeScript sources, for the checks in import-graph.test.ts: no import
 * circles (type-only imports count: a circle of types is still two files that cannot be read
 * apart), and a browser-safe core. Imports are read with TypeScript's own pre-processor, so
 * `import type`, `export ... from` and dynamic `import()` are all seen.
 */

export interface SourceFile {
  path: string;
  /** Every module specifier the file names, as written. */
  specifiers: string[];
}

const sourceExtensions = ['.ts', '.tsx'];

export function listSources(
  dir: string,
  skip = (name: string) => name === 'node_modules' || name === 'dist',
): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (skip(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listSources(path, skip));
    else if (sourceExtensions.some((e) => name.endsWith(e)) && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

export function readSource(path: string): SourceFile {
  const info = ts.preProcessFile(readFileSync(path, 'utf8'), true, true);
  return { path, specifiers: info.importedFiles.map((f) => f.fileName) };
}

/** A relative specifier to the file it names (`./x.js` is `./x.ts` in the sources). */
function resolveRelative(from: string, specifier: string): string | undefined {
  const base = resolve(dirname(from), specifier);
  const stem = base.replace(/\.(m|c)?js$/, '');
  const candidates = [
    base,
    ...sourceExtensions.map((e) => stem + e),
    ...sourceExtensions.map((e) => join(base, `index${e}`)),
  ];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile());
}

/**
 * A workspace package specifier (`@ratchet/store/testing`) to its source file, from the package's
 * `exports` map (the "source" condition the tests and tsc use).
 */
function resolveWorkspace(packagesDir: string, specifier: string): string | undefined {
  const m = /^@ratchet\/([^/]+)(\/.*)?$/.exec(specifier);
  if (!m) return undefined;
  const pkgDir = join(packagesDir, m[1]!);
  const manifest = join(pkgDir, 'package.json');
  if (!existsSync(manifest)) return undefined;
  const exportsMap = JSON.parse(readFileSync(manifest, 'utf8')).exports ?? {};
  const entry = exportsMap[m[2] ? `.${m[2]}` : '.'];
  const source = typeof entry === 'object' ? entry?.source : undefined;
  return source ? resolve(pkgDir, source) : undefined;
}

/** Edges from each source file to the source files it imports (relative and workspace imports). */
export function importGraph(files: readonly SourceFile[], packagesDir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const targets = new Set<string>();
    for (const s of f.specifiers) {
      const target = s.startsWith('.') ? resolveRelative(f.path, s) : resolveWorkspace(packagesDir, s);
      if (target) targets.add(target);
    }
    graph.set(f.path, [...targets]);
  }
  return graph;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
export function importCircles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const circles: string[][] = [];
  // Iterative, so a deep import chain cannot overflow the call stack.
  for (const root of graph.keys()) {
    if (index.has(root)) continue;
    const work: Array<{ node: string; next: number }> = [{ node: root, next: 0 }];
    index.set(root, counter);
    low.set(root, counter++);
    stack.push(root);
    onStack.add(root);
    while (work.length) {
      const frame = work[work.length - 1]!;
      const edges = graph.get(frame.node) ?? [];
      if (frame.next < edges.length) {
        const to = edges[frame.next++]!;
        if (!index.has(to)) {
          index.set(to, counter);
          low.set(to, counter++);
          stack.push(to);
          onStack.add(to);
          work.push({ node: to, next: 0 });
        } else if (onStack.has(to)) low.set(frame.node, Math.min(low.get(frame.node)!, index.get(to)!));
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1]!.node;
        low.set(parent, Math.min(low.get(parent)!, low.get(frame.node)!));
      }
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        let member: string;
        do {
          member = stack.pop()!;
          onStack.delete(member);
          component.push(member);
        } while (member !== frame.node);
        const selfLoop = component.length === 1 && (graph.get(frame.node) ?? []).includes(frame.node);
        if (component.length > 1 || selfLoop) circles.push(component.sort());
      }
    }
  }
  return circles;
}

const nodeBuiltins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/** Imports of Node's built-in modules (`node:fs`, `crypto`, `fs/promises`...). */
export function nodeBuiltinImports(file: SourceFile): string[] {
  return file.specifiers.filter((s) => s.startsWith('node:') || nodeBuiltins.has(s));
}

/**
 * Network access written in a file: `fetch`, XMLHttpRequest, WebSocket, EventSource or
 * navigator.sendBeacon used as a value (comments and strings are skipped by the scanner).
 */
export function networkCalls(path: string): string[] {
  return globalUses(path, ['fetch', 'XMLHttpRequest', 'WebSocket', 'EventSource', 'sendBeacon']);
}

/** Node's own globals (a browser has none of them), used as values. */
export function nodeGlobalUses(path: string): string[] {
  return globalUses(path, ['Buffer', 'process', 'require', '__dirname', '__filename', 'setImmediate']);
}

function globalUses(path: string, globals: readonly string[]): string[] {
  const names = new Set(globals);
  const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isIdentifier(node) && names.has(node.text)) {
      const parent = node.parent;
      // A property or type named "fetch" is not a call to the network; the global is.
      const isMemberName =
        ts.isPropertyAssignment(parent) || ts.isPropertySignature(parent) || ts.isMethodDeclaration(parent);
      const isTypeOnly = ts.isTypeReferenceNode(parent);
      if (!isMemberName && !isTypeOnly) {
        const { line } = source.getLineAndCharacterOfPosition(node.getStart());
        found.push(`${relative(process.cwd(), path)}:${line + 1} ${node.text}`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}
