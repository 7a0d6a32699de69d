import { newId } from '@ratchet/core';
import type SqliteDatabase from 'better-sqlite3';
import { type CompiledQuery, type Insertable, type Kysely, sql } from 'kysely';
import type { DialectName } from './connection.js';
import { chunk, rowsPerStatement } from './json.js';
import { addToBins, binsOf, type LatencyBins, latencyBin } from './latency-bins.js';
import type { SqliteReadThread } from './read-thread.js';
import type { Database, RollupDaysTable, RollupHoursTable } from './schema.js';
import type { ThreadStatement } from './write-thread.js';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
export const hourOf = (t: number): number => Math.floor(t / HOUR_MS) * HOUR_MS;
export const dayOf = (t: number): number => Math.floor(t / DAY_MS) * DAY_MS;
const LOG_INSERT_SQL = 'insert into rollup_log (project_id, id, hour) values (?, ?, ?)';
/** Stale-hour log rows read per pass. */
const LOG_BATCH = 5000;

/** A read query that can run on the store's connection or, compiled, on the read thread. */
interface ReadQuery {
  compile(): CompiledQuery<unknown>;
  execute(): Promise<unknown[]>;
}
type RowsOf<T extends readonly ReadQuery[]> = {
  -readonly [K in keyof T]: Awaited<ReturnType<T[K]['execute']>>;
};

/** Another roll-forward took this window's log rows while this one read its figures. */
class Superseded extends Error {}

/** One rollup row as the dashboard reads it: an hour's or a whole day's figures. */
export interface RollupRow {
  /** Start of the row's UTC hour or day, epoch ms. */
  start: number;
  route: string | null;
  model: string;
  calls: number;
  errors: number;
  inputTokens: number;
  outputTokens: number;
  latencyBins: LatencyBins;
  thumbsUp: number;
  thumbsDown: number;
  starsN: number;
  starsSum: number;
  starsSumSq: number;
}

/** The figures a day's row sums over its hours (all but the histogram, which is merged). */
const SUMMED = [
  'calls',
  'errors',
  'input_tokens',
  'output_tokens',
  'latency_n',
  'thumbs_up',
  'thumbs_down',
  'stars_n',
  'stars_sum',
  'stars_sum_sq',
] as const;

/** The figures both rollup tables hold (all but the row's hour or day). */
type RollupFigures = Omit<RollupHoursTable, 'hour'>;

function rollupRow(start: number, r: RollupFigures): RollupRow {
  return {
    start: Number(start),
    route: r.route === '' ? null : r.route,
    model: r.model,
    calls: Number(r.calls),
    errors: Number(r.errors),
    inputTokens: Number(r.input_tokens),
    outputTokens: Number(r.output_tokens),
    latencyBins: JSON.parse(r.latency_bins) as LatencyBins,
    thumbsUp: Number(r.thumbs_up),
    thumbsDown: Number(r.thumbs_down),
    starsN: Number(r.stars_n),
    starsSum: Number(r.stars_sum),
    starsSumSq: Number(r.stars_sum_sq),
  };
}

/**
 * The dashboard's rollups: per project, UTC hour, route and model, the figures the dashboard
 * shows (calls, errors, tokens, a latency histogram, current thumbs and stars), and feedback
 * events per hour.
 *
 * How they stay current: a write that adds or changes rows of an hour appends a row naming that
 * hour to `rollup_log`, in the write's own transaction (insert-only, so concurrent writers on
 * PostgreSQL never wait for each other on a counter row). A roll-forward recomputes each logged
 * hour from its raw rows with GROUP BYs (the same SQL on both databases) and deletes the log rows
 * it covered. Recomputing instead of adding deltas keeps every figure exact under what deltas
 * get wrong: a rating replaced by the same rater's newer one (current thumbs move), deletions
 * and retention, and writers committing out of order. The price is that a roll-forward reads an
 * hour's rows again, which at ten million calls a day is about 400,000 rows per hour.
 * Rebuild = forget everything and log every hour that has data.
 *
 * Each recomputed hour's UTC day is then merged again from its hourly rows into `rollup_days`
 * (in the same transaction, so the two never disagree): a 90-day window by day reads 90 rows per
 * series instead of 2,160, and the merge costs a read of at most 24 rows per series.
 */
export class RollupRepository {
  private readonly rolling = new Map<string, Promise<void>>();
  /** The log's insert as a prepared statement, per SQLite connection (see `markStale`). */
  private readonly logInserts = new WeakMap<SqliteDatabase.Database, SqliteDatabase.Statement>();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    /** SQLite files: the recompute's reads run there, off the event loop (see read-thread.ts). */
    private readonly readThread?: SqliteReadThread,
    /**
     * The transaction a roll-forward writes in. The store's relaxed one (no fsync at commit):
     * rollups are recomputed from rows that are durable already, and the log rows a pass deletes
     * go in the same transaction, so a commit lost to a power cut only leaves hours to redo;
     * a commit at synchronous=FULL fsynced the WAL on the event loop every pass.
     */
    private readonly write: <T>(work: (trx: Kysely<Database>) => Promise<T>) => Promise<T> = (work) =>
      db.transaction().execute(work),
  ) {}

  /**
   * In a write's transaction: the hours of these times (epoch ms) hold changed rows. `sqlite` is
   * the raw connection `trx` runs on, when the caller knows it does: then the log rows go in by a
   * prepared statement inside that transaction, because building a Kysely insert for the one or
   * two rows of each write was a tenth of a single feedback event's CPU at ingest rates.
   */
  async markStale(
    trx: Kysely<Database>,
    projectId: string,
    times: Iterable<number>,
    sqlite?: SqliteDatabase.Database,
  ): Promise<void> {
    const hours = [...new Set([...times].map(hourOf))].sort((a, b) => a - b);
    if (hours.length === 0) return;
    const write = newId();
    if (sqlite) {
      let insert = this.logInserts.get(sqlite);
      if (!insert) {
        insert = sqlite.prepare(LOG_INSERT_SQL);
        this.logInserts.set(sqlite, insert);
      }
      for (const hour of hours) insert.run(projectId, `${write}:${hour}`, hour);
      return;
    }
    for (const part of chunk(hours, rowsPerStatement(3)))
      await trx
        .insertInto('rollup_log')
        .values(part.map((hour) => ({ project_id: projectId, id: `${write}:${hour}`, hour })))
        .execute();
  }

  /**
   * `markStale` as statements for the writer thread (write-thread.ts): one log row per hour,
   * written when any of that hour's rows was (`when`: the index of the statement that wrote it).
   */
  staleStatements(projectId: string, times: readonly { time: number; when: number }[]): ThreadStatement[] {
    const byHour = new Map<number, number[]>();
    for (const { time, when } of times) {
      const hour = hourOf(time);
      const list = byHour.get(hour);
      if (list) list.push(when);
      else byHour.set(hour, [when]);
    }
    const write = newId();
    return [...byHour]
      .sort(([a], [b]) => a - b)
      .map(([hour, when]) => ({
        sql: LOG_INSERT_SQL,
        parameters: [projectId, `${write}:${hour}`, hour],
        when,
      }));
  }

  /**
   * In a write's transaction: the hours of these interactions (their feedback changed, or they
   * go), and of `times` besides.
   */
  async markInteractionsStale(
    trx: Kysely<Database>,
    projectId: string,
    interactionIds: Iterable<string>,
    times: Iterable<number> = [],
  ): Promise<void> {
    const hours = new Set<number>([...times].map(hourOf));
    for (const part of chunk([...new Set(interactionIds)], 1000)) {
      const rows = await trx
        .selectFrom('interactions')
        .select(sql<number>`(created_at / ${sql.lit(HOUR_MS)}) * ${sql.lit(HOUR_MS)}`.as('hour'))
        .distinct()
        .where('project_id', '=', projectId)
        .where('id', 'in', part)
        .execute();
      for (const r of rows) hours.add(Number(r.hour));
    }
    await this.markStale(trx, projectId, hours);
  }

  /** In a deletion's transaction, before the rows go: the hours these feedback events touch. */
  async markFeedbackStale(trx: Kysely<Database>, projectId: string, feedbackIds: readonly string[]) {
    for (const part of chunk([...new Set(feedbackIds)], 1000)) {
      const rows = await trx
        .selectFrom('feedback')
        .select(['created_at', 'interaction_id'])
        .where('project_id', '=', projectId)
        .where('id', 'in', part)
        .execute();
      await this.markInteractionsStale(
        trx,
        projectId,
        rows.map((r) => r.interaction_id),
        rows.map((r) => Number(r.created_at)),
      );
    }
  }

  /**
   * Recomputes the project's logged hours (one pass at a time per project in this process; on
   * PostgreSQL an advisory lock keeps two servers from writing the same hour's rows at once).
   */
  rollForward(projectId: string): Promise<void> {
    let run = this.rolling.get(projectId);
    if (!run) {
      run = this.rollForwardNow(projectId).finally(() => this.rolling.delete(projectId));
      this.rolling.set(projectId, run);
    }
    return run;
  }

  /** Projects with logged hours (for a periodic roll-forward). */
  async staleProjects(): Promise<string[]> {
    const rows = await this.db.selectFrom('rollup_log').select('project_id').distinct().execute();
    return rows.map((r) => r.project_id);
  }

  /** Forgets a project's rollups and recomputes them from every hour that holds its rows. */
  async rebuild(projectId: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('rollup_hours').where('project_id', '=', projectId).execute();
      await trx.deleteFrom('rollup_feedback_hours').where('project_id', '=', projectId).execute();
      await trx.deleteFrom('rollup_days').where('project_id', '=', projectId).execute();
      const write = newId();
      for (const table of ['interactions', 'feedback'] as const)
        await sql`insert into rollup_log (project_id, id, hour)
          select project_id, ${`${write}:${table}:`} || cast(hour as text), hour
          from (select distinct project_id, (created_at / ${sql.lit(HOUR_MS)}) * ${sql.lit(HOUR_MS)} as hour
                from ${sql.table(table)} where project_id = ${projectId}) h`.execute(trx);
    });
    await this.rollForward(projectId);
  }

  /**
   * The project's rollup rows covering the hours in [from, to) (whole hours), optionally of one
   * route or model. When the caller sums them into buckets of whole UTC days (`bucketMs` a
   * multiple of a day), the days that lie wholly inside the range come from `rollup_days` and
   * only the partial days at its ends from `rollup_hours`: same sums, a 24th of the rows.
   */
  async rows(
    projectId: string,
    q: { from: number; to: number; route?: string; model?: string; bucketMs?: number },
  ): Promise<RollupRow[]> {
    await this.rollForward(projectId);
    const byDay = q.bucketMs !== undefined && q.bucketMs % DAY_MS === 0;
    // Hours [from, a), whole days [a, b), hours [b, to); without days, all hours.
    const a = byDay ? Math.min(dayOf(q.from + DAY_MS - 1), q.to) : q.to;
    const b = byDay ? Math.max(dayOf(q.to), a) : q.to;
    const hours = async (from: number, to: number) =>
      from >= to
        ? []
        : this.db
            .selectFrom('rollup_hours')
            .selectAll()
            .where('project_id', '=', projectId)
            .where('hour', '>=', from)
            .where('hour', '<', to)
            .$if(q.route !== undefined, (w) => w.where('route', '=', q.route!))
            .$if(q.model !== undefined, (w) => w.where('model', '=', q.model!))
            .execute();
    const days = async (from: number, to: number) =>
      from >= to
        ? []
        : this.db
            .selectFrom('rollup_days')
            .selectAll()
            .where('project_id', '=', projectId)
            .where('day', '>=', from)
            .where('day', '<', to)
            .$if(q.route !== undefined, (w) => w.where('route', '=', q.route!))
            .$if(q.model !== undefined, (w) => w.where('model', '=', q.model!))
            .execute();
    const [head, whole, tail] = await Promise.all([hours(q.from, a), days(a, b), hours(b, q.to)]);
    return [
      ...head.map((r) => rollupRow(r.hour, r)),
      ...whole.map((r) => rollupRow(r.day, r)),
      ...tail.map((r) => rollupRow(r.hour, r)),
    ];
  }

  /** Feedback events per hour in [from, to). */
  async feedbackHours(
    projectId: string,
    from: number,
    to: number,
  ): Promise<{ hour: number; events: number }[]> {
    await this.rollForward(projectId);
    const rows = await this.db
      .selectFrom('rollup_feedback_hours')
      .select(['hour', 'events'])
      .where('project_id', '=', projectId)
      .where('hour', '>=', from)
      .where('hour', '<', to)
      .execute();
    return rows.map((r) => ({ hour: Number(r.hour), events: Number(r.events) }));
  }

  /**
   * Current thumbs and stars per model over all time, and the project's totals: a GROUP BY over
   * the daily rollups (a row per day, route and model: hundreds for a year, not millions).
   */
  async byModel(projectId: string) {
    await this.rollForward(projectId);
    const rows = await this.db
      .selectFrom('rollup_days')
      .where('project_id', '=', projectId)
      .select((eb) => [
        'model',
        eb.fn.sum<number>('calls').as('calls'),
        eb.fn.sum<number>('thumbs_up').as('up'),
        eb.fn.sum<number>('thumbs_down').as('down'),
        eb.fn.sum<number>('stars_n').as('stars_n'),
        eb.fn.sum<number>('stars_sum').as('stars_sum'),
        eb.fn.sum<number>('stars_sum_sq').as('stars_sq'),
      ])
      .groupBy('model')
      .orderBy('model')
      .execute();
    return rows.map((r) => ({
      model: r.model,
      calls: Number(r.calls ?? 0),
      up: Number(r.up ?? 0),
      down: Number(r.down ?? 0),
      starsN: Number(r.stars_n ?? 0),
      starsSum: Number(r.stars_sum ?? 0),
      starsSumSq: Number(r.stars_sq ?? 0),
    }));
  }

  private async rollForwardNow(projectId: string): Promise<void> {
    for (;;) {
      const log = await this.db
        .selectFrom('rollup_log')
        .select(['id', 'hour'])
        .where('project_id', '=', projectId)
        .orderBy('hour')
        .limit(LOG_BATCH)
        .execute();
      if (log.length === 0) return;
      // Consecutive stale hours are recomputed by one query over a window of up to a day.
      let i = 0;
      while (i < log.length) {
        // Up to the end of the first hour's UTC day: one query's rows fit in memory (a year's
        // would not), and the window's day is then merged into its daily rows.
        const from = Number(log[i]!.hour);
        const to = Math.min(dayOf(from) + DAY_MS, Number(log.at(-1)!.hour) + HOUR_MS);
        const covered: string[] = [];
        while (i < log.length && Number(log[i]!.hour) < to) covered.push(log[i++]!.id);
        // Read after the log: every write whose log row is covered is in these figures.
        const figures = await this.readFigures(projectId, from, to);
        await this.write(async (trx) => {
          if (this.dialect === 'postgres')
            await sql`select pg_advisory_xact_lock(hashtext(${`ratchet:rollups:${projectId}`}))`.execute(trx);
          // Only the log rows read before the figures: a write committed since logged its own.
          let deleted = 0;
          for (const part of chunk(covered, 1000)) {
            const r = await trx
              .deleteFrom('rollup_log')
              .where('project_id', '=', projectId)
              .where('id', 'in', part)
              .executeTakeFirst();
            deleted += Number(r.numDeletedRows);
          }
          // Another pass (another server) took some of them since: it read its figures after
          // those log rows were written, and what it did not cover is still logged. Writing
          // ours could put older figures over its newer ones, so this window is left to it.
          if (deleted < covered.length) throw new Superseded();
          await this.replaceFigures(trx, projectId, from, to, figures);
          await this.mergeDay(trx, projectId, dayOf(from));
        }).catch((err: unknown) => {
          if (!(err instanceof Superseded)) throw err;
        });
      }
      if (log.length < LOG_BATCH) return;
    }
  }

  /**
   * The figures of the hours in [from, to), recomputed from the raw rows: on a SQLite file on the
   * read thread (these queries scan every call of the hours; on the event loop they held every
   * request in flight), elsewhere on the store's connections.
   */
  private async readFigures(projectId: string, from: number, to: number) {
    const hour = (col: string) => sql<number>`(${sql.ref(col)} / ${sql.lit(HOUR_MS)}) * ${sql.lit(HOUR_MS)}`;
    const db = this.db;
    const calls = () =>
      db
        .selectFrom('interactions as i')
        .where('i.project_id', '=', projectId)
        .where('i.created_at', '>=', from)
        .where('i.created_at', '<', to);
    return this.readTogether([
      calls()
        .select((eb) => [
          'i.route',
          'i.model',
          hour('i.created_at').as('hour'),
          eb.fn.countAll<number>().as('calls'),
          eb.fn.sum<number>(sql`case when i.status = 'error' then 1 else 0 end`).as('errors'),
          eb.fn.sum<number>(sql`coalesce(i.input_tokens, 0)`).as('input_tokens'),
          eb.fn.sum<number>(sql`coalesce(i.output_tokens, 0)`).as('output_tokens'),
        ])
        .groupBy(['i.route', 'i.model', hour('i.created_at')]),
      // Bin edges are whole milliseconds, so a latency and its ceiling fall in the same bin:
      // grouping by the ceiling returns a few hundred rows per hour, not one per call.
      calls()
        .where('i.status', '=', 'ok')
        .where('i.latency_ms', 'is not', null)
        .select((eb) => [
          'i.route',
          'i.model',
          hour('i.created_at').as('hour'),
          sql<number>`ceil(i.latency_ms)`.as('ms'),
          eb.fn.countAll<number>().as('n'),
        ])
        .groupBy(['i.route', 'i.model', hour('i.created_at'), sql`ceil(i.latency_ms)`]),
      calls()
        .innerJoin('feedback_current as c', (j) =>
          j.onRef('c.project_id', '=', 'i.project_id').onRef('c.interaction_id', '=', 'i.id'),
        )
        .where('c.kind', 'in', ['thumbs', 'stars'])
        .select((eb) => [
          'i.route',
          'i.model',
          hour('i.created_at').as('hour'),
          eb.fn.sum<number>(sql`case when c.kind = 'thumbs' and c.value > 0 then 1 else 0 end`).as('up'),
          eb.fn.sum<number>(sql`case when c.kind = 'thumbs' and c.value < 0 then 1 else 0 end`).as('down'),
          eb.fn.count<number>(sql`case when c.kind = 'stars' then c.value end`).as('stars_n'),
          eb.fn.sum<number>(sql`case when c.kind = 'stars' then c.value end`).as('stars_sum'),
          eb.fn.sum<number>(sql`case when c.kind = 'stars' then c.value * c.value end`).as('stars_sq'),
        ])
        .groupBy(['i.route', 'i.model', hour('i.created_at')]),
      db
        .selectFrom('feedback as f')
        .where('f.project_id', '=', projectId)
        .where('f.created_at', '>=', from)
        .where('f.created_at', '<', to)
        .select((eb) => [hour('f.created_at').as('hour'), eb.fn.countAll<number>().as('events')])
        .groupBy(hour('f.created_at')),
    ] as const);
  }

  /** Runs read queries together: on the read thread in one snapshot when there is one. */
  private async readTogether<T extends readonly ReadQuery[]>(queries: T): Promise<RowsOf<T>> {
    const thread = this.readThread;
    if (thread?.alive) {
      try {
        return (await thread.run(queries.map((q) => q.compile()))) as RowsOf<T>;
      } catch (err) {
        // The thread itself failed (not the query): the store's connection reads instead.
        if (thread.alive) throw err;
      }
    }
    return (await Promise.all(queries.map((q) => q.execute()))) as RowsOf<T>;
  }

  /** Replaces the rollups of the hours in [from, to) with `figures` (see readFigures). */
  private async replaceFigures(
    trx: Kysely<Database>,
    projectId: string,
    from: number,
    to: number,
    [totals, latencies, ratings, events]: Awaited<ReturnType<RollupRepository['readFigures']>>,
  ): Promise<void> {
    const key = (r: { route: string | null; model: string; hour: unknown }) =>
      JSON.stringify([r.route ?? '', r.model, Number(r.hour)]);
    const bins = new Map<string, Map<number, number>>();
    for (const l of latencies) {
      const k = key(l);
      const m = bins.get(k) ?? new Map<number, number>();
      bins.set(k, m);
      addToBins(m, [[latencyBin(Number(l.ms)), Number(l.n)]]);
    }
    const rated = new Map(ratings.map((r) => [key(r), r]));
    const rows: Insertable<RollupHoursTable>[] = totals.map((t) => {
      const b = bins.get(key(t));
      const r = rated.get(key(t));
      return {
        project_id: projectId,
        hour: Number(t.hour),
        route: t.route ?? '',
        model: t.model,
        calls: Number(t.calls),
        errors: Number(t.errors ?? 0),
        input_tokens: Number(t.input_tokens ?? 0),
        output_tokens: Number(t.output_tokens ?? 0),
        latency_n: b ? [...b.values()].reduce((s, n) => s + n, 0) : 0,
        latency_bins: JSON.stringify(b ? binsOf(b) : []),
        thumbs_up: Number(r?.up ?? 0),
        thumbs_down: Number(r?.down ?? 0),
        stars_n: Number(r?.stars_n ?? 0),
        stars_sum: Number(r?.stars_sum ?? 0),
        stars_sum_sq: Number(r?.stars_sq ?? 0),
      };
    });
    const inWindow = <T extends 'rollup_hours' | 'rollup_feedback_hours'>(table: T) =>
      trx
        .deleteFrom(table as 'rollup_hours')
        .where('project_id', '=', projectId)
        .where('hour', '>=', from)
        .where('hour', '<', to)
        .execute();
    await inWindow('rollup_hours');
    await inWindow('rollup_feedback_hours');
    for (const part of chunk(rows, rowsPerStatement(15)))
      await trx.insertInto('rollup_hours').values(part).execute();
    const perHour = events.map((e) => ({
      project_id: projectId,
      hour: Number(e.hour),
      events: Number(e.events),
    }));
    for (const part of chunk(perHour, rowsPerStatement(3)))
      await trx.insertInto('rollup_feedback_hours').values(part).execute();
  }

  /** Replaces a UTC day's daily rows with the sums and merged histograms of its hourly rows. */
  private async mergeDay(trx: Kysely<Database>, projectId: string, day: number): Promise<void> {
    const hours = await trx
      .selectFrom('rollup_hours')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('hour', '>=', day)
      .where('hour', '<', day + DAY_MS)
      .execute();
    const merged = new Map<string, { row: Insertable<RollupDaysTable>; bins: Map<number, number> }>();
    for (const h of hours) {
      const k = JSON.stringify([h.route, h.model]);
      const m = merged.get(k) ?? {
        row: {
          project_id: projectId,
          day,
          route: h.route,
          model: h.model,
          calls: 0,
          errors: 0,
          input_tokens: 0,
          output_tokens: 0,
          latency_n: 0,
          latency_bins: '[]',
          thumbs_up: 0,
          thumbs_down: 0,
          stars_n: 0,
          stars_sum: 0,
          stars_sum_sq: 0,
        },
        bins: new Map<number, number>(),
      };
      merged.set(k, m);
      for (const f of SUMMED) m.row[f] = Number(m.row[f]) + Number(h[f]);
      addToBins(m.bins, JSON.parse(h.latency_bins) as LatencyBins);
    }
    await trx.deleteFrom('rollup_days').where('project_id', '=', projectId).where('day', '=', day).execute();
    const rows = [...merged.values()].map(({ row, bins }) => ({
      ...row,
      latency_bins: JSON.stringify(binsOf(bins)),
    }));
    for (const part of chunk(rows, rowsPerStatement(15)))
      await trx.insertInto('rollup_days').values(part).execute();
  }
}
