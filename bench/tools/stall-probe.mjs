// What holds `ratchet serve`'s event loop: a preload that records, with wall-clock times, every
// event-loop gap over 4 ms (and the process CPU used in it: little CPU means the process waited
// for a core or the disk), every GC pause, and every SQLite statement over 0.5 ms (better-sqlite3
// runs them on the loop), plus per-statement totals. Each gap also carries the main thread's own
// time on a CPU and waiting for one (Linux schedstat, in ms), which process CPU cannot tell apart
// from the WAL-sync, checkpoint and read threads'. Written to $STALL_PROBE_DIR/probe-<pid>.json
// at exit. Off unless loaded:
//   STALL_PROBE_DIR=DIR BENCH_LOADGEN_TRACE_DIR=DIR \
//   BENCH_RATCHET_NODE_FLAGS="--import $PWD/bench/tools/stall-probe.mjs" node ... bench/run.ts gateway-latency --no-write
//   node --import tsx bench/tools/stall-report.ts DIR
// Plain JavaScript: it loads before tsx. The 1 ms sampling timer costs some CPU of its own.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { monitorEventLoopDelay, PerformanceObserver, performance } from 'node:perf_hooks';

const dir = process.env.STALL_PROBE_DIR;
const origin = performance.timeOrigin;
const gaps = [];
const gcs = [];
const sqls = [];
const totals = new Map();

const Database = createRequire(`${process.cwd()}/package.json`)('better-sqlite3');
function timed(fn, label) {
  return function (...args) {
    const t0 = performance.now();
    try {
      return fn.apply(this, args);
    } finally {
      const dt = performance.now() - t0;
      const text = label ?? (this.source ?? '').slice(0, 90);
      const t = totals.get(text) ?? { n: 0, ms: 0, max: 0 };
      t.n++;
      t.ms += dt;
      t.max = Math.max(t.max, dt);
      totals.set(text, t);
      if (dt > 0.5) sqls.push({ t: origin + t0, dt, sql: text });
    }
  };
}
// Statements are native objects: their prototype is patched once, from the first one prepared.
let patched = false;
const prepare = Database.prototype.prepare;
Database.prototype.prepare = function (...args) {
  const statement = prepare.apply(this, args);
  if (!patched) {
    patched = true;
    const proto = Object.getPrototypeOf(statement);
    for (const m of ['run', 'all', 'get', 'iterate']) proto[m] = timed(proto[m]);
  }
  return statement;
};
Database.prototype.exec = timed(Database.prototype.exec, 'exec');

new PerformanceObserver((list) => {
  for (const e of list.getEntries())
    gcs.push({ t: origin + e.startTime, dt: e.duration, kind: e.detail?.kind });
}).observe({ entryTypes: ['gc'] });

const delay = monitorEventLoopDelay({ resolution: 1 });
delay.enable();
// The main thread's nanoseconds on a CPU and waiting on a run queue (null where there is no schedstat).
const schedstatPath = `/proc/self/task/${process.pid}/schedstat`;
function mainThread() {
  try {
    const [run, wait] = readFileSync(schedstatPath, 'utf8').split(' ').map(Number);
    return { run, wait };
  } catch {
    return null;
  }
}
let last = performance.now();
let lastCpu = process.cpuUsage();
let lastMain = mainThread();
setInterval(() => {
  const now = performance.now();
  const main = mainThread();
  if (now - last > 4) {
    const cpu = process.cpuUsage(lastCpu);
    gaps.push({
      t: origin + last,
      dt: now - last,
      cpu: (cpu.user + cpu.system) / 1000,
      ...(main && lastMain
        ? { mainRun: (main.run - lastMain.run) / 1e6, mainWait: (main.wait - lastMain.wait) / 1e6 }
        : {}),
    });
  }
  last = now;
  lastCpu = process.cpuUsage();
  lastMain = main;
}, 1).unref();

process.on('exit', () => {
  if (!dir) return;
  const ms = (ns) => ns / 1e6;
  writeFileSync(
    `${dir}/probe-${process.pid}.json`,
    JSON.stringify({
      loopDelay: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) },
      gaps,
      gcs,
      sqls,
      totals: [...totals]
        .map(([sql, v]) => ({ sql, ...v }))
        .sort((a, b) => b.ms - a.ms)
        .slice(0, 40),
    }),
  );
});
