import { writeFileSync } from 'node:fs';
import { Pool } from 'undici';
import { mean, percentile, sortedCopy } from './stats.js';

export interface OpenLoopConfig {
  /** Full URL of the endpoint. */
  url: string;
  headers: Record<string, string>;
  /** Request bodies, sent in rotation. */
  bodies: string[];
  /** Requests per second, scheduled on a timer whatever the responses do (open loop). */
  rate: number;
  warmupS: number;
  durationS: number;
  /** Keep-alive connections; enough that a request never waits for a free one. */
  connections?: number;
  /** A response header every answer must carry (e.g. x-ratchet-interaction-id). */
  requireHeader?: string;
  /**
   * A request not answered within this many ms (waiting for a connection included) is abandoned
   * and counted as a timeout; its latency enters the percentiles as the time waited, a lower bound.
   * This keeps a target that cannot sustain the rate from running on for minutes.
   */
  timeoutMs?: number;
}

export interface OpenLoopResult {
  target_url: string;
  rate: number;
  duration_s: number;
  /** Requests scheduled in the measured window. */
  sent: number;
  ok: number;
  /** Failed requests other than timeouts (excluded from the percentiles). */
  errors: number;
  /** Requests abandoned after timeoutMs (in the percentiles, as lower bounds). */
  timeouts: number;
  /** First error seen, for the notes. */
  first_error?: string;
  /** Service latency (dispatch to last byte of the body; timeouts as the time waited), ms. */
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
  mean_ms: number;
  /** Latency from the scheduled send time instead (includes load-generator lateness), ms. */
  scheduled_p50_ms: number;
  scheduled_p99_ms: number;
  /** How late the timer dispatched requests: the load generator's own noise, ms. */
  lateness_p50_ms: number;
  lateness_p99_ms: number;
  /** Rate actually achieved in the measured window. */
  achieved_per_s: number;
  /** Successful requests including the warm-up (what the target should have logged). */
  all_ok: number;
}

/**
 * Sends requests at a fixed rate on a timer (open loop: a slow response does not delay the next
 * send, so queueing in the target shows up in its latency) and measures each request's latency.
 */
export async function runOpenLoop(cfg: OpenLoopConfig): Promise<OpenLoopResult> {
  const url = new URL(cfg.url);
  const pool = new Pool(url.origin, {
    connections: cfg.connections ?? 64,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  const path = url.pathname + url.search;
  const interval = 1000 / cfg.rate;
  const warmupN = Math.round(cfg.warmupS * cfg.rate);
  const total = warmupN + Math.round(cfg.durationS * cfg.rate);
  const measuredN = total - warmupN;
  const latency = new Float64Array(measuredN);
  const scheduledLatency = new Float64Array(measuredN);
  const lateness = new Float64Array(measuredN);
  const okMask = new Uint8Array(measuredN);
  let errors = 0;
  let timeouts = 0;
  const timeoutMs = cfg.timeoutMs ?? 10_000;
  let allOk = 0;
  let firstError: string | undefined;
  let done = 0;
  let windowStart = 0;
  let windowEnd = 0;
  // BENCH_LOADGEN_TRACE_DIR: the measured calls slower than 3 ms, as [wall-clock start, latency,
  // lateness] (ms), written there at the end, to set beside bench/tools/stall-probe.mjs's records.
  const traceDir = process.env.BENCH_LOADGEN_TRACE_DIR;
  const slowTrace: number[][] = [];

  let resolveAll!: () => void;
  const all = new Promise<void>((r) => {
    resolveAll = r;
  });

  const fire = (i: number, scheduled: number) => {
    const start = performance.now();
    const body = cfg.bodies[i % cfg.bodies.length]!;
    const record = (ok: boolean, err?: string, timedOut = false) => {
      const end = performance.now();
      if (ok) allOk++;
      if (i >= warmupN) {
        const k = i - warmupN;
        latency[k] = end - start;
        scheduledLatency[k] = end - scheduled;
        lateness[k] = start - scheduled;
        okMask[k] = ok || timedOut ? 1 : 0;
        if (timedOut) timeouts++;
        else if (!ok) {
          errors++;
          firstError ??= err;
        }
        windowEnd = Math.max(windowEnd, end);
        if (traceDir && end - start > 3)
          slowTrace.push([performance.timeOrigin + start, end - start, start - scheduled]);
      } else if (!ok && i === 0) {
        firstError ??= `warm-up: ${err}`;
      }
      if (++done === total) resolveAll();
    };
    // The timeout is ours, not undici's: a request still queued for a connection is only dropped
    // by undici when a connection frees up, which for a saturated target is far too late.
    const ac = new AbortController();
    let settled = false;
    const finish = (ok: boolean, err?: string, timedOut = false) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      record(ok, err, timedOut);
    };
    const timer = setTimeout(() => {
      finish(false, `no answer within ${timeoutMs} ms`, true);
      ac.abort();
    }, timeoutMs);
    pool
      .request({ path, method: 'POST', headers: cfg.headers, body, signal: ac.signal })
      .then(async (res) => {
        const text = await res.body.text();
        if (res.statusCode !== 200) return finish(false, `status ${res.statusCode}: ${text.slice(0, 300)}`);
        if (cfg.requireHeader && !res.headers[cfg.requireHeader])
          return finish(false, `missing header ${cfg.requireHeader}`);
        finish(true);
      })
      .catch((err: unknown) => finish(false, err instanceof Error ? err.message : String(err)));
  };

  const t0 = performance.now();
  let i = 0;
  await new Promise<void>((resolveSchedule) => {
    const tick = () => {
      const now = performance.now();
      while (i < total && t0 + i * interval <= now) {
        const scheduled = t0 + i * interval;
        if (i === warmupN) windowStart = scheduled;
        fire(i, scheduled);
        i++;
      }
      if (i >= total) return resolveSchedule();
      setTimeout(tick, Math.max(0, t0 + i * interval - performance.now()));
    };
    tick();
  });
  await all;
  // Requests abandoned after a timeout may still be queued: drop them rather than wait.
  await pool.destroy();
  if (traceDir)
    writeFileSync(
      `${traceDir}/loadgen-${new URL(cfg.url).port}-${Date.now()}.json`,
      JSON.stringify({
        window: [performance.timeOrigin + windowStart, performance.timeOrigin + windowEnd],
        slow: slowTrace,
      }),
    );

  const okLat: number[] = [];
  const okSched: number[] = [];
  for (let k = 0; k < measuredN; k++) {
    if (okMask[k]) {
      okLat.push(latency[k]!);
      okSched.push(scheduledLatency[k]!);
    }
  }
  const lat = sortedCopy(okLat);
  const sched = sortedCopy(okSched);
  const late = sortedCopy(lateness);
  return {
    target_url: cfg.url,
    rate: cfg.rate,
    duration_s: cfg.durationS,
    sent: measuredN,
    ok: lat.length - timeouts,
    errors,
    timeouts,
    ...(firstError ? { first_error: firstError } : {}),
    p50_ms: percentile(lat, 50),
    p90_ms: percentile(lat, 90),
    p99_ms: percentile(lat, 99),
    p999_ms: percentile(lat, 99.9),
    max_ms: lat.length ? lat[lat.length - 1]! : Number.NaN,
    mean_ms: mean(lat),
    scheduled_p50_ms: percentile(sched, 50),
    scheduled_p99_ms: percentile(sched, 99),
    lateness_p50_ms: percentile(late, 50),
    lateness_p99_ms: percentile(late, 99),
    achieved_per_s: measuredN / ((windowEnd - windowStart) / 1000),
    all_ok: allOk,
  };
}
