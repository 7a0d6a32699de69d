// Attributes `ratchet serve`'s event-loop stalls recorded by bench/tools/stall-probe.mjs (see
// there): each gap of at least --min ms is put on what covered most of it (a SQLite statement
// kind, a GC kind), else on the main thread's own scheduling when the probe had it: waiting on a
// run queue for most of the gap (another thread or process had the core), on a CPU for most of it
// (JavaScript or native work on the loop), or neither (blocked in a system call: the disk, a lock);
// without it, on the process CPU it used (under 30%: off CPU). With the load generator's traces (BENCH_LOADGEN_TRACE_DIR) in the same folder, also
// counts the slow calls each measured window had.
//   node --import tsx bench/tools/stall-report.ts DIR [--min MS]
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface Span {
  t: number;
  dt: number;
}
interface Probe {
  loopDelay: { p50: number; p99: number; max: number };
  gaps: (Span & { cpu: number; mainRun?: number; mainWait?: number })[];
  gcs: (Span & { kind: number })[];
  sqls: (Span & { sql: string })[];
  totals: { sql: string; n: number; ms: number; max: number }[];
}

const dir = process.argv[2];
if (!dir) throw new Error('usage: stall-report.ts DIR [--min MS]');
const minAt = process.argv.indexOf('--min');
const min = minAt > 0 ? Number(process.argv[minAt + 1]) : 10;
const files = readdirSync(dir);
// perf_hooks' NODE_PERFORMANCE_GC_* flags.
const gcKinds: Record<number, string> = {
  1: 'gc minor (scavenge)',
  4: 'gc major (mark-compact)',
  8: 'gc incremental marking',
  16: 'gc weak callbacks',
};

function sqlKind(sql: string): string {
  if (/"i"\."route"|rollup/.test(sql)) return 'sql rollups';
  if (sql === 'commit') return 'sql commit';
  if (sql.startsWith('insert into interactions')) return 'sql insert interactions';
  return 'sql other';
}

for (const file of files.filter((f) => f.startsWith('probe-'))) {
  const probe = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Probe;
  const events = [
    ...probe.sqls.map((s) => ({ ...s, kind: sqlKind(s.sql) })),
    ...probe.gcs.map((g) => ({ ...g, kind: gcKinds[g.kind] ?? `gc ${g.kind}` })),
  ];
  const byCause = new Map<string, { n: number; ms: number; max: number }>();
  for (const gap of probe.gaps.filter((g) => g.dt >= min)) {
    const covered = new Map<string, number>();
    for (const e of events) {
      const overlap = Math.min(gap.t + gap.dt, e.t + e.dt) - Math.max(gap.t, e.t);
      if (overlap > 0) covered.set(e.kind, (covered.get(e.kind) ?? 0) + overlap);
    }
    const [top, ms] = [...covered].sort((a, b) => b[1] - a[1])[0] ?? ['', 0];
    const cause =
      ms > 0.5 * gap.dt
        ? top
        : gap.mainWait !== undefined && gap.mainRun !== undefined
          ? gap.mainWait > 0.5 * gap.dt
            ? 'main thread waiting for a core'
            : gap.mainRun > 0.5 * gap.dt
              ? 'main thread on a CPU (not SQL, not GC)'
              : 'main thread blocked (neither running nor queued)'
          : gap.cpu < 0.3 * gap.dt
            ? 'other, off CPU'
            : 'other, on CPU';
    const c = byCause.get(cause) ?? { n: 0, ms: 0, max: 0 };
    c.n++;
    c.ms += gap.dt;
    c.max = Math.max(c.max, gap.dt);
    byCause.set(cause, c);
  }
  console.log(
    `${file}: event-loop delay p50 ${probe.loopDelay.p50.toFixed(2)} ms, p99 ${probe.loopDelay.p99.toFixed(2)} ms, max ${probe.loopDelay.max.toFixed(1)} ms`,
  );
  console.log(`gaps of ${min} ms or more, by what covered most of each:`);
  for (const [cause, c] of [...byCause].sort((a, b) => b[1].ms - a[1].ms))
    console.log(
      `  ${cause.padEnd(48)} ${String(c.n).padStart(6)} gaps ${c.ms.toFixed(0).padStart(7)} ms, longest ${c.max.toFixed(1)} ms`,
    );
  const long = probe.gaps.filter((g) => g.dt >= min && g.mainRun !== undefined);
  if (long.length > 0) {
    const sum = (f: (g: (typeof long)[number]) => number) => long.reduce((a, g) => a + f(g), 0);
    console.log(
      `  in those gaps the main thread ran ${sum((g) => g.mainRun!).toFixed(0)} ms and waited for a core ${sum((g) => g.mainWait!).toFixed(0)} ms of ${sum((g) => g.dt).toFixed(0)} ms`,
    );
  }
  console.log('statements by total time:');
  for (const t of probe.totals.slice(0, 8))
    console.log(
      `  ${t.ms.toFixed(0).padStart(6)} ms ${String(t.n).padStart(7)}x max ${t.max.toFixed(1).padStart(6)} ms  ${t.sql.slice(0, 70)}`,
    );
}
for (const file of files.filter((f) => f.startsWith('loadgen-'))) {
  const trace = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { window: number[]; slow: number[][] };
  const over = (ms: number) => trace.slow.filter(([, latency]) => latency! >= ms).length;
  console.log(`${file}: calls slower than 5 ms: ${over(5)}, 20 ms: ${over(20)}, 50 ms: ${over(50)}`);
}
