import { type Kysely, sql } from 'kysely';
import { addToBins, binPercentile, type LatencyBins } from './latency-bins.js';
import { HOUR_MS, hourOf, type RollupRepository, type RollupRow } from './rollups.js';
import type { Database } from './schema.js';

/** Rollups are hourly: a bucket of the dashboard's figures is a whole number of hours. */
function assertWholeHours(bucketMs: number): void {
  if (!(bucketMs >= HOUR_MS && bucketMs % HOUR_MS === 0))
    throw new Error(`bucket: expected a whole number of hours, got ${bucketMs} ms`);
}

/** Interactions and feedback events per time bucket (start of the bucket, epoch ms). */
export interface ActivityBucket {
  t: number;
  interactions: number;
  ratings: number;
}

/** Current thumbs and stars of one model, as sums for intervals computed by the caller. */
export interface ModelSatisfactionRow {
  model: string;
  up: number;
  down: number;
  starsN: number;
  starsSum: number;
  starsSumSq: number;
}

/** What a dataset version was made of: its interactions and their current feedback by kind. */
export interface LearnedFrom {
  interactions: number;
  feedbackByKind: Record<string, number>;
}

/** One item an annotator could rate next, with the evidence the queue policy chose it by. */
export interface QueueCandidate {
  interactionId: string;
  createdAt: number;
  /** Width of the calibrated reward's interval (null: never rated). */
  uncertainty: number | null;
  ratings: number;
}

/** One bucket of a model's production health (only buckets with calls are listed). */
export interface ModelHealthBucket {
  /** Start of the bucket, epoch ms (UTC hours or days). */
  t: number;
  calls: number;
  /** Calls whose upstream failed (`status = 'error'`), and their share of the calls. */
  errors: number;
  errorRate: number;
  inputTokens: number;
  outputTokens: number;
  /** Nearest-rank latency percentiles of the answered calls (null: none answered). */
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
  /** Current thumbs on the bucket's calls, and the thumbs-up share (null: none rated). */
  thumbsUp: number;
  thumbsDown: number;
  satisfaction: number | null;
}

/** A model version's health on a route over time: what the gateway logged for it, per bucket. */
export interface ModelHealthSeries {
  route: string | null;
  model: string;
  buckets: ModelHealthBucket[];
}

export interface ModelHealthQuery {
  from: number;
  to: number;
  bucketMs: number;
  route?: string;
  model?: string;
}

/**
 * The dashboard's aggregates. Every figure is a GROUP BY in the database over an index, so a page
 * costs the same few queries on 100 rows or 100,000 (see bench/dashboard-load.ts).
 */
export class DashboardRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly rollups: RollupRepository,
  ) {}

  /**
   * A fingerprint of what the dashboard's reports are computed from: it changes when an
   * interaction or feedback arrives, a calibration runs, a dataset is built or a model moves.
   * All index-only reads, so checking it costs milliseconds where recomputing costs seconds.
   */
  async dataVersion(projectId: string): Promise<string> {
    // Counts from the rollups (a row per day, not per call), the newest times from the indexes.
    await this.rollups.rollForward(projectId);
    const [interactions, feedback, calibration, datasets, models] = await Promise.all([
      this.db
        .selectFrom('rollup_days')
        .select((eb) => [
          eb.fn.sum<number>('calls').as('n'),
          eb.fn.sum<number>(sql`thumbs_up + thumbs_down + stars_n`).as('rated'),
          this.db
            .selectFrom('interactions')
            .select((m) => m.fn.max('created_at').as('last'))
            .where('project_id', '=', projectId)
            .as('last'),
        ])
        .where('project_id', '=', projectId)
        .executeTakeFirstOrThrow(),
      this.db
        .selectFrom('rollup_feedback_hours')
        .select((eb) => [
          eb.fn.sum<number>('events').as('n'),
          this.db
            .selectFrom('feedback')
            .select((m) => m.fn.max('created_at').as('last'))
            .where('project_id', '=', projectId)
            .as('last'),
        ])
        .where('project_id', '=', projectId)
        .executeTakeFirstOrThrow(),
      this.db
        .selectFrom('calibration_runs')
        .select((eb) => eb.fn.max('created_at').as('last'))
        .where('project_id', '=', projectId)
        .executeTakeFirstOrThrow(),
      this.db
        .selectFrom('datasets')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('project_id', '=', projectId)
        .executeTakeFirstOrThrow(),
      this.db
        .selectFrom('models')
        .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.max('updated_at').as('last')])
        .where('project_id', '=', projectId)
        .executeTakeFirstOrThrow(),
    ]);
    return [
      interactions.n,
      interactions.rated,
      interactions.last,
      feedback.n,
      feedback.last,
      calibration.last,
      datasets.n,
      models.n,
      models.last,
    ]
      .map((v) => String(v ?? '-'))
      .join(':');
  }

  /** Interactions and feedback events per bucket (a whole number of hours) since `from`, oldest first. */
  async activity(projectId: string, from: number, bucketMs: number): Promise<ActivityBucket[]> {
    assertWholeHours(bucketMs);
    const to = Number.MAX_SAFE_INTEGER;
    const [calls, events] = await Promise.all([
      this.rollups.rows(projectId, { from: hourOf(from), to, bucketMs }),
      this.rollups.feedbackHours(projectId, hourOf(from), to),
    ]);
    const byTime = new Map<number, ActivityBucket>();
    const at = (hour: number) => {
      const t = Math.floor(hour / bucketMs) * bucketMs;
      const b = byTime.get(t) ?? { t, interactions: 0, ratings: 0 };
      byTime.set(t, b);
      return b;
    };
    for (const r of calls) at(r.start).interactions += r.calls;
    for (const r of events) at(r.hour).ratings += r.events;
    return [...byTime.values()].sort((a, b) => a.t - b.t);
  }

  /**
   * Each (route, model)'s calls per bucket of [from, to) (whole hours: `to` is taken up to the end
   * of its hour): calls, errors, tokens, latency p50/p95 and the thumbs-up share of the current
   * thumbs on those calls (by the call's time, so a bucket says how the calls made then were
   * received). Read from the rollups (daily rows for the whole days of buckets of days); the
   * percentiles are nearest rank over the rollups' latency histogram, so they are the upper edge
   * of the bin holding the exact value: at most max(1 ms, 5%) above it (latency-bins.ts).
   */
  async modelHealth(projectId: string, q: ModelHealthQuery): Promise<ModelHealthSeries[]> {
    assertWholeHours(q.bucketMs);
    const rows = await this.rollups.rows(projectId, {
      from: hourOf(q.from),
      to: hourOf(q.to - 1) + HOUR_MS,
      bucketMs: q.bucketMs,
      ...(q.route !== undefined ? { route: q.route } : {}),
      ...(q.model !== undefined ? { model: q.model } : {}),
    });
    const buckets = new Map<string, { series: string; t: number; rows: RollupRow[] }>();
    for (const r of rows) {
      const t = Math.floor(r.start / q.bucketMs) * q.bucketMs;
      const series = JSON.stringify([r.route, r.model]);
      const k = `${series}:${t}`;
      const b = buckets.get(k) ?? { series, t, rows: [] };
      buckets.set(k, b);
      b.rows.push(r);
    }
    const series = new Map<string, ModelHealthSeries>();
    for (const b of buckets.values()) {
      const first = b.rows[0]!;
      const s = series.get(b.series) ?? { route: first.route, model: first.model, buckets: [] };
      series.set(b.series, s);
      const sum = (f: (r: RollupRow) => number) => b.rows.reduce((n, r) => n + f(r), 0);
      // A bucket of one rollup row (an hour's bucket, or a whole day's) reads its bins as stored.
      let latency: Map<number, number> | LatencyBins = first.latencyBins;
      if (b.rows.length > 1) {
        latency = new Map<number, number>();
        for (const r of b.rows) addToBins(latency, r.latencyBins);
      }
      const calls = sum((r) => r.calls);
      const errors = sum((r) => r.errors);
      const up = sum((r) => r.thumbsUp);
      const down = sum((r) => r.thumbsDown);
      s.buckets.push({
        t: b.t,
        calls,
        errors,
        errorRate: errors / calls,
        inputTokens: sum((r) => r.inputTokens),
        outputTokens: sum((r) => r.outputTokens),
        latencyP50Ms: binPercentile(latency, 50),
        latencyP95Ms: binPercentile(latency, 95),
        thumbsUp: up,
        thumbsDown: down,
        satisfaction: up + down > 0 ? up / (up + down) : null,
      });
    }
    for (const s of series.values()) s.buckets.sort((a, b) => a.t - b.t);
    return [...series.values()].sort(
      (a, b) => (a.route ?? '').localeCompare(b.route ?? '') || a.model.localeCompare(b.model),
    );
  }

  /** Current thumbs and stars per interaction model (from the rollups). */
  async satisfactionByModel(projectId: string): Promise<ModelSatisfactionRow[]> {
    const rows = await this.rollups.byModel(projectId);
    return rows.filter((r) => r.up + r.down + r.starsN > 0).map(({ calls: _calls, ...r }) => r);
  }

  /**
   * Current feedback behind a dataset version, by kind (what a model trained on it learned from).
   * With `except`, only the interactions that dataset did not have (what a model learned that
   * the model it was built on had not: each round's dataset is rebuilt from all feedback so far).
   */
  async learnedFrom(projectId: string, datasetId: string, except?: string): Promise<LearnedFrom> {
    const members = () => {
      let q = this.db
        .selectFrom('dataset_interactions as m')
        .where('m.dataset_id', '=', datasetId)
        .where('m.project_id', '=', projectId);
      if (except)
        q = q.where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom('dataset_interactions as x')
                .select(sql`1`.as('one'))
                .where('x.dataset_id', '=', except)
                .whereRef('x.interaction_id', '=', 'm.interaction_id'),
            ),
          ),
        );
      return q;
    };
    const [count, kinds] = await Promise.all([
      members()
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow(),
      members()
        .innerJoin('feedback_current as c', (j) =>
          j.onRef('c.project_id', '=', 'm.project_id').onRef('c.interaction_id', '=', 'm.interaction_id'),
        )
        .select((eb) => ['c.kind', eb.fn.countAll<number>().as('n')])
        .groupBy('c.kind')
        .execute(),
    ]);
    return {
      interactions: Number(count.n),
      feedbackByKind: Object.fromEntries(kinds.map((k) => [k.kind, Number(k.n)])),
    };
  }

  /** How many of these feedback events fall on interactions served by each model (theme shares per model). */
  async feedbackModels(projectId: string, feedbackIds: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (let i = 0; i < feedbackIds.length; i += 1000) {
      const part = feedbackIds.slice(i, i + 1000);
      const rows = await this.db
        .selectFrom('feedback as f')
        .innerJoin('interactions as n', (j) =>
          j.onRef('n.project_id', '=', 'f.project_id').onRef('n.id', '=', 'f.interaction_id'),
        )
        .select(['f.id', 'n.model'])
        .where('f.project_id', '=', projectId)
        .where('f.id', 'in', part)
        .execute();
      for (const r of rows) out.set(r.id, r.model);
    }
    return out;
  }

  /**
   * Rated interactions per interaction model (the denominator of a theme's rate): any current
   * feedback counts, calibrated or not yet, so a model rated since the last calibration has a rate.
   */
  async ratedInteractionsByModel(projectId: string): Promise<Map<string, number>> {
    const rows = await this.db
      .selectFrom('feedback_current as c')
      .innerJoin('interactions as i', (j) =>
        j.onRef('i.project_id', '=', 'c.project_id').onRef('i.id', '=', 'c.interaction_id'),
      )
      .select((eb) => ['i.model', eb.fn.count<number>('c.interaction_id').distinct().as('n')])
      .where('c.project_id', '=', projectId)
      .groupBy('i.model')
      .execute();
    return new Map(rows.map((r) => [r.model, Number(r.n)]));
  }

  /** Unrated interactions, newest first (the queue's default: fresh traffic nobody has looked at). */
  async unratedRecent(projectId: string, opts: { limit: number; route?: string }): Promise<QueueCandidate[]> {
    let q = this.db
      .selectFrom('interactions as i')
      .select(['i.id', 'i.created_at'])
      .where('i.project_id', '=', projectId)
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('feedback_current as c')
              .select(sql`1`.as('one'))
              .whereRef('c.project_id', '=', 'i.project_id')
              .whereRef('c.interaction_id', '=', 'i.id'),
          ),
        ),
      );
    if (opts.route !== undefined) q = q.where('i.route', '=', opts.route);
    const rows = await q.orderBy('i.created_at', 'desc').orderBy('i.id', 'desc').limit(opts.limit).execute();
    return rows.map((r) => ({
      interactionId: r.id,
      createdAt: Number(r.created_at),
      uncertainty: null,
      ratings: 0,
    }));
  }

  /**
   * Rated interactions whose calibrated reward is least certain (widest interval), skipping those
   * this rater has already rated: one more rating there moves the estimate most.
   */
  async leastCertain(
    projectId: string,
    opts: { limit: number; route?: string; raterId?: string },
  ): Promise<QueueCandidate[]> {
    let q = this.db
      .selectFrom('current_rewards as r')
      .innerJoin('interactions as i', (j) =>
        j.onRef('i.project_id', '=', 'r.project_id').onRef('i.id', '=', 'r.interaction_id'),
      )
      .select(['i.id', 'i.created_at', 'r.n', sql<number>`r.upper - r.lower`.as('width')])
      .where('r.project_id', '=', projectId);
    if (opts.route !== undefined) q = q.where('i.route', '=', opts.route);
    const raterId = opts.raterId;
    if (raterId !== undefined)
      q = q.where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('feedback_current as c')
              .select(sql`1`.as('one'))
              .whereRef('c.project_id', '=', 'i.project_id')
              .whereRef('c.interaction_id', '=', 'i.id')
              .where('c.rater_id', '=', raterId),
          ),
        ),
      );
    const rows = await q.orderBy(sql`r.upper - r.lower`, 'desc').orderBy('i.id').limit(opts.limit).execute();
    return rows.map((r) => ({
      interactionId: r.id,
      createdAt: Number(r.created_at),
      uncertainty: Number(r.width),
      ratings: Number(r.n),
    }));
  }

  /** Another answer to the same prompt, for a pairwise comparison (the newest other one). */
  async siblingAnswer(projectId: string, interactionId: string): Promise<string | undefined> {
    const row = await this.db
      .selectFrom('interactions as a')
      .innerJoin('interactions as b', (j) =>
        j.onRef('b.project_id', '=', 'a.project_id').onRef('b.prompt_hash', '=', 'a.prompt_hash'),
      )
      .select('b.id')
      .where('a.project_id', '=', projectId)
      .where('a.id', '=', interactionId)
      .where('b.id', '!=', interactionId)
      .orderBy('b.created_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row?.id;
  }
}
