import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.js';

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
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * A fingerprint of what the dashboard's reports are computed from: it changes when an
   * interaction or feedback arrives, a calibration runs, a dataset is built or a model moves.
   * All index-only reads, so checking it costs milliseconds where recomputing costs seconds.
   */
  async dataVersion(projectId: string): Promise<string> {
    const [interactions, feedback, calibration, datasets, models] = await Promise.all([
      this.db
        .selectFrom('interactions')
        .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.max('created_at').as('last')])
        .where('project_id', '=', projectId)
        .executeTakeFirstOrThrow(),
      this.db
        .selectFrom('feedback')
        .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.max('created_at').as('last')])
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

  /** Interactions and feedback events per bucket since `from`, oldest first. */
  async activity(projectId: string, from: number, bucketMs: number): Promise<ActivityBucket[]> {
    const size = sql.lit(Math.trunc(bucketMs));
    const bucket = (col: string) => sql<number>`(${sql.ref(col)} / ${size}) * ${size}`;
    const [interactions, ratings] = await Promise.all([
      this.db
        .selectFrom('interactions')
        .select((eb) => [bucket('created_at').as('t'), eb.fn.countAll<number>().as('n')])
        .where('project_id', '=', projectId)
        .where('created_at', '>=', from)
        .groupBy(bucket('created_at'))
        .execute(),
      this.db
        .selectFrom('feedback')
        .select((eb) => [bucket('created_at').as('t'), eb.fn.countAll<number>().as('n')])
        .where('project_id', '=', projectId)
        .where('created_at', '>=', from)
        .groupBy(bucket('created_at'))
        .execute(),
    ]);
    const byTime = new Map<number, ActivityBucket>();
    const at = (t: number) => {
      const b = byTime.get(t) ?? { t, interactions: 0, ratings: 0 };
      byTime.set(t, b);
      return b;
    };
    for (const r of interactions) at(Number(r.t)).interactions = Number(r.n);
    for (const r of ratings) at(Number(r.t)).ratings = Number(r.n);
    return [...byTime.values()].sort((a, b) => a.t - b.t);
  }

  /**
   * Each (route, model)'s calls per bucket of [from, to): calls, errors, tokens, latency p50/p95
   * and the thumbs-up share of the current thumbs on those calls (by the call's time, so a bucket
   * says how the calls made then were received). Three GROUP BYs; the percentiles are nearest
   * rank (the ceil(q·n)-th answered call by latency, as the watch reads them) from a window
   * function, which both databases run, so no row is read into the process.
   */
  async modelHealth(projectId: string, q: ModelHealthQuery): Promise<ModelHealthSeries[]> {
    const size = sql.lit(Math.trunc(q.bucketMs));
    const bucket = sql<number>`(i.created_at / ${size}) * ${size}`;
    const calls = () => {
      let w = this.db
        .selectFrom('interactions as i')
        .where('i.project_id', '=', projectId)
        .where('i.created_at', '>=', q.from)
        .where('i.created_at', '<', q.to);
      if (q.route !== undefined) w = w.where('i.route', '=', q.route);
      if (q.model !== undefined) w = w.where('i.model', '=', q.model);
      return w;
    };
    const [totals, latency, thumbs] = await Promise.all([
      calls()
        .select((eb) => [
          'i.route',
          'i.model',
          bucket.as('t'),
          eb.fn.countAll<number>().as('calls'),
          eb.fn.sum<number>(sql`case when i.status = 'error' then 1 else 0 end`).as('errors'),
          eb.fn.sum<number>(sql`coalesce(i.input_tokens, 0)`).as('input_tokens'),
          eb.fn.sum<number>(sql`coalesce(i.output_tokens, 0)`).as('output_tokens'),
        ])
        .groupBy(['i.route', 'i.model', bucket])
        .execute(),
      this.db
        .selectFrom(
          calls()
            .where('i.status', '=', 'ok')
            .where('i.latency_ms', 'is not', null)
            .select([
              'i.route',
              'i.model',
              bucket.as('t'),
              'i.latency_ms',
              sql<number>`row_number() over (partition by i.route, i.model, ${bucket} order by i.latency_ms)`.as(
                'rank',
              ),
              sql<number>`count(*) over (partition by i.route, i.model, ${bucket})`.as('n'),
            ])
            .as('a'),
        )
        .select([
          'a.route',
          'a.model',
          'a.t',
          // ceil(q·n) in integer arithmetic, the same on both databases.
          sql<number>`max(case when a.rank = (a.n * 50 + 99) / 100 then a.latency_ms end)`.as('p50'),
          sql<number>`max(case when a.rank = (a.n * 95 + 99) / 100 then a.latency_ms end)`.as('p95'),
        ])
        .groupBy(['a.route', 'a.model', 'a.t'])
        .execute(),
      calls()
        .innerJoin('feedback_current as c', (j) =>
          j.onRef('c.project_id', '=', 'i.project_id').onRef('c.interaction_id', '=', 'i.id'),
        )
        .where('c.kind', '=', 'thumbs')
        .select((eb) => [
          'i.route',
          'i.model',
          bucket.as('t'),
          eb.fn.sum<number>(sql`case when c.value > 0 then 1 else 0 end`).as('up'),
          eb.fn.sum<number>(sql`case when c.value < 0 then 1 else 0 end`).as('down'),
        ])
        .groupBy(['i.route', 'i.model', bucket])
        .execute(),
    ]);
    const key = (r: { route: string | null; model: string; t: unknown }) =>
      JSON.stringify([r.route, r.model, Number(r.t)]);
    const p = new Map(latency.map((r) => [key(r), r]));
    const th = new Map(thumbs.map((r) => [key(r), r]));
    const series = new Map<string, ModelHealthSeries>();
    for (const r of totals) {
      const id = JSON.stringify([r.route, r.model]);
      const s = series.get(id) ?? { route: r.route, model: r.model, buckets: [] };
      series.set(id, s);
      const n = Number(r.calls);
      const l = p.get(key(r));
      const up = Number(th.get(key(r))?.up ?? 0);
      const down = Number(th.get(key(r))?.down ?? 0);
      s.buckets.push({
        t: Number(r.t),
        calls: n,
        errors: Number(r.errors ?? 0),
        errorRate: Number(r.errors ?? 0) / n,
        inputTokens: Number(r.input_tokens ?? 0),
        outputTokens: Number(r.output_tokens ?? 0),
        latencyP50Ms: l?.p50 == null ? null : Number(l.p50),
        latencyP95Ms: l?.p95 == null ? null : Number(l.p95),
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

  /** Current thumbs and stars per interaction model. */
  async satisfactionByModel(projectId: string): Promise<ModelSatisfactionRow[]> {
    const stars = sql<number>`case when c.kind = 'stars' then c.value end`;
    const rows = await this.db
      .selectFrom('feedback_current as c')
      .innerJoin('interactions as i', (j) =>
        j.onRef('i.project_id', '=', 'c.project_id').onRef('i.id', '=', 'c.interaction_id'),
      )
      .where('c.project_id', '=', projectId)
      .where('c.kind', 'in', ['thumbs', 'stars'])
      .select((eb) => [
        'i.model',
        eb.fn.sum<number>(sql`case when c.kind = 'thumbs' and c.value > 0 then 1 else 0 end`).as('up'),
        eb.fn.sum<number>(sql`case when c.kind = 'thumbs' and c.value < 0 then 1 else 0 end`).as('down'),
        eb.fn.count<number>(stars).as('stars_n'),
        eb.fn.sum<number>(stars).as('stars_sum'),
        eb.fn.sum<number>(sql`case when c.kind = 'stars' then c.value * c.value end`).as('stars_sq'),
      ])
      .groupBy('i.model')
      .orderBy('i.model')
      .execute();
    return rows.map((r) => ({
      model: r.model,
      up: Number(r.up ?? 0),
      down: Number(r.down ?? 0),
      starsN: Number(r.stars_n ?? 0),
      starsSum: Number(r.stars_sum ?? 0),
      starsSumSq: Number(r.stars_sq ?? 0),
    }));
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
      .selectFrom('interaction_rewards as r')
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
