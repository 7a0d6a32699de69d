import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '@ratchet/store';
import pg from 'pg';
import { Pool } from 'undici';
import { type Bench, type BenchContext, type BenchOutcome, loadNote, timestampDir } from './lib/bench.js';
import { groupCpuMs, type Proc } from './lib/procs.js';
import { createProject, startRatchet } from './lib/ratchet.js';
import { round, workDir } from './lib/results.js';
import { median, spread } from './lib/stats.js';

export interface IngestConfig {
  /** Interactions created before measuring; feedback refers to them at random. */
  interactions: number;
  /** Concurrent clients sending one event per request. */
  singleConcurrency: number;
  /** Events per request in the batched phase ({ items: [...] }). */
  batchSize: number;
  /** Concurrent clients sending batches. */
  batchConcurrency: number;
  warmupS: number;
  durationS: number;
  /** Rounds of (single, batched) per database; the median is reported. */
  rounds: number;
  /** PostgreSQL server URL to create a scratch database on; none: SQLite only. */
  postgresUrl: string | undefined;
  /** Which phases to run (both by default; one alone is handy for profiling). */
  phases: ('single' | 'batched')[];
}

function envNumber(name: string, fallback: number): number {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : Number(v);
}

export const defaultPostgresUrl = 'postgres://ratchet:ratchet@127.0.0.1:5432/ratchet_test';

export function ingestConfig(tiny: boolean): IngestConfig {
  if (tiny)
    return {
      interactions: 50,
      singleConcurrency: 4,
      batchSize: 50,
      batchConcurrency: 2,
      warmupS: 0.2,
      durationS: 0.6,
      rounds: 1,
      postgresUrl: undefined,
      phases: ['single', 'batched'],
    };
  const pgUrl = process.env.RATCHET_TEST_POSTGRES_URL ?? defaultPostgresUrl;
  return {
    interactions: envNumber('BENCH_INGEST_INTERACTIONS', 2000),
    singleConcurrency: envNumber('BENCH_INGEST_SINGLE_CONCURRENCY', 32),
    batchSize: envNumber('BENCH_INGEST_BATCH_SIZE', 500),
    batchConcurrency: envNumber('BENCH_INGEST_BATCH_CONCURRENCY', 4),
    warmupS: envNumber('BENCH_INGEST_WARMUP_S', 2),
    durationS: envNumber('BENCH_INGEST_DURATION_S', 10),
    rounds: envNumber('BENCH_INGEST_ROUNDS', 3),
    postgresUrl: process.env.BENCH_INGEST_POSTGRES === '0' || pgUrl === '' ? undefined : pgUrl,
    phases: (process.env.BENCH_INGEST_PHASES ?? 'single,batched')
      .split(',')
      .filter((p): p is 'single' | 'batched' => p === 'single' || p === 'batched'),
  };
}

/** A scratch PostgreSQL database for one run: created fresh, dropped afterwards. */
export async function createPostgresDatabase(
  serverUrl: string,
): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `ratchet_bench_${process.pid}_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: serverUrl });
      await c.connect();
      try {
        // After heavy inserts an autovacuum worker may still be on the database, and ending it
        // needs a privilege the bench role may lack: wait for it to finish.
        for (let attempt = 1; ; attempt++) {
          try {
            await c.query(`drop database if exists ${name} with (force)`);
            return;
          } catch (err) {
            if (attempt >= 30) throw err;
            await new Promise((r) => setTimeout(r, 2000));
          }
        }
      } finally {
        await c.end();
      }
    },
  };
}

const kinds = ['thumbs', 'thumbs', 'thumbs', 'thumbs', 'stars', 'stars', 'implicit', 'comment'] as const;
const signals = ['copied', 'regenerated', 'edited', 'abandoned'] as const;

/** Feedback events of the common kinds, each with a unique idempotency key (as an SDK with retries sends). */
export class EventFactory {
  private n = 0;

  constructor(
    private readonly prefix: string,
    private readonly interactionIds: string[],
  ) {}

  next(): Record<string, unknown> {
    const i = this.n++;
    const base = {
      interactionId: this.interactionIds[(i * 7919) % this.interactionIds.length]!,
      raterId: `rater-${i % 300}`,
      source: i % 10 === 0 ? 'annotator' : 'user',
      idempotencyKey: `${this.prefix}-${i}`,
    };
    const kind = kinds[i % kinds.length]!;
    switch (kind) {
      case 'thumbs':
        return { ...base, kind, value: i % 3 === 0 ? 'down' : 'up' };
      case 'stars':
        return { ...base, kind, value: 1 + (i % 5) };
      case 'implicit':
        return { ...base, kind, signal: signals[i % signals.length] };
      case 'comment':
        return { ...base, kind, text: 'The answer was helpful but a bit long; the second step was unclear.' };
    }
  }
}

interface PhaseResult {
  eventsPerS: number;
  /** Events acknowledged (2xx) in the whole phase, warm-up included. */
  acknowledged: number;
  errors: number;
  firstError?: string;
  /** CPU time of the server process per acknowledged event, warm-up included, ms. */
  cpuPerEventMs: number;
}

/** A running `ratchet serve` and the client connections to it. */
interface Target {
  proc: Proc;
  pool: Pool;
}

/**
 * Closed loop: `concurrency` clients each send a request as soon as the previous one is answered,
 * for warm-up + duration; events/s counts events whose acknowledgement arrived in the measured window.
 * With several servers (one database), client k sends to server k mod n: the same clients, spread.
 */
async function phase(
  servers: Target[],
  key: string,
  concurrency: number,
  makeBody: () => { body: string; events: number },
  warmupS: number,
  durationS: number,
): Promise<PhaseResult> {
  const serversCpuMs = () => servers.reduce((ms, s) => ms + groupCpuMs(s.proc.child.pid!), 0);
  const cpuBefore = serversCpuMs();
  const t0 = performance.now();
  const measureFrom = t0 + warmupS * 1000;
  const stopAt = measureFrom + durationS * 1000;
  let inWindow = 0;
  let acknowledged = 0;
  let errors = 0;
  let firstError: string | undefined;
  let lastEnd = measureFrom;
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}` };
  const worker = async (k: number) => {
    const { pool } = servers[k % servers.length]!;
    while (performance.now() < stopAt) {
      const { body, events } = makeBody();
      try {
        const res = await pool.request({ path: '/api/v1/feedback', method: 'POST', headers, body });
        const text = await res.body.text();
        const end = performance.now();
        if (res.statusCode === 200 || res.statusCode === 201) {
          acknowledged += events;
          if (end >= measureFrom && end <= stopAt) inWindow += events;
          lastEnd = Math.max(lastEnd, Math.min(end, stopAt));
        } else {
          errors++;
          firstError ??= `status ${res.statusCode}: ${text.slice(0, 300)}`;
        }
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, k) => worker(k)));
  const cpu = serversCpuMs() - cpuBefore;
  const windowS = (Math.max(lastEnd, stopAt) - measureFrom) / 1000;
  return {
    eventsPerS: inWindow / windowS,
    acknowledged,
    errors,
    ...(firstError ? { firstError } : {}),
    cpuPerEventMs: acknowledged ? cpu / acknowledged : Number.NaN,
  };
}

async function createInteractions(pool: Pool, key: string, n: number, prefix: string): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}-int-${i}`);
  for (let i = 0; i < n; i += 500) {
    const items = ids.slice(i, i + 500).map((id, j) => ({
      id,
      model: 'support-model',
      route: 'support-bot',
      variant: j % 2 ? 'production' : 'candidate',
      messages: [
        { role: 'system', content: 'You are the support assistant of an online shop.' },
        { role: 'user', content: `Where is my parcel? Order ${i + j}.` },
      ],
      output: 'Could you give me your order number so that I can check its tracking?',
      userId: `user-${(i + j) % 500}`,
      latencyMs: 420,
      usage: { inputTokens: 31, outputTokens: 17, totalTokens: 48 },
    }));
    const res = await pool.request({
      path: '/api/v1/interactions',
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ items }),
    });
    const text = await res.body.text();
    if (res.statusCode !== 201 && res.statusCode !== 200)
      throw new Error(`creating interactions: status ${res.statusCode}: ${text.slice(0, 300)}`);
  }
  return ids;
}

interface DatabaseOutcome {
  single: number[];
  batched: number[];
  singleCpu: number[];
  batchedCpu: number[];
  acknowledged: number;
  stored: number;
  errors: string[];
}

/** One measured setup: a database and how many `ratchet serve` processes share it. */
interface IngestRun {
  db: 'sqlite' | 'postgres';
  processes: number;
  phases: ('single' | 'batched')[];
}

/** The metric names' infix: `postgres`, or `postgres_2proc` for two servers on one database. */
const runName = (run: IngestRun) => (run.processes > 1 ? `${run.db}_${run.processes}proc` : run.db);

async function runOnDatabase(
  ctx: BenchContext,
  cfg: IngestConfig,
  run: IngestRun,
  databaseUrl: string,
  dir: string,
): Promise<DatabaseOutcome> {
  const dbName = runName(run);
  const key = await createProject(databaseUrl);
  const procs: Proc[] = [];
  try {
    // Experiments: BENCH_INGEST_PROTO runs a prototype copy of the CLI instead (see bench/README.md).
    const launcher = process.env.BENCH_INGEST_PROTO;
    const servers: Target[] = [];
    for (let p = 0; p < run.processes; p++) {
      const name = run.processes > 1 ? `ratchet-${p + 1}` : 'ratchet';
      const ratchet = await startRatchet({
        databaseUrl,
        dir: join(dir, dbName),
        name,
        ...(launcher ? { launcher } : {}),
        // A throughput test: the per-key rate limit (default 2,000 req/s) is not what is measured.
        env: { RATCHET_RATE_LIMIT_PER_SECOND: '0' },
        nodeFlags: ctx.profile
          ? ['--cpu-prof', `--cpu-prof-dir=${join(workDir, 'profiles', `ingest-${dbName}-${p + 1}`)}`]
          : [],
      });
      procs.push(ratchet.proc);
      ctx.log(`${dbName}: ${ratchet.command}`);
      servers.push({
        proc: ratchet.proc,
        pool: new Pool(ratchet.url, {
          connections: Math.max(cfg.singleConcurrency, cfg.batchConcurrency),
          pipelining: 1,
          keepAliveTimeout: 60_000,
        }),
      });
    }
    try {
      const ids = await createInteractions(servers[0]!.pool, key.secretKey, cfg.interactions, dbName);
      const events = new EventFactory(`bench-${dbName}`, ids);
      const out: DatabaseOutcome = {
        single: [],
        batched: [],
        singleCpu: [],
        batchedCpu: [],
        acknowledged: 0,
        stored: 0,
        errors: [],
      };
      for (let round_ = 0; round_ < cfg.rounds; round_++) {
        const results: ['single' | 'batched', PhaseResult][] = [];
        if (run.phases.includes('single'))
          results.push([
            'single',
            await phase(
              servers,
              key.secretKey,
              cfg.singleConcurrency,
              () => ({ body: JSON.stringify(events.next()), events: 1 }),
              cfg.warmupS,
              cfg.durationS,
            ),
          ]);
        if (run.phases.includes('batched'))
          results.push([
            'batched',
            await phase(
              servers,
              key.secretKey,
              cfg.batchConcurrency,
              () => ({
                body: JSON.stringify({ items: Array.from({ length: cfg.batchSize }, () => events.next()) }),
                events: cfg.batchSize,
              }),
              cfg.warmupS,
              cfg.durationS,
            ),
          ]);
        for (const [name, r] of results) {
          ctx.log(
            `${dbName} round ${round_ + 1}/${cfg.rounds} ${name.padEnd(7)} ${Math.round(r.eventsPerS)} events/s, ` +
              `server CPU ${(r.cpuPerEventMs * 1000).toFixed(0)} us/event` +
              (r.errors ? ` (${r.errors} failed requests: ${r.firstError})` : ''),
          );
          if (r.errors) out.errors.push(`${dbName} ${name}: ${r.errors} failed requests (${r.firstError})`);
          out.acknowledged += r.acknowledged;
          out[name].push(r.eventsPerS);
          out[`${name}Cpu`].push(r.cpuPerEventMs);
        }
      }
      return out;
    } finally {
      for (const s of servers) await s.pool.close();
    }
  } finally {
    for (const proc of procs) await proc.stop(30_000);
  }
}

async function countFeedback(databaseUrl: string, projectName = 'bench'): Promise<number> {
  const store = await Store.open(databaseUrl);
  try {
    const project = await store.projects.getByName(projectName);
    return project ? await store.feedback.count(project.id) : 0;
  } finally {
    await store.close();
  }
}

export async function runIngest(
  ctx: BenchContext,
  cfg: IngestConfig = ingestConfig(ctx.tiny),
): Promise<BenchOutcome> {
  const dir = join(workDir, 'ingest', timestampDir());
  mkdirSync(dir, { recursive: true });
  const startLoad = loadNote();
  const metrics: Record<string, number> = {};
  const notes: string[] = [];
  const spreads: string[] = [];
  // Two servers on one PostgreSQL (the scale-out layout): the batched phase only, on a fresh
  // database of its own, so its stored count is its own.
  const runs: IngestRun[] = [{ db: 'sqlite', processes: 1, phases: cfg.phases }];
  if (cfg.postgresUrl) {
    runs.push({ db: 'postgres', processes: 1, phases: cfg.phases });
    if (cfg.phases.includes('batched')) runs.push({ db: 'postgres', processes: 2, phases: ['batched'] });
  }
  for (const run of runs) {
    const { db } = run;
    const name = runName(run);
    let url: string;
    let drop: (() => Promise<void>) | undefined;
    if (db === 'sqlite') {
      mkdirSync(join(dir, 'sqlite'), { recursive: true });
      // BENCH_INGEST_SQLITE_OPTIONS, e.g. "synchronous=normal", to measure a setting's effect.
      const options = process.env.BENCH_INGEST_SQLITE_OPTIONS;
      url = `sqlite:${join(dir, 'sqlite', 'ratchet.db')}${options ? `?${options}` : ''}`;
    } else {
      mkdirSync(join(dir, name), { recursive: true });
      try {
        ({ url, drop } = await createPostgresDatabase(cfg.postgresUrl!));
      } catch (err) {
        notes.push(`PostgreSQL skipped: ${err instanceof Error ? err.message : String(err)}.`);
        continue;
      }
    }
    try {
      const r = await runOnDatabase(ctx, cfg, run, url, dir);
      r.stored = await countFeedback(url);
      if (r.single.length) {
        metrics[`ingest_single_${name}_per_s`] = Math.round(median(r.single));
        metrics[`ingest_single_${name}_server_cpu_per_event_ms`] = round(median(r.singleCpu), 4);
      }
      if (r.batched.length) {
        metrics[`ingest_batched_${name}_per_s`] = Math.round(median(r.batched));
        metrics[`ingest_batched_${name}_server_cpu_per_event_ms`] = round(median(r.batchedCpu), 4);
      }
      metrics[`ingest_${name}_stored_ratio`] = r.acknowledged ? round(r.stored / r.acknowledged, 4) : 0;
      spreads.push(
        r.single.length
          ? `${name} single ${spread(r.single.map(Math.round), 0)}, batched ${spread(r.batched.map(Math.round), 0)}`
          : `${name} batched ${spread(r.batched.map(Math.round), 0)}`,
      );
      if (r.stored !== r.acknowledged)
        notes.push(`${name}: ${r.acknowledged} events acknowledged but ${r.stored} stored.`);
      notes.push(...r.errors);
    } finally {
      await drop?.().catch((err: unknown) => {
        notes.push(
          `Scratch PostgreSQL database not dropped: ${err instanceof Error ? err.message : String(err)}.`,
        );
      });
    }
  }
  if (process.env.BENCH_INGEST_PROTO) notes.push(`Prototype server: ${process.env.BENCH_INGEST_PROTO}.`);
  if (process.env.BENCH_INGEST_SQLITE_OPTIONS)
    notes.push(`SQLite options: ${process.env.BENCH_INGEST_SQLITE_OPTIONS}.`);
  notes.unshift(
    `POST /api/v1/feedback against ratchet serve (own process; client in the bench process on the same machine), ` +
      `${cfg.interactions} interactions created first; single: ${cfg.singleConcurrency} concurrent clients, one event per request; ` +
      `batched: ${cfg.batchConcurrency} concurrent clients, { items: [${cfg.batchSize} events] } per request; ` +
      `mix of thumbs/stars/implicit/comment, each event with a unique idempotency key; ` +
      `${cfg.durationS} s measured after ${cfg.warmupS} s warm-up, ${cfg.rounds} round(s), median shown ` +
      `(spread: ${spreads.join('; ')}). SQLite: the embedded default (WAL, synchronous=FULL); ` +
      `PostgreSQL: a fresh database on the local server, dropped afterwards` +
      `${cfg.postgresUrl ? '' : ' (not run)'}; postgres_2proc: two ratchet serve processes on one fresh PostgreSQL database, ` +
      `the batched phase's ${cfg.batchConcurrency} clients spread over them (client k to server k mod 2), server CPU summed over both, ` +
      `stored events counted in that database; per-key rate limit off (RATCHET_RATE_LIMIT_PER_SECOND=0). ` +
      `Machine: 2 cores shared with other engineers' work (${startLoad} at start); noisy.`,
  );
  return { metrics, notes: notes.join(' ') };
}

export const ingest: Bench = {
  name: 'ingest',
  summary: 'Feedback ingest throughput over HTTP (single and batched) on SQLite and PostgreSQL',
  keyMetrics: [
    'ingest_single_sqlite_per_s',
    'ingest_batched_sqlite_per_s',
    'ingest_single_postgres_per_s',
    'ingest_batched_postgres_per_s',
    'ingest_batched_postgres_2proc_per_s',
  ],
  run: (ctx) => runIngest(ctx),
};
