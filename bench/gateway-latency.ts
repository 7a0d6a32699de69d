import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '@ratchet/store';
import { Pool } from 'undici';
import { type Bench, type BenchContext, type BenchOutcome, loadNote, timestampDir } from './lib/bench.js';
import {
  ensureLiteLLM,
  ensurePortkey,
  LITELLM_VERSION,
  PORTKEY_VERSION,
  type RunningGateway,
  startLiteLLM,
  startPortkey,
} from './lib/competitors.js';
import { type OpenLoopConfig, type OpenLoopResult, runOpenLoop } from './lib/openloop.js';
import { firstJsonLine, groupCpuMs, type Proc, runJson, startProc, tsNode } from './lib/procs.js';
import { createProject, startRatchet } from './lib/ratchet.js';
import { benchDir, round, workDir } from './lib/results.js';
import { median, percentile, sortedCopy, spread } from './lib/stats.js';

export interface GatewayLatencyConfig {
  rate: number;
  warmupS: number;
  durationS: number;
  runs: number;
  competitors: boolean;
  /** Run the load generator in this process instead of its own (the smoke test, to save a start-up). */
  inProcessLoadgen: boolean;
  /** A request unanswered after this long is abandoned and counted as a timeout (ms). */
  timeoutMs: number;
  /**
   * A second pass at a low rate that every gateway sustains, so that added latency is also seen
   * without queueing (0: none). Its metrics carry `_<rate>rps` in their names.
   */
  lowRate: number;
  lowWarmupS: number;
  lowDurationS: number;
  /**
   * A pass of Ratchet alone (beside direct calls) at a high rate (0: none); its added p99 is
   * `gateway_added_p99_<rate>rps_ms` (issue 15's `gateway_added_p99_ms_1000rps`, with the unit
   * last as every bench metric has it). The competitors are left out: at 200 req/s LiteLLM already
   * times out on this machine.
   */
  highRate: number;
  highWarmupS: number;
  highDurationS: number;
  /** Streamed calls, one at a time, alternating direct and Ratchet, for the added time to first token (0: none). */
  ttftCalls: number;
}

function envNumber(name: string, fallback: number): number {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : Number(v);
}

export function gatewayLatencyConfig(tiny: boolean): GatewayLatencyConfig {
  if (tiny)
    return {
      rate: 50,
      warmupS: 0.2,
      durationS: 1,
      runs: 1,
      competitors: false,
      inProcessLoadgen: true,
      timeoutMs: 5000,
      lowRate: 0,
      lowWarmupS: 0,
      lowDurationS: 0,
      highRate: 0,
      highWarmupS: 0,
      highDurationS: 0,
      ttftCalls: 20,
    };
  return {
    rate: envNumber('BENCH_GATEWAY_RATE', 200),
    warmupS: envNumber('BENCH_GATEWAY_WARMUP_S', 5),
    durationS: envNumber('BENCH_GATEWAY_DURATION_S', 20),
    runs: envNumber('BENCH_GATEWAY_RUNS', 3),
    competitors: process.env.BENCH_GATEWAY_COMPETITORS !== '0',
    inProcessLoadgen: false,
    timeoutMs: envNumber('BENCH_GATEWAY_TIMEOUT_MS', 5000),
    lowRate: envNumber('BENCH_GATEWAY_LOW_RATE', 20),
    lowWarmupS: envNumber('BENCH_GATEWAY_LOW_WARMUP_S', 2),
    lowDurationS: envNumber('BENCH_GATEWAY_LOW_DURATION_S', 30),
    highRate: envNumber('BENCH_GATEWAY_HIGH_RATE', 1000),
    highWarmupS: envNumber('BENCH_GATEWAY_HIGH_WARMUP_S', 3),
    highDurationS: envNumber('BENCH_GATEWAY_HIGH_DURATION_S', 15),
    ttftCalls: envNumber('BENCH_GATEWAY_TTFT_CALLS', 400),
  };
}

const questions = [
  'Where is my parcel? I ordered a pair of running shoes last Tuesday and the tracking page has not changed since Friday.',
  'Can I change the delivery address on an order that has already shipped?',
  'How do I reset my password if I no longer have access to the email address on my account?',
  'What is your return policy for items bought on sale, and do I pay for the return label?',
  'My invoice shows two charges for the same order number. Could you check what happened and refund one?',
  'Do you ship to Norway, and if so how long does standard delivery usually take?',
  'The discount code SPRING20 says it is invalid at checkout although the email says it is valid until May.',
  'I would like to cancel my subscription at the end of the current billing period. What do I need to do?',
];

/** A realistic small non-streaming chat request (about 600 bytes), a few variants in rotation. */
export function chatBodies(): string[] {
  return questions.map((q, i) =>
    JSON.stringify({
      model: 'bench-model',
      messages: [
        {
          role: 'system',
          content:
            'You are the support assistant of an online shop. Answer briefly and politely; if you need an order number, ask for it.',
        },
        { role: 'user', content: q },
      ],
      temperature: 0.7,
      max_tokens: 256,
      user: `user-${i}`,
    }),
  );
}

interface Target {
  name: 'direct' | 'gateway' | 'portkey' | 'litellm' | 'proto';
  url: string;
  headers: Record<string, string>;
  requireHeader?: string;
  /** The process doing the target's work, for its CPU time per request. */
  proc: Proc;
}

interface Measurement extends OpenLoopResult {
  /** CPU time of the target's processes per request (warm-up included), ms. */
  cpu_per_request_ms: number;
}

interface Pass {
  rate: number;
  warmupS: number;
  durationS: number;
  runs: number;
  /** Appended to metric names ('' for the main pass). */
  suffix: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until a target has finished any backlog (its CPU use stays under 5% for a second), so
 * that a gateway that fell behind does not steal CPU from the next target's measurement.
 */
async function quiesce(proc: Proc, maxMs = 60_000): Promise<void> {
  const pid = proc.child.pid!;
  const deadline = Date.now() + maxMs;
  let quiet = 0;
  let last = groupCpuMs(pid);
  while (Date.now() < deadline && quiet < 2) {
    await sleep(500);
    const now = groupCpuMs(pid);
    quiet = now - last < 25 ? quiet + 1 : 0;
    last = now;
  }
}

/** Measures each competitor's CPU over a few idle seconds, then stops it; returns a note saying so. */
async function stopIdleCompetitors(competitors: RunningGateway[], log: (m: string) => void): Promise<string> {
  const idleMs = 10_000;
  const before = competitors.map((c) => groupCpuMs(c.proc.child.pid!));
  await sleep(idleMs);
  const used = competitors.map(
    (c, i) => `${c.name} ${Math.round(groupCpuMs(c.proc.child.pid!) - before[i]!)} ms`,
  );
  for (const c of competitors) await c.proc.stop(10_000);
  const note = `Before Ratchet's pass alone the competitors were stopped (CPU they used idle over ${idleMs / 1000} s: ${used.join(', ')}).`;
  log(note);
  return note;
}

async function measure(
  target: Target,
  cfg: GatewayLatencyConfig,
  pass: Pass,
  bodies: string[],
  dir: string,
): Promise<Measurement> {
  const cpuBefore = groupCpuMs(target.proc.child.pid!);
  const result = await loadgen(target, cfg, pass, bodies, dir);
  const cpu = groupCpuMs(target.proc.child.pid!) - cpuBefore;
  const requests = Math.round((pass.warmupS + pass.durationS) * pass.rate);
  if (!cfg.inProcessLoadgen) await quiesce(target.proc);
  return { ...result, cpu_per_request_ms: cpu / requests };
}

async function loadgen(
  target: Target,
  cfg: GatewayLatencyConfig,
  pass: Pass,
  bodies: string[],
  dir: string,
): Promise<OpenLoopResult> {
  const lg: OpenLoopConfig = {
    url: target.url,
    headers: target.headers,
    bodies,
    rate: pass.rate,
    warmupS: pass.warmupS,
    durationS: pass.durationS,
    timeoutMs: cfg.timeoutMs,
    ...(target.requireHeader ? { requireHeader: target.requireHeader } : {}),
  };
  if (cfg.inProcessLoadgen) return runOpenLoop(lg);
  return runJson<OpenLoopResult>(
    {
      name: `loadgen(${target.name})`,
      command: process.execPath,
      args: [...tsNode, join(benchDir, 'procs/loadgen.ts'), JSON.stringify(lg)],
      logFile: join(dir, 'loadgen.log'),
    },
    (pass.warmupS + pass.durationS) * 1000 + cfg.timeoutMs + 60_000,
  );
}

/**
 * One pass: every target at the pass's rate, `runs` times, rotating the order each run. Adds the
 * metrics (medians over runs of per-run target - direct percentiles) and returns the spreads.
 */
async function runPass(
  ctx: BenchContext,
  cfg: GatewayLatencyConfig,
  pass: Pass,
  targets: Target[],
  dir: string,
  metrics: Record<string, number>,
  notes: string[],
): Promise<{ spreads: string[]; results: Map<string, (Measurement | undefined)[]> }> {
  const bodies = chatBodies();
  const results = new Map<string, (Measurement | undefined)[]>(targets.map((t) => [t.name, []]));
  for (let run = 0; run < pass.runs; run++) {
    // Rotate the order each run so that no target always goes first (or right after another).
    const order = targets.map((_, i) => targets[(i + run) % targets.length]!);
    for (const t of order) {
      const r = await measure(t, cfg, pass, bodies, dir);
      const bad = r.errors > 0.01 * r.sent || r.ok + r.timeouts === 0;
      ctx.log(
        `${pass.rate} req/s run ${run + 1}/${pass.runs} ${t.name.padEnd(8)} p50=${r.p50_ms.toFixed(3)} ` +
          `p99=${r.p99_ms.toFixed(3)} max=${r.max_ms.toFixed(1)} ms ok=${r.ok}/${r.sent} ` +
          `timeouts=${r.timeouts} cpu/req=${r.cpu_per_request_ms.toFixed(3)} ms ` +
          `lateness p99=${r.lateness_p99_ms.toFixed(2)} ms` +
          (r.first_error ? ` first error: ${r.first_error}` : ''),
      );
      if (bad)
        notes.push(
          `${t.name} at ${pass.rate} req/s, run ${run + 1}: ${r.errors}/${r.sent} errors (${r.first_error}); run dropped.`,
        );
      if (r.timeouts)
        notes.push(
          `${t.name} at ${pass.rate} req/s, run ${run + 1}: ${r.timeouts}/${r.sent} requests unanswered after ${cfg.timeoutMs} ms (could not sustain the rate; counted at ${cfg.timeoutMs} ms, so its percentiles are lower bounds).`,
        );
      results.get(t.name)!.push(bad ? undefined : r);
    }
  }

  const x = pass.suffix;
  const direct = results.get('direct')!;
  const directP50 = direct.flatMap((r) => (r ? [r.p50_ms] : []));
  const directP99 = direct.flatMap((r) => (r ? [r.p99_ms] : []));
  if (directP50.length === 0) throw new Error(`the direct calls failed in every run at ${pass.rate} req/s`);
  metrics[`direct_p50${x}_ms`] = round(median(directP50));
  metrics[`direct_p99${x}_ms`] = round(median(directP99));
  metrics[`upstream_cpu_per_request${x}_ms`] = round(
    median(direct.flatMap((r) => (r ? [r.cpu_per_request_ms] : []))),
  );
  const spreads: string[] = [`direct p50 ${spread(directP50, 3)} p99 ${spread(directP99, 2)}`];
  for (const t of targets) {
    if (t.name === 'direct') continue;
    const added50: number[] = [];
    const added99: number[] = [];
    const abs50: number[] = [];
    const abs99: number[] = [];
    const cpu: number[] = [];
    const timeouts: number[] = [];
    results.get(t.name)!.forEach((r, run) => {
      const d = direct[run];
      if (!r || !d) return;
      added50.push(r.p50_ms - d.p50_ms);
      added99.push(r.p99_ms - d.p99_ms);
      abs50.push(r.p50_ms);
      abs99.push(r.p99_ms);
      cpu.push(r.cpu_per_request_ms);
      timeouts.push(r.timeouts / r.sent);
    });
    if (added50.length === 0) continue;
    metrics[`${t.name}_added_p50${x}_ms`] = round(median(added50));
    metrics[`${t.name}_added_p99${x}_ms`] = round(median(added99));
    metrics[`${t.name}_p50${x}_ms`] = round(median(abs50));
    metrics[`${t.name}_p99${x}_ms`] = round(median(abs99));
    metrics[`${t.name}_cpu_per_request${x}_ms`] = round(median(cpu));
    metrics[`${t.name}_timeout${x}_ratio`] = round(median(timeouts), 4);
    spreads.push(`${t.name} added p50 ${spread(added50, 3)} p99 ${spread(added99, 2)}`);
  }
  return { spreads, results };
}

/**
 * Milliseconds from sending a streamed chat call to the first chunk that carries answer text
 * (the role-only first chunk does not count), read from the raw SSE bytes.
 */
async function timeToFirstToken(pool: Pool, target: Target, body: string): Promise<number> {
  const url = new URL(target.url);
  const start = performance.now();
  const res = await pool.request({ path: url.pathname, method: 'POST', headers: target.headers, body });
  if (res.statusCode !== 200)
    throw new Error(`${target.name}: status ${res.statusCode}: ${await res.body.text()}`);
  if (target.requireHeader && !res.headers[target.requireHeader])
    throw new Error(`${target.name}: missing header ${target.requireHeader}`);
  let seen = '';
  let at = Number.NaN;
  for await (const chunk of res.body) {
    if (Number.isNaN(at)) {
      seen += chunk.toString('utf8');
      if (/"content":"[^"]/.test(seen)) at = performance.now() - start;
    }
  }
  if (Number.isNaN(at)) throw new Error(`${target.name}: the stream carried no answer text`);
  return at;
}

/**
 * The time to first token Ratchet adds: streamed calls one at a time (no queueing), alternating
 * direct and Ratchet so both see the same machine, p50 and p99 of Ratchet minus direct.
 */
async function measureTtft(
  direct: Target,
  gateway: Target,
  calls: number,
  metrics: Record<string, number>,
): Promise<{ note: string; gatewayCalls: number }> {
  const bodies = chatBodies().map((b) => JSON.stringify({ ...JSON.parse(b), stream: true }));
  const times: Record<'direct' | 'gateway', number[]> = { direct: [], gateway: [] };
  const pools = new Map(
    [direct, gateway].map((t) => [t.name, new Pool(new URL(t.url).origin, { connections: 1 })]),
  );
  try {
    // Ten of each first to warm connections and JIT, not counted.
    for (let i = -10; i < calls; i++) {
      for (const t of i % 2 ? [direct, gateway] : [gateway, direct]) {
        const ms = await timeToFirstToken(pools.get(t.name)!, t, bodies[(i + 10) % bodies.length]!);
        if (i >= 0) times[t.name as 'direct' | 'gateway'].push(ms);
      }
    }
  } finally {
    for (const p of pools.values()) await p.destroy();
  }
  const d = sortedCopy(times.direct);
  const g = sortedCopy(times.gateway);
  metrics.direct_ttft_p50_ms = round(percentile(d, 50));
  metrics.gateway_ttft_p50_ms = round(percentile(g, 50));
  metrics.gateway_added_ttft_ms = round(percentile(g, 50) - percentile(d, 50));
  metrics.gateway_added_ttft_p99_ms = round(percentile(g, 99) - percentile(d, 99));
  return {
    note:
      `Time to first token: ${calls} streamed calls each to the upstream and through Ratchet, one at a time, alternating; ` +
      `gateway_added_ttft_ms is the p50 of Ratchet's time to the first chunk with answer text minus the direct p50 ` +
      `(direct ${metrics.direct_ttft_p50_ms} ms, Ratchet ${metrics.gateway_ttft_p50_ms} ms; added at p99 ${metrics.gateway_added_ttft_p99_ms} ms).`,
    gatewayCalls: calls + 10,
  };
}

/**
 * The chat calls `ratchet serve` counted (`ratchet_http_requests_total`, any status, 499 for a
 * call the load generator gave up on before its answer was complete).
 */
async function gatewayCallsCounted(url: string, key: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${key}` } })).text();
  let n = 0;
  for (const line of text.split('\n'))
    if (line.startsWith('ratchet_http_requests_total{') && line.includes('route="/v1/chat/completions"'))
      n += Number(line.slice(line.lastIndexOf(' ') + 1));
  return n;
}

async function countInteractions(databaseUrl: string, projectId: string): Promise<number> {
  const store = await Store.open(databaseUrl);
  try {
    const row = await store.db
      .selectFrom('interactions')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('project_id', '=', projectId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  } finally {
    await store.close();
  }
}

export async function runGatewayLatency(
  ctx: BenchContext,
  cfg: GatewayLatencyConfig = gatewayLatencyConfig(ctx.tiny),
): Promise<BenchOutcome> {
  const dir = join(workDir, 'gateway-latency', timestampDir());
  mkdirSync(dir, { recursive: true });
  const startLoad = loadNote();
  const procs: Proc[] = [];
  const notes: string[] = [];
  try {
    // Upstream in its own process.
    const upstreamProc = startProc({
      name: 'upstream',
      command: process.execPath,
      args: [...tsNode, join(benchDir, 'procs/upstream.ts')],
      logFile: join(dir, 'upstream.log'),
    });
    procs.push(upstreamProc);
    const { url: upstreamUrl } = await firstJsonLine<{ url: string }>(upstreamProc, 60_000);

    // Ratchet: `ratchet serve` on embedded SQLite, interaction logging on (the product).
    const databaseUrl = `sqlite:${join(dir, 'ratchet.db')}`;
    const key = await createProject(databaseUrl);
    const ratchet = await startRatchet({
      databaseUrl,
      dir,
      upstreamUrl,
      nodeFlags: ctx.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(workDir, 'profiles', 'gateway')}`] : [],
    });
    procs.push(ratchet.proc);
    ctx.log(`ratchet: ${ratchet.command}`);

    const targets: Target[] = [
      {
        name: 'direct',
        url: `${upstreamUrl}/chat/completions`,
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-local' },
        proc: upstreamProc,
      },
      {
        name: 'gateway',
        url: `${ratchet.url}/v1/chat/completions`,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secretKey}` },
        requireHeader: 'x-ratchet-interaction-id',
        proc: ratchet.proc,
      },
    ];

    // A prototype of a change to our server (a copy under bench/.work with its own launcher), measured
    // beside the real one: BENCH_GATEWAY_PROTO=path/to/launcher.ts (see bench/README.md).
    const protoLauncher = process.env.BENCH_GATEWAY_PROTO;
    if (protoLauncher && !ctx.tiny) {
      const protoDb = `sqlite:${join(dir, 'proto.db')}`;
      const protoKey = await createProject(protoDb);
      const proto = await startRatchet({
        databaseUrl: protoDb,
        dir,
        upstreamUrl,
        launcher: protoLauncher,
        name: 'proto',
        nodeFlags: ctx.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(workDir, 'profiles', 'proto')}`] : [],
      });
      procs.push(proto.proc);
      ctx.log(`proto: ${proto.command}`);
      targets.push({
        name: 'proto',
        url: `${proto.url}/v1/chat/completions`,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${protoKey.secretKey}` },
        requireHeader: 'x-ratchet-interaction-id',
        proc: proto.proc,
      });
      notes.push(`Prototype measured beside ours: ${protoLauncher}.`);
    }

    const competitors: RunningGateway[] = [];
    if (cfg.competitors) {
      for (const [name, ensure, start] of [
        ['portkey', ensurePortkey, startPortkey],
        ['litellm', ensureLiteLLM, startLiteLLM],
      ] as const) {
        try {
          ensure(ctx.log);
          const gw = await start(upstreamUrl, dir);
          procs.push(gw.proc);
          competitors.push(gw);
          ctx.log(`${name}: ${gw.command}`);
          targets.push({ name, url: gw.url, headers: gw.headers, proc: gw.proc });
        } catch (err) {
          const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
          notes.push(`${name} could not run: ${msg}`);
          ctx.log(`${name} could not run: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }

    const metrics: Record<string, number> = {};
    const main: Pass = {
      rate: cfg.rate,
      warmupS: cfg.warmupS,
      durationS: cfg.durationS,
      runs: cfg.runs,
      suffix: '',
    };
    const { spreads, results } = await runPass(ctx, cfg, main, targets, dir, metrics, notes);
    let lowSpreads: string[] = [];
    let lowResults = new Map<string, (Measurement | undefined)[]>();
    const lowPass: Pass = {
      rate: cfg.lowRate,
      warmupS: cfg.lowWarmupS,
      durationS: cfg.lowDurationS,
      runs: cfg.runs,
      suffix: `_${cfg.lowRate}rps`,
    };
    if (cfg.lowRate > 0) {
      ({ spreads: lowSpreads, results: lowResults } = await runPass(
        ctx,
        cfg,
        lowPass,
        targets,
        dir,
        metrics,
        notes,
      ));
    }
    // Ratchet alone at a high rate, beside direct calls.
    let highSpreads: string[] = [];
    let highResults = new Map<string, (Measurement | undefined)[]>();
    const highPass: Pass = {
      rate: cfg.highRate,
      warmupS: cfg.highWarmupS,
      durationS: cfg.highDurationS,
      runs: cfg.runs,
      suffix: `_${cfg.highRate}rps`,
    };
    if (cfg.highRate > 0) {
      // The competitors are not measured in this pass, and an idle proxy still wakes up (LiteLLM's
      // background tasks): on two cores shared by the upstream, the load generator and ours, that
      // is noise in our p99. Their idle CPU is recorded, then they are stopped.
      if (competitors.length > 0) {
        notes.push(await stopIdleCompetitors(competitors, ctx.log));
        for (const c of competitors) procs.splice(procs.indexOf(c.proc), 1);
      }
      const ours = targets.filter((t) => t.name === 'direct' || t.name === 'gateway');
      ({ spreads: highSpreads, results: highResults } = await runPass(
        ctx,
        cfg,
        highPass,
        ours,
        dir,
        metrics,
        notes,
      ));
    }
    let ttftCalls = 0;
    if (cfg.ttftCalls > 0) {
      const ttft = await measureTtft(
        targets.find((t) => t.name === 'direct')!,
        targets.find((t) => t.name === 'gateway')!,
        cfg.ttftCalls,
        metrics,
      );
      ttftCalls = ttft.gatewayCalls;
      notes.push(ttft.note);
      ctx.log(ttft.note);
    }
    metrics.request_rate_per_s = cfg.rate;
    metrics.measured_duration_s = cfg.durationS;
    const allResults = [...results.values(), ...lowResults.values(), ...highResults.values()]
      .flat()
      .filter((r): r is Measurement => !!r);
    metrics.loadgen_lateness_p99_ms = round(median(allResults.map((r) => r.lateness_p99_ms)));

    // Every call through Ratchet must have been logged (logging is on: that is the product).
    // The calls are those the gateway itself counted (its /metrics): a request the load
    // generator gave up on may have reached it (and is logged) or may never have left the load
    // generator's queue (and is no call), so neither the answered nor the sent count is right
    // when a target falls behind.
    const received = await gatewayCallsCounted(ratchet.url, key.secretKey);
    await ratchet.proc.stop(30_000);
    const logged = await countInteractions(databaseUrl, key.projectId);
    const passes = [main, ...(cfg.lowRate > 0 ? [lowPass] : []), ...(cfg.highRate > 0 ? [highPass] : [])];
    const sent =
      ttftCalls + passes.reduce((n, p) => n + p.runs * Math.round((p.warmupS + p.durationS) * p.rate), 0);
    const served = [results, lowResults, highResults]
      .flatMap((r) => r.get('gateway') ?? [])
      .reduce((n, r) => n + (r?.all_ok ?? 0), ttftCalls);
    metrics.gateway_logged_ratio = received ? round(logged / received, 4) : 0;
    metrics.gateway_calls_received_count = received;

    // Whether ours adds the least, percentile by percentile, in each pass.
    const verdicts: string[] = [];
    for (const x of ['', ...(cfg.lowRate > 0 ? [`_${cfg.lowRate}rps`] : [])]) {
      for (const p of ['p50', 'p99']) {
        const ours = metrics[`gateway_added_${p}${x}_ms`];
        const others = ['portkey', 'litellm']
          .map((n) => metrics[`${n}_added_${p}${x}_ms`])
          .filter((v): v is number => v !== undefined);
        if (ours === undefined || others.length === 0) continue;
        const rate = x ? cfg.lowRate : cfg.rate;
        verdicts.push(`${p} at ${rate} req/s: ${others.every((o) => ours <= o) ? 'lowest' : 'NOT lowest'}`);
      }
    }
    const bodyBytes = Math.round(chatBodies()[0]!.length / 10) * 10;
    notes.unshift(
      `Open loop (timer-scheduled sends): ${cfg.rate} req/s for ${cfg.durationS} s after ${cfg.warmupS} s warm-up` +
        (cfg.lowRate > 0
          ? `, then a second pass at ${cfg.lowRate} req/s for ${cfg.lowDurationS} s (metrics *_${cfg.lowRate}rps_*), a rate at which a gateway that keeps up shows its added latency with little queueing`
          : '') +
        `; non-streaming chat completions (~${bodyBytes} B body) to a local instant upstream; ` +
        `upstream, each gateway and the load generator are separate processes; ` +
        `${cfg.runs} runs per pass rotating the target order, median of per-run (target - direct) percentiles shown; ` +
        `spread over runs at ${cfg.rate} req/s: ${spreads.join('; ')}` +
        (lowSpreads.length ? `; at ${cfg.lowRate} req/s: ${lowSpreads.join('; ')}` : '') +
        (highSpreads.length
          ? `; Ratchet alone at ${cfg.highRate} req/s for ${cfg.highDurationS} s after ${cfg.highWarmupS} s warm-up: ${highSpreads.join('; ')}`
          : '') +
        `. Ratchet: ratchet serve on embedded SQLite with interaction logging on (${logged} interactions logged for ${received} chat calls the gateway counted in /metrics; ${served} answered in time, ${sent} sent), RATCHET_LOG_LEVEL=warn` +
        (competitors.length
          ? `; ${competitors
              .map((c) =>
                c.name === 'portkey'
                  ? `Portkey @portkey-ai/gateway ${PORTKEY_VERSION} (node, --headless, NODE_ENV=production, provider openai + custom host header)`
                  : `LiteLLM ${LITELLM_VERSION} proxy (1 uvicorn worker, master key, LITELLM_LOG=ERROR, no DB, no callbacks, OTel SDK installed)`,
              )
              .join('; ')}`
          : '; no competitors in this run') +
        `. Machine: 2 cores shared with other engineers' work (${startLoad} at start), so timings are noisy` +
        (verdicts.length ? `. Ours added: ${verdicts.join(', ')}.` : '.'),
    );
    return { metrics, notes: notes.join(' ') };
  } finally {
    for (const p of procs.reverse()) await p.stop(10_000);
  }
}

export const gatewayLatency: Bench = {
  name: 'gateway-latency',
  summary:
    "Gateway added latency (p50, p99) over a direct call to the same local upstream at a fixed request rate, beside Portkey's gateway and the LiteLLM proxy",
  keyMetrics: [
    'gateway_added_p50_ms',
    'gateway_added_p99_ms',
    'portkey_added_p50_ms',
    'portkey_added_p99_ms',
    'litellm_added_p50_ms',
    'litellm_added_p99_ms',
    'direct_p50_ms',
    'direct_p99_ms',
    'gateway_added_p50_20rps_ms',
    'gateway_added_p99_20rps_ms',
    'portkey_added_p50_20rps_ms',
    'portkey_added_p99_20rps_ms',
    'litellm_added_p50_20rps_ms',
    'litellm_added_p99_20rps_ms',
    'gateway_added_p99_1000rps_ms',
    'gateway_added_ttft_ms',
  ],
  run: (ctx) => runGatewayLatency(ctx),
};
