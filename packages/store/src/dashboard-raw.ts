import { type Kysely, sql } from 'kysely';
import type {
  ActivityBucket,
  ModelHealthQuery,
  ModelHealthSeries,
  ModelSatisfactionRow,
} from './dashboard.js';
import type { Database } from './schema.js';

/**
 * The dashboard's figures computed from the raw rows, as they were before rollups (rollups.ts):
 * the reference the rollup-backed figures are tested against on planted data (rollups.test.ts).
 */
export class RawDashboardFigures {
  constructor(private readonly db: Kysely<Database>) {}

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
}
