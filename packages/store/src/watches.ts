import {
  emptyUserMetricSums,
  newId,
  parseInput,
  type UserMetricSums,
  type WatchArmEvidence,
  type WatchMetricName,
  type WatchPolicy,
  type WatchState,
  watchPolicySchema,
} from '@ratchet/core';
import { type Kysely, type Selectable, sql, type Transaction } from 'kysely';
import type { AuditLog } from './audit.js';
import type { DialectName } from './connection.js';
import type { ExperimentRepository } from './experiments.js';
import { decodeJson, encodeJson } from './json.js';
import type { GatewayRouteRepository, StoredVariant } from './routes.js';
import type { Database, PromotionWatchesTable, PromotionWatchStatus } from './schema.js';
import { productionVariant } from './serving.js';

/** The name of the route variant that keeps serving the replaced model during a watch. */
export const holdbackVariant = 'holdback';

export interface PromotionWatch {
  id: string;
  projectId: string;
  route: string;
  modelId: string;
  holdbackModelId: string;
  status: PromotionWatchStatus;
  policy: WatchPolicy;
  state: WatchState;
  openedBy: string;
  openedAt: number;
  closedAt: number | null;
  outcome: { actor: string; reason: string } | null;
}

export interface PromotionWatchLook {
  id: string;
  watchId: string;
  decision: string;
  reasons: string[];
  evidence: unknown;
  actor: string;
  createdAt: number;
}

/** A route's configured watch policy: what its next promotion is watched with. */
export interface RouteWatchPolicy {
  route: string;
  policy: WatchPolicy;
  updatedBy: string;
  updatedAt: number;
}

/** The two arms of a watch, summed per user in SQL since it opened. */
export interface WatchEvidence {
  newArm: WatchArmEvidence;
  holdback: WatchArmEvidence;
}

/**
 * The route during a watch: the promoted model on `production` and the replaced one on
 * `holdback` at the policy's share (the gateway assigns users to them stickily, as it does an
 * experiment's variants); per-segment variants are kept as they were.
 */
export function watchedVariants(
  served: readonly StoredVariant[],
  holdback: StoredVariant,
  share: number,
): StoredVariant[] {
  return [
    ...served.map((v) => (v.name === productionVariant && !v.segment ? { ...v, weight: 1 - share } : v)),
    { ...holdback, name: holdbackVariant, weight: share },
  ];
}

/**
 * Promotion watches (see core's guardrails/watch.ts for the decision). Opened and closed by the
 * model registry inside its stage-change transactions, so every promotion is watched whichever
 * way it came (CLI, API, dashboard, the loop) and a rollback closes the watch with it.
 */
export class WatchRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly audit: AuditLog,
    private readonly routes: GatewayRouteRepository,
    private readonly experiments: ExperimentRepository,
  ) {}

  /** Opens a watch in the registry's transaction (the route is written by the caller). */
  async open(
    trx: Transaction<Database>,
    w: { projectId: string; route: string; modelId: string; holdbackModelId: string; policy: WatchPolicy },
    actor: string,
  ): Promise<string> {
    const id = newId();
    const now = Date.now();
    await trx
      .insertInto('promotion_watches')
      .values({
        id,
        project_id: w.projectId,
        route: w.route,
        model_id: w.modelId,
        holdback_model_id: w.holdbackModelId,
        status: 'watching',
        policy: encodeJson(w.policy),
        state: encodeJson({}),
        opened_by: actor,
        opened_at: now,
        closed_at: null,
        outcome: null,
      })
      .execute();
    await this.audit.record(
      {
        projectId: w.projectId,
        actor,
        action: 'watch.opened',
        subjectType: 'model',
        subjectId: w.modelId,
        details: { watch: id, route: w.route, holdback: w.holdbackModelId, policy: w.policy },
      },
      trx,
    );
    return id;
  }

  /** Closes the route's open watch (if any) in the caller's transaction, with who and why. */
  async closeOn(
    trx: Transaction<Database>,
    projectId: string,
    route: string,
    status: Exclude<PromotionWatchStatus, 'watching'>,
    actor: string,
    reason: string,
  ): Promise<string | undefined> {
    const open = await trx
      .selectFrom('promotion_watches')
      .select(['id', 'model_id'])
      .where('project_id', '=', projectId)
      .where('route', '=', route)
      .where('status', '=', 'watching')
      .execute();
    for (const w of open) {
      await trx
        .updateTable('promotion_watches')
        .set({ status, closed_at: Date.now(), outcome: encodeJson({ actor, reason }) })
        .where('id', '=', w.id)
        .execute();
      await this.audit.record(
        {
          projectId,
          actor,
          action: `watch.${status}`,
          subjectType: 'model',
          subjectId: w.model_id,
          details: { watch: w.id, route, reason },
        },
        trx,
      );
    }
    return open[0]?.id;
  }

  /**
   * Ends a watch without harm: the holdback leaves the route (the new model serves every user at
   * weight 1), the watch closes, and the audit says so, in one transaction that wakes the gateways.
   */
  async end(projectId: string, id: string, actor: string, reason: string): Promise<boolean> {
    return this.routes.transaction(async (trx) => {
      const w = await trx
        .selectFrom('promotion_watches')
        .selectAll()
        .where('project_id', '=', projectId)
        .where('id', '=', id)
        .where('status', '=', 'watching')
        .executeTakeFirst();
      if (!w) return false;
      const variants = (await this.routes.get(projectId, w.route, trx))?.variants ?? [];
      const kept = variants
        .filter((v) => !(v.name === holdbackVariant && !v.segment))
        .map((v) => (v.name === productionVariant && !v.segment ? { ...v, weight: 1 } : v));
      await this.routes.put(projectId, w.route, kept, trx);
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'route.served',
          subjectType: 'route',
          subjectId: w.route,
          details: { from: variants, to: kept, reason },
        },
        trx,
      );
      await this.closeOn(trx, projectId, w.route, 'ended', actor, reason);
      return true;
    });
  }

  /**
   * Sets the route's watch policy (validated: a bad value is a 400 naming the field, nothing
   * written); the next promotion on the route is watched with it. Watches already open keep the
   * policy they opened with: a look must not change the test it is in the middle of.
   */
  async setPolicy(
    projectId: string,
    route: string,
    input: unknown,
    actor: string,
  ): Promise<RouteWatchPolicy> {
    const policy = parseInput(watchPolicySchema, input);
    const now = Date.now();
    await this.db.transaction().execute(async (trx) => {
      const values = { policy: encodeJson(policy), updated_by: actor, updated_at: now };
      await trx
        .insertInto('route_watch_policies')
        .values({ project_id: projectId, route, ...values })
        .onConflict((oc) => oc.columns(['project_id', 'route']).doUpdateSet(values))
        .execute();
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'watch.policy',
          subjectType: 'route',
          subjectId: route,
          details: { policy },
        },
        trx,
      );
    });
    return { route, policy, updatedBy: actor, updatedAt: now };
  }

  /** Removes the route's watch policy (its promotions are watched with the defaults again). */
  async clearPolicy(projectId: string, route: string, actor: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const gone = await trx
        .deleteFrom('route_watch_policies')
        .where('project_id', '=', projectId)
        .where('route', '=', route)
        .executeTakeFirst();
      if (Number(gone.numDeletedRows) === 0) return false;
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'watch.policy',
          subjectType: 'route',
          subjectId: route,
          details: { policy: null },
        },
        trx,
      );
      return true;
    });
  }

  /** The route's configured watch policy, if one was set (in the caller's transaction when given). */
  async policyOf(
    projectId: string,
    route: string,
    db: Kysely<Database> | Transaction<Database> = this.db,
  ): Promise<RouteWatchPolicy | undefined> {
    const row = await db
      .selectFrom('route_watch_policies')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('route', '=', route)
      .executeTakeFirst();
    if (!row) return undefined;
    return {
      route,
      // Parsed again: a field added to the policy since it was stored gets its default.
      policy: watchPolicySchema.parse(decodeJson(this.dialect, row.policy)),
      updatedBy: row.updated_by,
      updatedAt: Number(row.updated_at),
    };
  }

  /** Every route's configured watch policy in a project. */
  async policies(projectId: string): Promise<RouteWatchPolicy[]> {
    const rows = await this.db
      .selectFrom('route_watch_policies')
      .select('route')
      .where('project_id', '=', projectId)
      .orderBy('route')
      .execute();
    return (await Promise.all(rows.map((r) => this.policyOf(projectId, r.route)))).filter(
      (p): p is RouteWatchPolicy => p !== undefined,
    );
  }

  async get(projectId: string, id: string): Promise<PromotionWatch | undefined> {
    const row = await this.db
      .selectFrom('promotion_watches')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && this.toWatch(row);
  }

  /** A project's watches, newest first (open ones only with `open`). */
  async list(projectId: string, filter: { open?: boolean; route?: string; limit?: number } = {}) {
    let q = this.db.selectFrom('promotion_watches').selectAll().where('project_id', '=', projectId);
    if (filter.open) q = q.where('status', '=', 'watching');
    if (filter.route !== undefined) q = q.where('route', '=', filter.route);
    const rows = await q
      .orderBy('opened_at', 'desc')
      .orderBy('id', 'desc')
      .limit(filter.limit ?? 100)
      .execute();
    return rows.map((r) => this.toWatch(r));
  }

  /** Every project's open watches: what the server's timer looks at. */
  async watching(): Promise<PromotionWatch[]> {
    const rows = await this.db
      .selectFrom('promotion_watches')
      .selectAll()
      .where('status', '=', 'watching')
      .orderBy('opened_at')
      .execute();
    return rows.map((r) => this.toWatch(r));
  }

  /** Records one look with its evidence and carries the tests' state to the next. */
  async recordLook(
    watch: PromotionWatch,
    look: { decision: string; reasons: string[]; evidence: unknown; state: WatchState },
    actor: string,
  ): Promise<PromotionWatchLook> {
    const row = {
      id: newId(),
      watch_id: watch.id,
      decision: look.decision,
      reasons: encodeJson(look.reasons),
      evidence: encodeJson(look.evidence),
      actor,
      created_at: Date.now(),
    };
    await this.db.transaction().execute(async (trx) => {
      await trx.insertInto('promotion_watch_looks').values(row).execute();
      await trx
        .updateTable('promotion_watches')
        .set({ state: encodeJson(look.state) })
        .where('id', '=', watch.id)
        .execute();
    });
    return {
      id: row.id,
      watchId: watch.id,
      decision: look.decision,
      reasons: look.reasons,
      evidence: look.evidence,
      actor,
      createdAt: row.created_at,
    };
  }

  async looks(watchId: string, limit = 200): Promise<PromotionWatchLook[]> {
    const rows = await this.db
      .selectFrom('promotion_watch_looks')
      .selectAll()
      .where('watch_id', '=', watchId)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return rows.map((r) => this.toLook(r));
  }

  /**
   * Both arms' evidence since the watch opened: users' own thumbs and calibrated rewards per user
   * (the experiments' per-user SQL), and per user the share of their calls that failed upstream,
   * came back empty (no output tokens), or were slower than the holdback's p95 latency.
   */
  async evidence(watch: PromotionWatch, to: number = Number.MAX_SAFE_INTEGER): Promise<WatchEvidence> {
    const window = { projectId: watch.projectId, route: watch.route, from: watch.openedAt, to };
    const totals = await this.experiments.variantTotals(window.projectId, window.route, window.from, to);
    const holdP = await this.latencyQuantiles(window, holdbackVariant);
    const newP = await this.latencyQuantiles(window, productionVariant);
    const ops = await this.operationalSums(window, holdP.p95);
    const arm = (variant: string, q: { p50: number | null; p95: number | null }): WatchArmEvidence => {
      const t = totals.find((x) => x.variant === variant);
      const of = (metric: WatchMetricName) =>
        ops.find((o) => o.variant === variant && o.metric === metric)?.sums ?? { ...emptyUserMetricSums };
      return {
        users: t?.users ?? 0,
        interactions: t?.interactions ?? 0,
        metrics: {
          thumbs_up_rate: t ? stripUp(t.thumbs) : { ...emptyUserMetricSums },
          reward: t?.reward ?? { ...emptyUserMetricSums },
          error_rate: of('error_rate'),
          empty_rate: of('empty_rate'),
          slow_rate: of('slow_rate'),
        },
        latencyP50Ms: q.p50,
        latencyP95Ms: q.p95,
      };
    };
    return { newArm: arm(productionVariant, newP), holdback: arm(holdbackVariant, holdP) };
  }

  private windowCalls(w: { projectId: string; route: string; from: number; to: number }) {
    return this.db
      .selectFrom('interactions as i')
      .where('i.project_id', '=', w.projectId)
      .where('i.route', '=', w.route)
      .where('i.created_at', '>=', w.from)
      .where('i.created_at', '<', w.to);
  }

  /** Per-user means of the three 0/1 call outcomes, summed per variant (two GROUP BYs, no row loop). */
  private async operationalSums(
    w: { projectId: string; route: string; from: number; to: number },
    slowerThanMs: number | null,
  ): Promise<{ variant: string; metric: WatchMetricName; sums: UserMetricSums }[]> {
    const slow =
      slowerThanMs === null ? sql`0.0` : sql`case when i.latency_ms > ${slowerThanMs} then 1.0 else 0.0 end`;
    const perUser = this.windowCalls(w)
      .where('i.variant', 'in', [productionVariant, holdbackVariant])
      .select([
        'i.variant',
        sql<number>`count(*)`.as('events'),
        sql<number>`avg(case when i.status = 'error' then 1.0 else 0.0 end)`.as('err'),
        sql<number>`avg(case when i.status = 'ok' and i.output_tokens = 0 then 1.0 else 0.0 end)`.as('empty'),
        sql<number>`avg(${slow})`.as('slow'),
      ])
      .groupBy(['i.variant', sql`coalesce(i.user_id, i.id)`]);
    const rows = await this.db
      .selectFrom(perUser.as('u'))
      .select([
        'u.variant',
        sql<number>`count(*)`.as('users'),
        sql<number>`sum(u.events)`.as('events'),
        sql<number>`sum(u.err)`.as('err'),
        sql<number>`sum(u.err * u.err)`.as('err2'),
        sql<number>`sum(u.empty)`.as('empty'),
        sql<number>`sum(u.empty * u.empty)`.as('empty2'),
        sql<number>`sum(u.slow)`.as('slow'),
        sql<number>`sum(u.slow * u.slow)`.as('slow2'),
      ])
      .groupBy('u.variant')
      .execute();
    return rows.flatMap((r) => {
      const base = { users: Number(r.users), events: Number(r.events) };
      const variant = r.variant!;
      return [
        {
          variant,
          metric: 'error_rate',
          sums: { ...base, sum: Number(r.err), sumOfSquares: Number(r.err2) },
        },
        {
          variant,
          metric: 'empty_rate',
          sums: { ...base, sum: Number(r.empty), sumOfSquares: Number(r.empty2) },
        },
        {
          variant,
          metric: 'slow_rate',
          sums: { ...base, sum: Number(r.slow), sumOfSquares: Number(r.slow2) },
        },
      ] as const;
    });
  }

  /** p50 and p95 of a variant's answered calls' latency (nearest rank, read at two offsets). */
  private async latencyQuantiles(
    w: { projectId: string; route: string; from: number; to: number },
    variant: string,
  ): Promise<{ p50: number | null; p95: number | null }> {
    const answered = () =>
      this.windowCalls(w)
        .where('i.variant', '=', variant)
        .where('i.status', '=', 'ok')
        .where('i.latency_ms', 'is not', null);
    const count = Number((await answered().select(sql<number>`count(*)`.as('n')).executeTakeFirst())?.n ?? 0);
    if (count === 0) return { p50: null, p95: null };
    const at = async (q: number) => {
      const row = await answered()
        .select('i.latency_ms')
        .orderBy('i.latency_ms')
        .limit(1)
        .offset(Math.min(count - 1, Math.ceil(q * count) - 1))
        .executeTakeFirst();
      return row?.latency_ms === null || row === undefined ? null : Number(row.latency_ms);
    };
    return { p50: await at(0.5), p95: await at(0.95) };
  }

  private toWatch(r: Selectable<PromotionWatchesTable>): PromotionWatch {
    return {
      id: r.id,
      projectId: r.project_id,
      route: r.route,
      modelId: r.model_id,
      holdbackModelId: r.holdback_model_id,
      status: r.status,
      policy: decodeJson(this.dialect, r.policy),
      state: decodeJson(this.dialect, r.state),
      openedBy: r.opened_by,
      openedAt: Number(r.opened_at),
      closedAt: r.closed_at === null ? null : Number(r.closed_at),
      outcome: r.outcome === null ? null : decodeJson(this.dialect, r.outcome),
    };
  }

  private toLook(r: {
    id: string;
    watch_id: string;
    decision: string;
    reasons: unknown;
    evidence: unknown;
    actor: string;
    created_at: number;
  }): PromotionWatchLook {
    return {
      id: r.id,
      watchId: r.watch_id,
      decision: r.decision,
      reasons: decodeJson(this.dialect, r.reasons),
      evidence: decodeJson(this.dialect, r.evidence),
      actor: r.actor,
      createdAt: Number(r.created_at),
    };
  }
}

function stripUp(t: UserMetricSums & { up: number }): UserMetricSums {
  return { users: t.users, events: t.events, sum: t.sum, sumOfSquares: t.sumOfSquares };
}
