import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mulberry32 } from '@ratchet/core';
import { buildServer, loadServerConfig } from '@ratchet/server';
import { Store } from '@ratchet/store';
import pg from 'pg';
import { createPostgresDatabase, defaultPostgresUrl } from './ingest.js';
import { type Bench, loadNote } from './lib/bench.js';
import { tsNode } from './lib/procs.js';
import { repoDir, round } from './lib/results.js';
import { median } from './lib/stats.js';

const DAY = 86_400_000;
const RATERS = 10_000;
const models = [
  { route: 'support-bot', model: 'tiny-v1' },
  { route: 'support-bot', model: 'tiny-v2' },
  { route: 'billing-bot', model: 'tiny-v3' },
  { route: 'billing-bot', model: 'tiny-v4' },
];

/**
 * `COPY ... FROM STDIN` through the pg driver's own client: the driver hands a submittable query
 * the connection, which then takes CopyData messages. Rows come from `rows` as text-format lines;
 * a full socket buffer waits for 'drain', so millions of rows never sit in memory at once.
 */
function copyFrom(text: string, rows: Iterable<string>): pg.Submittable & { done: Promise<number> } {
  let resolve!: (n: number) => void;
  let reject!: (err: unknown) => void;
  const done = new Promise<number>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  let copied = 0;
  let failed: unknown;
  // biome-ignore lint/suspicious/noExplicitAny: the driver's connection is not typed for this.
  type Connection = any;
  return {
    done,
    submit(connection: Connection) {
      connection.query(text);
    },
    async handleCopyInResponse(connection: Connection) {
      try {
        const lines: string[] = [];
        const flush = async () => {
          if (lines.length === 0) return;
          connection.sendCopyFromChunk(Buffer.from(lines.join('')));
          lines.length = 0;
          if (connection.stream.writableNeedDrain)
            await new Promise((r) => connection.stream.once('drain', r));
        };
        for (const line of rows) {
          lines.push(line);
          copied++;
          if (lines.length >= 2000) await flush();
        }
        await flush();
        connection.endCopyFrom();
      } catch (err) {
        failed = err;
        connection.sendCopyFail(String(err));
      }
    },
    handleCommandComplete() {},
    handleError(err: unknown) {
      failed = err;
    },
    handleReadyForQuery() {
      if (failed) reject(failed);
      else resolve(copied);
    },
  } as unknown as pg.Submittable & { done: Promise<number> };
}

/** A text-format COPY field: \N for null, backslash, tab and newline escaped. */
const field = (v: string | number | null): string =>
  v === null ? '\\N' : String(v).replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n');
const line = (values: (string | number | null)[]) => `${values.map(field).join('\t')}\n`;

/** Call i's interaction id, the same in the load and in the later additions. */
const callId = (i: number) => `i${String(i).padStart(9, '0')}`;

/**
 * The id of rating k of call i, received at t: shaped like the store's own (core's newId, a
 * UUIDv7 made at receipt), so ids sort by receipt time as real ones do and an incremental
 * calibration's id floor (store.calibration.ratedSince) bounds its scan here as in production.
 * The low bits are i and k rather than random ones, so the parallel COPYs of `feedback` and
 * `feedback_current` make the same id without sharing state.
 */
function ratingId(t: number, i: number, k: number): string {
  const hex = (x: number, digits: number) => x.toString(16).padStart(digits, '0');
  const time = hex(t, 12);
  const low = hex(i * 8 + k, 12);
  return `${time.slice(0, 8)}-${time.slice(8)}-7000-8000-${low}`;
}

/**
 * One rating of call i as a COPY line of `feedback` or of its `feedback_current` row: even raters
 * give thumbs, odd ones stars (`ratingValue` chose the value by the same rule).
 */
function ratingLine(
  which: 'feedback' | 'current',
  projectId: string,
  i: number,
  feedbackId: string,
  rater: number,
  value: number,
  t: number,
): string {
  const thumbs = rater % 2 === 0;
  const kind = thumbs ? 'thumbs' : 'stars';
  const label = thumbs ? (value > 0 ? 'up' : 'down') : null;
  return which === 'feedback'
    ? line([
        feedbackId,
        projectId,
        callId(i),
        `r${rater}`,
        'annotator',
        kind,
        value,
        label,
        null,
        null,
        null,
        '{}',
        t,
        t,
      ])
    : line([projectId, callId(i), `r${rater}`, kind, feedbackId, t, value, label]);
}

/** A number in [0, 1) from integers, the same wherever it is asked for (the COPYs run at once). */
function hashUnit(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 2 ** 32;
}

/**
 * Rating k of call i: the call's hidden quality in [-1, 1] plus the rater's noise, as a thumb or
 * 1-5 stars. The answers to one prompt differ in quality, so calibrated rewards spread and a DPO
 * build finds pairs.
 */
function ratingValue(i: number, k: number, thumbs: boolean): number {
  const x = 2 * hashUnit(i, 0) - 1 + (hashUnit(i, k + 1) - 0.5);
  return thumbs ? (x > 0 ? 1 : -1) : Math.min(5, Math.max(1, Math.round(3 + 2 * x)));
}

interface Seeded {
  interactions: number;
  ratings: number;
  /** Seconds spent in the COPYs, and in rebuilding the dropped indexes and foreign keys. */
  copySeconds: number;
  indexSeconds: number;
}

/**
 * What PostgreSQL's manual advises for a bulk load ("Populating a Database"): the loaded tables'
 * foreign keys and secondary indexes are dropped first and made again after, from their own
 * definitions read from the catalog (so the schema after the load is the migrations' schema,
 * whatever a later migration changed). With them in place, every copied row queued a foreign-key
 * check that ran one row at a time at the end of the COPY and updated seven indexes; made after,
 * each is one sort or one join. Primary keys stay: they are what the foreign keys point at.
 * On a partitioned table only the parent's definitions are read: dropping a parent's index or
 * foreign key drops its partitions' too, and making it again makes theirs.
 */
async function dropForBulkLoad(
  url: string,
  client: pg.Client,
  tables: string[],
): Promise<() => Promise<void>> {
  const catalog = async () => {
    const { rows: foreignKeys } = await client.query<{ tbl: string; name: string; def: string }>(
      `select conrelid::regclass::text as tbl, conname as name, pg_get_constraintdef(oid) as def
       from pg_constraint
       where contype = 'f' and conparentid = 0 and conrelid = any($1::regclass[])
       order by 1, 2`,
      [tables],
    );
    const { rows: indexes } = await client.query<{ name: string; def: string }>(
      `select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as def
       from pg_index i
       where i.indrelid = any($1::regclass[])
         and not exists (select 1 from pg_constraint k where k.conindid = i.indexrelid)
         and not exists (select 1 from pg_inherits h where h.inhrelid = i.indexrelid)
       order by 1`,
      [tables],
    );
    return { foreignKeys, indexes };
  };
  const before = await catalog();
  const { foreignKeys, indexes } = before;
  for (const fk of foreignKeys) await client.query(`alter table ${fk.tbl} drop constraint "${fk.name}"`);
  for (const index of indexes) await client.query(`drop index ${index.name}`);
  return async () => {
    // Three connections take the indexes from one list (PostgreSQL builds an index on one core,
    // so several at once use them all), then the foreign keys, each validated by one join.
    const pending = [...indexes];
    const worker = async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        // Index builds sort in memory up to this, instead of 64 MB runs spilled to disk.
        await c.query(`set maintenance_work_mem = '512MB'`);
        // A partitioned index's definition reads "ON ONLY parent"; made again on the parent, it
        // is made on every partition.
        for (let index = pending.shift(); index; index = pending.shift())
          await c.query(index.def.replace(' ON ONLY ', ' ON '));
      } finally {
        await c.end();
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    // Each foreign key is checked by one join of the two tables: at 20 million rows its hashes
    // and sorts spill to disk in the default 4 MB of work memory.
    await client.query(`set work_mem = '512MB'`);
    for (const fk of foreignKeys)
      await client.query(`alter table ${fk.tbl} add constraint "${fk.name}" ${fk.def}`);
    // The schema the dashboard is timed on is the one the migrations made.
    const after = JSON.stringify(await catalog());
    if (after !== JSON.stringify(before))
      throw new Error(`bulk load: indexes or foreign keys differ after the load: ${after}`);
  };
}

/**
 * A year of traffic: `n` calls from four models on two routes, evenly over 365 days up to now, with
 * skewed latencies, 3% errors, tokens; ratings 0-4 per call (2 on average, so 2n in all, a fifth of
 * the calls unrated), half thumbs and half 1-5 stars, by 10,000 raters, minutes to days after
 * the call. Written as the store writes them: `feedback` and its `feedback_current` row, then the
 * raters' counts.
 */
export async function load(url: string, projectId: string, n: number, now: number): Promise<Seeded> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const rand = mulberry32(17);
    const start = now - 365 * DAY;
    const at = (i: number) => start + Math.floor((i / n) * 365 * DAY);
    // 50,000 prompts, answered 20 times each at 1M; at least 10 answers each in a smaller run, so
    // that a DPO build finds pairs.
    const prompts = Math.min(50_000, Math.max(1, Math.floor(n / 10)));
    function* interactions() {
      for (let i = 0; i < n; i++) {
        const m = models[i % models.length]!;
        const u = rand();
        const latency = Math.round(Math.exp(5.5 + 0.8 * (rand() + rand() + rand() - 1.5)) * 10) / 10;
        const input = 20 + Math.floor(rand() * 400);
        const output = Math.floor(rand() * 300);
        const t = at(i);
        const prompt = `Customer question ${i % prompts}: where is my order?`;
        yield line([
          projectId,
          callId(i),
          m.route,
          m.model,
          null,
          JSON.stringify([{ role: 'user', content: prompt }]),
          JSON.stringify({ role: 'assistant', content: `Answer ${i}` }),
          '{}',
          u < 0.03 ? null : latency,
          input,
          output,
          input + output,
          null,
          `user-${i % 20_000}`,
          '{}',
          '[]',
          u < 0.03 ? 'error' : 'ok',
          u < 0.03 ? 'upstream timed out' : null,
          null,
          null,
          'api',
          (i % prompts).toString(16).padStart(32, '0'),
          t,
          t,
        ]);
      }
    }
    function* ratings(which: 'feedback' | 'current') {
      for (let i = 0; i < n; i++) {
        const count = (i * 37) % 5;
        for (let k = 0; k < count; k++) {
          const rater = (i * 13 + k * 2003) % RATERS;
          const thumbs = rater % 2 === 0;
          const value = ratingValue(i, k, thumbs);
          // Never after the load: a rating received "later" than a calibration that reads it would
          // count as new to the next, incremental one.
          const t = Math.min(now, at(i) + ((i * 7 + k * 911) % (3 * DAY)));
          yield ratingLine(which, projectId, i, ratingId(t, i, k), rater, value, t);
        }
      }
    }
    const copyStart = performance.now();
    const restore = await dropForBulkLoad(url, client, ['interactions', 'feedback', 'feedback_current']);
    // With no foreign keys between them the three tables load at once, each on its own
    // connection: one backend per COPY, so PostgreSQL uses every core (the rows are generated
    // here on one thread, a tenth of the work).
    const [interactionsCopied, ratingsCopied] = await Promise.all([
      copy(
        url,
        'copy interactions (project_id, id, route, model, variant, messages, output, parameters, latency_ms, input_tokens, output_tokens, total_tokens, session_id, user_id, metadata, tags, status, error, trace_id, span_id, source, prompt_hash, created_at, received_at) from stdin',
        interactions(),
      ),
      copy(
        url,
        'copy feedback (id, project_id, interaction_id, rater_id, source, kind, value, label, text, data, idempotency_key, metadata, created_at, received_at) from stdin',
        ratings('feedback'),
      ),
      copy(
        url,
        'copy feedback_current (project_id, interaction_id, rater_id, kind, feedback_id, created_at, value, label) from stdin',
        ratings('current'),
      ),
    ]);
    const indexStart = performance.now();
    await restore();
    const indexSeconds = (performance.now() - indexStart) / 1000;
    await client.query(
      `insert into raters (project_id, id, source, feedback_count, first_seen_at, last_seen_at, flagged)
       select project_id, rater_id, 'annotator', count(*), min(created_at), max(created_at), 0
       from feedback where project_id = $1 group by project_id, rater_id`,
      [projectId],
    );
    await client.query('analyze');
    return {
      interactions: interactionsCopied,
      ratings: ratingsCopied,
      copySeconds: (indexStart - copyStart) / 1000,
      indexSeconds,
    };
  } finally {
    await client.end();
  }
}

/** One COPY on a connection of its own. */
async function copy(url: string, text: string, rows: Iterable<string>): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const query = copyFrom(text, rows);
    client.query(query);
    return await query.done;
  } finally {
    await client.end();
  }
}

/** The rater offsets of successive additions: none is one of the load's (2003k mod 10,000, k < 4). */
const ADDED_RATER_OFFSETS = [5000, 7000, 9000, 1000, 3000, 8000];

/**
 * 1% new ratings (one for every 50th call: n/50, a hundredth of the 2n loaded) by raters who had
 * not rated that call, received now: additions after the last calibration read, which is what an
 * incremental recalibration continues with. Written with COPY like the load (the indexes and
 * foreign keys are in place now), `feedback` and its `feedback_current` row. `round` (0 to 5)
 * makes another addition by other raters, for measuring again on a kept database.
 */
export async function addNewRatings(url: string, projectId: string, n: number, round = 0): Promise<number> {
  const t = Date.now();
  const offset = ADDED_RATER_OFFSETS[round];
  if (offset === undefined)
    throw new RangeError(`round ${round}: at most ${ADDED_RATER_OFFSETS.length} additions`);
  function* ratings(which: 'feedback' | 'current') {
    // Each round on other calls (every 50th from 25, 35, 45, 5, 15, then 25 again), so that each
    // rates about as many calls no one had rated as the first.
    for (let i = 25 + 10 * round; i < n; i += 50) {
      // The loaded raters of call i are (13i + 2003k) mod 10,000 for k < 4: the offset is none of them.
      const rater = (i * 13 + offset!) % RATERS;
      const thumbs = rater % 2 === 0;
      const value = ratingValue(i, 5 + round, thumbs);
      yield ratingLine(which, projectId, i, ratingId(t, i, 5 + round), rater, value, t);
    }
  }
  const added = await copy(
    url,
    'copy feedback (id, project_id, interaction_id, rater_id, source, kind, value, label, text, data, idempotency_key, metadata, created_at, received_at) from stdin',
    ratings('feedback'),
  );
  await copy(
    url,
    'copy feedback_current (project_id, interaction_id, rater_id, kind, feedback_id, created_at, value, label) from stdin',
    ratings('current'),
  );
  return added;
}

interface CalibrationStep {
  calibrateSeconds?: number;
  totalSeconds?: number;
  readInputsSeconds?: number;
  ktoSeconds?: number;
  dpoSeconds?: number;
  ktoRows?: number;
  dpoRows?: number;
  maxRssMib: number;
  calibration?: {
    mode: string;
    fromSnapshot: boolean;
    reason: string;
    ratings: number;
    flagged: number;
    rewardsWritten: number;
    seconds: { read: number; fit: number; save: number; store: number; snapshotFile: number };
  };
}

/** A step stopped at its budget: how long it ran and the most it was resident. */
interface Stopped {
  /** Killed at a limit, or `failed`: it exited with an error of its own (`error`: its message). */
  stopped: 'time' | 'memory' | 'failed';
  seconds: number;
  peakMib: number;
  error?: string;
}

/** A process's resident memory now and at its peak (VmRSS, VmHWM), in MiB; null once it is gone. */
function residentMib(pid: number): { now: number; peak: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) => Number(status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'))?.[1] ?? 0);
    return { now: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

/**
 * bench/procs/calibrate-build.ts in a child process (its own peak memory), its JSON result; stopped
 * (SIGKILL) when it runs past `seconds` or is resident in more than `mib`: at 10 million
 * interactions a step over the issue's budget (15 minutes, 8 GiB) is a failed step, and one that
 * kept growing would take the shared machine's memory.
 */
export async function calibrationStep(
  step: 'calibrate' | 'build' | 'recalibrate' | 'refit' | 'full',
  url: string,
  projectId: string,
  dataDir: string,
  limits: { seconds: number; mib: number },
): Promise<CalibrationStep | Stopped> {
  const started = performance.now();
  // The build holds every rated interaction's columns and one version's rows at once. At 10M
  // calls it now fits V8's default heap here (4 GiB: 251 s, 4,811 MiB resident at most, measured
  // alone on a kept database), but so close to the limit that collections slow its KTO build
  // from 68 s to 104 s; with room it measures the build rather than the collector.
  const heap = step === 'build' ? ['--max-old-space-size=6144'] : [];
  const child = spawn(
    process.execPath,
    [...heap, ...tsNode, join(repoDir, 'bench/procs/calibrate-build.ts'), step, url, projectId, dataDir],
    { cwd: repoDir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RATCHET_DATA_DIR: undefined } },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-20_000);
  });
  let stopped: Stopped['stopped'] | undefined;
  let peakMib = 0;
  const watch = setInterval(() => {
    const rss = residentMib(child.pid!);
    if (rss) peakMib = Math.max(peakMib, rss.peak);
    const over =
      (performance.now() - started) / 1000 > limits.seconds
        ? 'time'
        : rss && rss.now > limits.mib
          ? 'memory'
          : undefined;
    if (over && !stopped) {
      stopped = over;
      child.kill('SIGKILL');
    }
  }, 500);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearInterval(watch);
  const seconds = (performance.now() - started) / 1000;
  if (stopped) return { stopped, seconds, peakMib };
  // A step that failed (V8 out of heap, say) is reported like one stopped at a limit, so the
  // steps after it still run and what was measured is recorded.
  if (code !== 0) return { stopped: 'failed', seconds, peakMib, error: failureOf(stderr, code) };
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as CalibrationStep;
}

/** The project's calibrated rewards and rater verdicts, kept in a table to compare with a later run. */
export async function keepCalibration(client: pg.Client, projectId: string, table: string): Promise<void> {
  await client.query(`drop table if exists ${table}_rewards, ${table}_flags`);
  await client.query(
    `create table ${table}_rewards as select interaction_id, reward from current_rewards where project_id = $1`,
    [projectId],
  );
  await client.query(`create table ${table}_flags as select id, flagged from raters where project_id = $1`, [
    projectId,
  ]);
}

/** The largest reward difference and the raters judged differently between a kept run and now. */
export async function compareCalibration(client: pg.Client, projectId: string, table: string) {
  await client.query(`set work_mem = '512MB'`);
  const rewards = await client.query<{ max: number | null; over: string; missing: string }>(
    `select max(abs(k.reward - r.reward)) as max,
            count(*) filter (where abs(k.reward - r.reward) > 0.01) as over,
            count(*) filter (where r.reward is null) as missing
     from ${table}_rewards k left join current_rewards r
       on r.project_id = $1 and r.interaction_id = k.interaction_id`,
    [projectId],
  );
  const flags = await client.query<{ differ: string; flagged: string }>(
    `select count(*) filter (where k.flagged <> r.flagged) as differ, count(*) filter (where r.flagged = 1) as flagged
     from ${table}_flags k join raters r on r.project_id = $1 and r.id = k.id`,
    [projectId],
  );
  await client.query(`drop table ${table}_rewards, ${table}_flags`);
  return {
    maxRewardDifference: Number(rewards.rows[0]!.max ?? 0),
    rewardsOver001: Number(rewards.rows[0]!.over),
    rewardsMissing: Number(rewards.rows[0]!.missing),
    flagDifferences: Number(flags.rows[0]!.differ),
    flagged: Number(flags.rows[0]!.flagged),
  };
}

const isStopped = (x: CalibrationStep | Stopped | null): x is Stopped => x !== null && 'stopped' in x;
const describeStop = (x: Stopped) =>
  x.stopped === 'failed'
    ? `failed after ${round(x.seconds, 0)} s (${x.error}), ${Math.round(x.peakMib)} MiB resident at most`
    : `stopped at its ${x.stopped} limit after ${round(x.seconds, 0)} s, ${Math.round(x.peakMib)} MiB resident at most`;

/** What a failed step said: V8's fatal error line when it ran out of heap, else its last line. */
function failureOf(stderr: string, code: number | null): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const fatal = lines.find((l) => l.startsWith('FATAL ERROR'));
  return `exit ${code}: ${fatal ?? lines.at(-1) ?? 'no output'}`;
}

/** The issue's budget for a calibration and KTO and DPO build at 10 million interactions. */
const BUDGET = { seconds: 15 * 60, mib: 8 * 1024 };

/**
 * The calibration half of the bench, after the dashboard timings, each step in a child process: a
 * full calibration (keeping its snapshot) then a KTO and a DPO build (calibrate_build_<size>_s, the
 * two processes' peak memory *_peak_mib), within the issue's budget; then 1% new ratings, an
 * incremental recalibration from the snapshot (a loop process after a restart) and a full refit of
 * the same ratings, compared. BENCH_SCALE_DEADLINE (an ISO time) stops steps still running then,
 * and skips the ones not started, so a long run still records what it measured.
 */
async function calibrationMetrics(
  url: string,
  projectId: string,
  n: number,
  size: string,
  log: (m: string) => void,
) {
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-scale-'));
  const deadline = process.env.BENCH_SCALE_DEADLINE ? Date.parse(process.env.BENCH_SCALE_DEADLINE) : Infinity;
  const left = () => Math.max(0, (deadline - Date.now()) / 1000);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const metrics: Record<string, number> = {};
  const notes: string[] = [
    `Calibration (${loadNote()} before it): bench/procs/calibrate-build.ts in child processes on the same database: calibrateProject as the loop's calibrate stage calls it (every current rating read from PostgreSQL page by page, its snapshot kept in a data folder), then in a second process loadDatasetInputs once and buildDatasetVersion for KTO and for DPO (curation off), as the build stage does; calibrate_build_${size}_s is the two spans added, calibrate_build_${size}_peak_mib the larger of the two processes' peak resident memory (getrusage ru_maxrss via process.resourceUsage().maxRSS in the child; the bench process is not counted); a step past the budget (15 minutes together, 8 GiB resident; the parent polls /proc/<pid>/status) is killed and reported as stopped`,
  ];
  const done = () => ({ metrics, notes: `${notes.join('; ')} (${loadNote()} at the end).` });
  try {
    const calibrate = await calibrationStep('calibrate', url, projectId, dataDir, {
      seconds: Math.min(BUDGET.seconds, left()),
      mib: BUDGET.mib,
    });
    log(`calibrate: ${JSON.stringify(calibrate)}; ${loadNote()}`);
    if (isStopped(calibrate)) {
      notes.push(`the full calibration ${describeStop(calibrate)}; nothing after it ran`);
      return done();
    }
    metrics.calibrate_s = round(calibrate.calibrateSeconds!, 1);
    metrics.calibrate_read_s = round(calibrate.calibration!.seconds.read, 1);
    metrics.calibrate_fit_s = round(calibrate.calibration!.seconds.fit, 1);
    metrics.calibrate_save_s = round(calibrate.calibration!.seconds.save, 1);
    metrics.calibrate_peak_mib = Math.round(calibrate.maxRssMib);
    metrics.calibrated_ratings_count = calibrate.calibration!.ratings;
    const build = await calibrationStep('build', url, projectId, dataDir, {
      seconds: Math.min(BUDGET.seconds - calibrate.calibrateSeconds!, left()),
      mib: BUDGET.mib,
    });
    log(`KTO + DPO: ${JSON.stringify(build)}; ${loadNote()}`);
    if (isStopped(build)) {
      notes.push(
        `the KTO and DPO builds ${describeStop(build)}${build.stopped === 'time' ? ` (what was left of the 15 minutes after the calibration's ${round(calibrate.calibrateSeconds!, 0)} s, or the deadline)` : ''}`,
      );
      metrics.build_stopped_after_s = round(build.seconds, 1);
      metrics.build_stopped_peak_mib = Math.round(build.peakMib);
    } else {
      metrics[`calibrate_build_${size}_s`] = round(calibrate.calibrateSeconds! + build.totalSeconds!, 1);
      metrics[`calibrate_build_${size}_peak_mib`] = Math.round(
        Math.max(calibrate.maxRssMib, build.maxRssMib),
      );
      metrics.read_inputs_s = round(build.readInputsSeconds!, 1);
      metrics.build_kto_s = round(build.ktoSeconds!, 1);
      metrics.build_dpo_s = round(build.dpoSeconds!, 1);
      metrics.build_peak_mib = Math.round(build.maxRssMib);
      metrics.kto_rows_count = build.ktoRows!;
      metrics.dpo_rows_count = build.dpoRows!;
    }
    const added = await addNewRatings(url, projectId, n);
    await client.query('analyze feedback, feedback_current');
    metrics.new_ratings_count = added;
    log(`added ${added} new ratings; ${loadNote()}`);
    const unlimited = { seconds: left(), mib: 4 * BUDGET.mib };
    const incremental = await calibrationStep('recalibrate', url, projectId, dataDir, unlimited);
    log(`recalibration: ${JSON.stringify(incremental)}; ${loadNote()}`);
    if (isStopped(incremental)) {
      notes.push(`the recalibration ${describeStop(incremental)}`);
      return done();
    }
    metrics.recalibrate_s = round(incremental.calibrateSeconds!, 2);
    metrics.recalibrate_peak_mib = Math.round(incremental.maxRssMib);
    metrics.recalibrate_from_snapshot_count = incremental.calibration!.fromSnapshot ? 1 : 0;
    // Where its time went: the save's store transaction and snapshot file run side by side.
    const parts = incremental.calibration!.seconds;
    metrics.recalibrate_read_s = round(parts.read, 2);
    metrics.recalibrate_fit_s = round(parts.fit, 2);
    metrics.recalibrate_save_s = round(parts.save, 2);
    metrics.recalibrate_save_store_s = round(parts.store, 2);
    metrics.recalibrate_save_file_s = round(parts.snapshotFile, 2);
    metrics.recalibrate_rewards_written_count = incremental.calibration!.rewardsWritten;
    await keepCalibration(client, projectId, 'bench_incremental');
    const refit = await calibrationStep('refit', url, projectId, dataDir, unlimited);
    log(`full refit: ${JSON.stringify(refit)}; ${loadNote()}`);
    if (isStopped(refit)) {
      notes.push(
        `the full refit ${describeStop(refit)}: the recalibration was at least ${round(refit.seconds / incremental.calibrateSeconds!, 1)}x faster`,
      );
      return done();
    }
    const compared = await compareCalibration(client, projectId, 'bench_incremental');
    log(`incremental vs full refit: ${JSON.stringify(compared)}`);
    Object.assign(metrics, {
      refit_s: round(refit.calibrateSeconds!, 1),
      refit_peak_mib: Math.round(refit.maxRssMib),
      recalibrate_speedup_1pct: round(refit.calibrateSeconds! / incremental.calibrateSeconds!, 2),
      recalibrate_max_reward_diff: round(compared.maxRewardDifference, 4),
      recalibrate_rewards_over_001_count: compared.rewardsOver001,
      recalibrate_flag_differences_count: compared.flagDifferences,
      flagged_raters_count: compared.flagged,
    });
    notes.push(
      `${added} new ratings by COPY (1% of the loaded ones, on calls those raters had not rated), then calibrateProject again in a new child (${incremental.calibration!.mode}, ${incremental.calibration!.fromSnapshot ? 'continuing from the snapshot file: it read only the ratings received since' : `not from the snapshot: ${incremental.calibration!.reason}`}) against a full refit of the same ratings in another child (recalibration off): recalibrate_speedup_1pct is the ratio of the two calibrateProject wall times (read, fit and save; process start and store open not counted), recalibrate_max_reward_diff the largest difference of the stored rewards (${compared.rewardsOver001} over 0.01, ${compared.rewardsMissing} missing), recalibrate_flag_differences_count the raters flagged by one and not the other (${compared.flagged} flagged by the refit)`,
    );
    return done();
  } finally {
    await client.end();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * The server's version and the settings that move these timings most (its memory, WAL and
 * checkpoints), as one line for the notes: a run on Debian's defaults and one on settings sized
 * for the machine (docs/deploy.md) are not the same measurement.
 */
async function serverSettings(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const names = [
      'shared_buffers',
      'effective_cache_size',
      'maintenance_work_mem',
      'work_mem',
      'max_wal_size',
      'checkpoint_timeout',
      'wal_compression',
    ];
    const { rows } = await client.query<{ name: string; value: string }>(
      `select name, current_setting(name) as value from pg_settings where name = any($1) order by name`,
      [names],
    );
    const version = (await client.query<{ server_version: string }>('show server_version')).rows[0]!
      .server_version;
    return `${version.split(' ')[0]} (${rows.map((r) => `${r.name} ${r.value}`).join(', ')})`;
  } finally {
    await client.end();
  }
}

/** Every API call the dashboard's pages make, with the health windows the Models page offers. */
function dashboardCalls(sampleId: string, cursor: string): Record<string, string> {
  return {
    overview: '/dashboard/overview?days=30',
    overview_year: '/dashboard/overview?days=366',
    health_24h: '/dashboard/health?window=24h',
    health_7d: '/dashboard/health?window=7d',
    health_30d: '/dashboard/health?window=30d',
    health_90d_days: '/dashboard/health?window=90d&bucket=day',
    health_30d_one_model: '/dashboard/health?window=30d&route=support-bot&model=tiny-v2',
    explorer: '/interactions?limit=50',
    explorer_deep_page: `/interactions?limit=50&cursor=${cursor}`,
    explorer_filtered: '/interactions?limit=50&raterId=r7&rating=up&route=support-bot',
    interaction: `/interactions/${sampleId}`,
    queue: '/dashboard/queue?raterId=annotator&limit=20',
    raters: '/raters?limit=100',
    runs: '/runs',
    audit: '/audit',
    models: '/models',
    experiments: '/experiments',
    datasets: '/datasets',
    dead_letters: '/dead-letters',
    usage_records: '/usage-records',
    analysis: '/dashboard/analysis',
    what_changed: '/dashboard/what-changed',
  };
}

async function timeCall(base: string, key: string, path: string): Promise<number> {
  const started = performance.now();
  const res = await fetch(`${base}/api/v1${path}`, { headers: { authorization: `Bearer ${key}` } });
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return performance.now() - started;
}

const sizeName = (n: number) =>
  n >= 1_000_000 && n % 1_000_000 === 0
    ? `${n / 1_000_000}m`
    : n >= 1000 && n % 1000 === 0
      ? `${n / 1000}k`
      : `${n}`;

export const scaleBench: Bench = {
  name: 'scale',
  summary:
    'A year of history on PostgreSQL loaded with COPY (N interactions, 2N ratings; BENCH_SCALE_N, default 1M): every dashboard API call timed through the real server',
  keyMetrics: [
    'dashboard_api_ms_max_1m',
    'dashboard_api_ms_max_10m',
    'calibrate_build_10m_s',
    'calibrate_build_10m_peak_mib',
    'recalibrate_speedup_1pct',
    'recalibrate_max_reward_diff',
    'recalibrate_flag_differences_count',
    'copy_load_s',
    'rollups_rebuild_s',
  ],
  async run(ctx) {
    const n = ctx.tiny ? 2_000 : Number(process.env.BENCH_SCALE_N ?? 1_000_000);
    if (!(Number.isInteger(n) && n > 0 && n % 5 === 0))
      throw new Error(`BENCH_SCALE_N: expected a positive multiple of 5, got ${process.env.BENCH_SCALE_N}`);
    const { url, drop } = await createPostgresDatabase(
      process.env.RATCHET_TEST_POSTGRES_URL ?? defaultPostgresUrl,
    );
    try {
      const store = await Store.open(url);
      const project = await store.projects.create('bench');
      const key = (await store.projects.createKey(project.id, 'secret')).key;
      const now = Date.now();
      // The month partitions a server running through that year would have made (on its
      // retention timer), so the rows fall in their months rather than the default partition.
      await store.partitions.createAhead(now - 365 * DAY, 13);
      const loadStart = performance.now();
      ctx.log(`COPY ${n} interactions and ${2 * n} ratings; ${loadNote()}`);
      const seeded = await load(url, project.id, n, now);
      const copySeconds = (performance.now() - loadStart) / 1000;
      ctx.log(
        `loaded ${seeded.interactions} interactions, ${seeded.ratings} ratings in ${round(copySeconds, 1)} s ` +
          `(COPY ${round(seeded.copySeconds, 1)} s, indexes and foreign keys ${round(seeded.indexSeconds, 1)} s); ${loadNote()}`,
      );
      const rebuildStart = performance.now();
      await store.rollups.rebuild(project.id);
      const rebuildSeconds = (performance.now() - rebuildStart) / 1000;
      ctx.log(`rollups rebuilt in ${round(rebuildSeconds, 1)} s; ${loadNote()}`);

      const server = await buildServer({
        store,
        config: loadServerConfig({ port: 0, logLevel: 'silent' }, {}),
      });
      const base = await server.listen();
      try {
        // A page deep in the explorer: the cursor of the row half-way through the history.
        const middle = `i${String(Math.floor(n / 2)).padStart(9, '0')}`;
        const cursor = Buffer.from(JSON.stringify([now - 182 * DAY, middle])).toString('base64url');
        const calls = dashboardCalls(middle, cursor);
        const metrics: Record<string, number> = {};
        const runs = ctx.tiny ? 2 : 3;
        const loadAtStart = loadNote();
        for (const [name, path] of Object.entries(calls)) {
          const first = await timeCall(base, key, path);
          const samples: number[] = [];
          for (let r = 0; r < runs; r++) samples.push(await timeCall(base, key, path));
          metrics[`api_${name}_ms`] = round(median(samples), 1);
          metrics[`api_${name}_first_ms`] = round(first, 1);
          ctx.log(`${name}: ${metrics[`api_${name}_ms`]} ms (first ${round(first, 0)} ms) ${path}`);
        }
        // The rollups cover the COPY-loaded rows: the year's overview counts every call.
        const year = (await (
          await fetch(`${base}/api/v1/dashboard/overview?days=366`, {
            headers: { authorization: `Bearer ${key}` },
          })
        ).json()) as { report: { activity: { interactions: number; ratings: number }[] } | null };
        metrics.overview_interactions_count = (year.report?.activity ?? []).reduce(
          (s, b) => s + b.interactions,
          0,
        );
        metrics.overview_ratings_count = (year.report?.activity ?? []).reduce((s, b) => s + b.ratings, 0);
        const medians = Object.entries(metrics).filter(
          ([k]) => k.startsWith('api_') && !k.endsWith('_first_ms'),
        );
        metrics[`dashboard_api_ms_max_${sizeName(n)}`] = Math.max(...medians.map(([, v]) => v));
        const dashboardLoadEnd = loadNote();
        metrics.copy_load_s = round(copySeconds, 1);
        metrics.copy_rows_s = round(seeded.copySeconds, 1);
        metrics.copy_indexes_s = round(seeded.indexSeconds, 1);
        metrics.rollups_rebuild_s = round(rebuildSeconds, 1);
        metrics.interactions_count = seeded.interactions;
        metrics.ratings_count = seeded.ratings;
        await server.close();
        const calibration = await calibrationMetrics(url, project.id, n, sizeName(n), ctx.log);
        const settings = await serverSettings(url);
        return {
          metrics: { ...metrics, ...calibration.metrics },
          notes: `${seeded.interactions} interactions over 365 days (4 models on 2 routes) and ${seeded.ratings} current ratings (0-4 per call, half thumbs, half 1-5 stars, ${RATERS} raters) loaded into PostgreSQL with COPY FROM STDIN (pg driver; the three tables at once on three connections, their foreign keys and secondary indexes dropped first and made again after from the catalog's definitions, as PostgreSQL's manual advises for a bulk load: copy_rows_s, then copy_indexes_s; copy_load_s is the whole load with the raters' counts and ANALYZE), then ratchet rollups rebuild (rollups_rebuild_s). Each dashboard API call over HTTP to a real server on that database, one at a time: the median of ${runs} after a first call (api_*_first_ms); dashboard_api_ms_max_${sizeName(n)} is the slowest median. analysis and what-changed are background reports: their time is what a page waits (at most 800 ms, then "computing"), not the report's computation. The dashboard was timed before any calibration or dataset (queue's least-certain half and what-changed have little to read). ${loadAtStart} when the timings started, ${dashboardLoadEnd} at their end. ${calibration.notes} PostgreSQL ${settings}. The machine is shared (other helpers on its 2 cores), so timings are noisy and high.`,
        };
      } finally {
        await server.close();
        await store.close();
      }
    } finally {
      // BENCH_SCALE_KEEP=1 keeps the loaded database (its URL in the log) for measuring one step
      // again with bench/procs/calibrate-build.ts without another load.
      if (process.env.BENCH_SCALE_KEEP === '1') ctx.log(`kept the database: ${url}`);
      else await drop();
    }
  },
};
