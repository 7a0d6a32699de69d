// Summarizes a V8 .cpuprofile (node --cpu-prof): where the non-idle time went, by self time per
// function, by package/file, and inclusive time of our own functions.
//   node --import tsx bench/tools/profile-summary.ts FILE.cpuprofile [--top N] [--from S] [--to S]
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const file = process.argv[2];
if (!file) {
  console.error('usage: profile-summary FILE.cpuprofile [--top N] [--from S] [--to S]');
  process.exit(2);
}
const top = arg('--top', 30);
const from = arg('--from', 0) * 1e6;
const to = arg('--to', Number.POSITIVE_INFINITY) * 1e6;
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

function where(n: Node): string {
  const u = n.callFrame.url;
  if (!u) return '(native)';
  const nm = u.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (nm) return nm[1]!;
  const pk = u.match(/packages\/([^/]+)\/src\/(.*)$/);
  if (pk) return `@ratchet/${pk[1]}/${pk[2]}`;
  if (u.startsWith('node:')) return u;
  return u.replace(/^file:\/\//, '');
}
function label(n: Node): string {
  const f = n.callFrame;
  return `${f.functionName || '(anonymous)'} ${where(n)}:${f.lineNumber + 1}`;
}

const self = new Map<number, number>();
let t = p.startTime;
let total = 0;
let idle = 0;
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i]!;
  const rel = t - p.startTime;
  if (rel < from || rel > to) continue;
  const dt = p.timeDeltas[i + 1] ?? 0;
  const id = p.samples[i]!;
  const name = byId.get(id)!.callFrame.functionName;
  if (name === '(idle)') {
    idle += dt;
    continue;
  }
  total += dt;
  self.set(id, (self.get(id) ?? 0) + dt);
}

const ms = (us: number) => (us / 1000).toFixed(1);
const pct = (us: number) => `${((100 * us) / total).toFixed(1)}%`;
console.log(
  `${file}\nbusy ${ms(total)} ms, idle ${ms(idle)} ms (window ${ms(Math.min(to, p.endTime - p.startTime) - from)} ms)\n`,
);

const selfByLabel = new Map<string, number>();
const byWhere = new Map<string, number>();
const inclusive = new Map<string, number>();
for (const [id, us] of self) {
  const n = byId.get(id)!;
  selfByLabel.set(label(n), (selfByLabel.get(label(n)) ?? 0) + us);
  byWhere.set(where(n), (byWhere.get(where(n)) ?? 0) + us);
  // Inclusive time: every distinct frame on the stack gets the sample once.
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const l = label(byId.get(cur)!);
    if (seen.has(l)) continue;
    seen.add(l);
    inclusive.set(l, (inclusive.get(l) ?? 0) + us);
  }
}
const show = (title: string, m: Map<string, number>, filter: (k: string) => boolean = () => true) => {
  console.log(title);
  for (const [k, us] of [...m]
    .filter(([k]) => filter(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top))
    console.log(`  ${pct(us).padStart(6)} ${ms(us).padStart(8)} ms  ${k}`);
  console.log('');
};
show('self time by package / file', byWhere);
show('self time by function', selfByLabel);
show('inclusive time, our code (@ratchet/*)', inclusive, (k) => k.includes('@ratchet/'));
show('inclusive time, everything', inclusive);

// Event-loop blocks: stretches of consecutive busy samples (no idle in between), longest first,
// each named by the innermost @ratchet frame (or the top frame) seen most often within it.
const blocks: { start: number; us: number; names: Map<string, number> }[] = [];
let cur: { start: number; us: number; names: Map<string, number> } | undefined;
t = p.startTime;
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i]!;
  const rel = t - p.startTime;
  if (rel < from || rel > to) continue;
  const dt = p.timeDeltas[i + 1] ?? 0;
  const node = byId.get(p.samples[i]!)!;
  if (node.callFrame.functionName === '(idle)') {
    if (cur) blocks.push(cur);
    cur = undefined;
    continue;
  }
  cur ??= { start: rel, us: 0, names: new Map() };
  cur.us += dt;
  let name = label(node);
  for (let c: number | undefined = node.id; c !== undefined; c = parent.get(c)) {
    const l = label(byId.get(c)!);
    if (l.includes('@ratchet/')) {
      name = l;
      break;
    }
  }
  cur.names.set(name, (cur.names.get(name) ?? 0) + dt);
}
if (cur) blocks.push(cur);
const longest = blocks.sort((a, b) => b.us - a.us).slice(0, top);
const over = (ms_: number) => blocks.filter((b) => b.us > ms_ * 1000).length;
console.log(
  `busy stretches (event loop not idle): ${blocks.length}; over 2 ms: ${over(2)}, over 5 ms: ${over(5)}, over 10 ms: ${over(10)}`,
);
for (const b of longest) {
  const main = [...b.names].sort((x, y) => y[1] - x[1])[0]!;
  console.log(
    `  ${ms(b.us).padStart(7)} ms at ${(b.start / 1e6).toFixed(2)} s, mostly ${main[0]} (${ms(main[1])} ms)`,
  );
}

// Where a request's time goes, by concern: each busy sample goes to the first rule any frame on
// its stack matches.
const rules: [string, (frames: Node[]) => boolean][] = [
  [
    'storage: SQLite/PostgreSQL writes and reads (store, kysely, drivers)',
    (fs) => fs.some((n) => /@ratchet\/store|kysely|better-sqlite3|(^|\/)pg(-|\/|$)/.test(where(n))),
  ],
  [
    'interaction log: buffering, parsing the answer for the log',
    (fs) =>
      fs.some(
        (n) =>
          /log-writer\.ts/.test(where(n)) || /^(logCompletion|log|enqueue)$/.test(n.callFrame.functionName),
      ),
  ],
  ['metrics (prom-client)', (fs) => fs.some((n) => where(n) === 'prom-client')],
  ['garbage collector', (fs) => fs[0]!.callFrame.functionName === '(garbage collector)'],
  ['validation (zod)', (fs) => fs.some((n) => where(n) === 'zod')],
  ['upstream HTTP client (undici)', (fs) => fs.some((n) => where(n) === 'undici')],
  [
    'HTTP server (fastify, node:http, sockets)',
    (fs) =>
      fs.some((n) =>
        /^(fastify|find-my-way|light-my-request|avvio|secure-json-parse|fast-json-stringify|@fastify\/.*)$|^node:(_http|net|internal\/stream|internal\/http)/.test(
          where(n),
        ),
      ),
  ],
  ['our request handling (@ratchet/*)', (fs) => fs.some((n) => where(n).startsWith('@ratchet/'))],
  ['other', () => true],
];
const byConcern = new Map<string, number>();
for (const [id, us] of self) {
  const frames: Node[] = [];
  for (let c: number | undefined = id; c !== undefined; c = parent.get(c)) frames.push(byId.get(c)!);
  const rule = rules.find(([, test]) => test(frames))!;
  byConcern.set(rule[0], (byConcern.get(rule[0]) ?? 0) + us);
}
console.log('');
show('busy time by concern', byConcern);
