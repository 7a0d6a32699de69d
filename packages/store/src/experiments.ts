import { newId, RatchetError } from '@ratchet/core';
import { type Kysely, sql } from 'kysely';
import type { AuditLog } from './audit.js';
import type { DialectName } from './connection.js';
import { decodeJson, encodeJson } from './json.js';
import { type GatewayRouteRepository, type StoredVariant, segmentVariants } from './routes.js';
import type { Database, ExperimentStatus } from './schema.js';

export interface ExperimentDecisionEntry {
  at: number;
  decision: string;
  variant: string | null;
  reasons: string[];
  /** Weights set by Thompson sampling at this look, when the experiment is a bandit. */
  weights?: Record<string, number>;
  actor: string;
}

export interface Experiment {
  id: string;
  projectId: string;
  name: string;
  route: string;
  control: string;
  variants: StoredVariant[];
  metric: string;
  engine: string;
  decisionRule: Record<string, unknown>;
  bandit: boolean;
  status: ExperimentStatus;
  state: unknown;
  history: ExperimentDecisionEntry[];
  startedAt: number;
  stoppedAt: number | null;
}

export interface NewExperiment {
  name: string;
  route: string;
  control: string;
  variants: StoredVariant[];
  metric: string;
  engine: string;
  decisionRule: Record<string, unknown>;
  bandit: boolean;
}

/** Feedback totals of one variant since the experiment started, computed in SQL. */
export interface VariantFeedbackTotals {
  variant: string;
  users: number;
  interactions: number;
  thumbs: { up: number; total: number };
  stars: { n: number; sum: number; sumOfSquares: number };
  reward: { n: number; sum: number; sumOfSquares: number };
}

type Row = {
  id: string;
  project_id: string;
  name: string;
  route: string;
  control: string;
  variants: unknown;
  metric: string;
  engine: string;
  decision_rule: unknown;
  bandit: number;
  status: ExperimentStatus;
  state: unknown;
  history: unknown;
  started_at: number;
  stopped_at: number | null;
};

/**
 * Experiments on a route. Starting one writes the route's variants (the gateway picks them up)
 * in the same transaction; every look's decision is appended to the history.
 */
export class ExperimentRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly routes: GatewayRouteRepository,
    private readonly audit: AuditLog,
  ) {}

  /** Starts an experiment; the route's variants and the audit entry are written with it. */
  async start(projectId: string, e: NewExperiment, actor: string): Promise<Experiment> {
    const now = Date.now();
    const id = newId(now);
    await this.db.transaction().execute(async (trx) => {
      const running = await trx
        .selectFrom('experiments')
        .select(['name'])
        .where('project_id', '=', projectId)
        .where('route', '=', e.route)
        .where('status', '=', 'running')
        .executeTakeFirst();
      if (running)
        throw new RatchetError(
          'conflict',
          `route: "${e.route}" already runs experiment "${running.name}"; stop it first`,
          'route',
        );
      await trx
        .insertInto('experiments')
        .values({
          id,
          project_id: projectId,
          name: e.name,
          route: e.route,
          control: e.control,
          variants: encodeJson(e.variants),
          metric: e.metric,
          engine: e.engine,
          decision_rule: encodeJson(e.decisionRule),
          bandit: e.bandit ? 1 : 0,
          status: 'running',
          state: null,
          history: encodeJson([]),
          started_at: now,
          stopped_at: null,
        })
        .execute();
      // Per-segment variants (personalization) keep serving their segments during the experiment.
      const segments = segmentVariants((await this.routes.get(projectId, e.route, trx))?.variants);
      await this.routes.put(projectId, e.route, [...segments, ...e.variants], trx);
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'experiment.started',
          subjectType: 'experiment',
          subjectId: id,
          details: {
            route: e.route,
            variants: e.variants,
            metric: e.metric,
            engine: e.engine,
            bandit: e.bandit,
          },
        },
        trx,
      );
    });
    return (await this.get(projectId, id))!;
  }

  async get(projectId: string, ref: string): Promise<Experiment | undefined> {
    const row = await this.db
      .selectFrom('experiments')
      .selectAll()
      .where('project_id', '=', projectId)
      .where((eb) => eb.or([eb('id', '=', ref), eb('name', '=', ref)]))
      .orderBy('started_at', 'desc')
      .executeTakeFirst();
    return row && this.toExperiment(row as Row);
  }

  async list(
    projectId: string,
    filter: { route?: string; status?: ExperimentStatus } = {},
  ): Promise<Experiment[]> {
    let q = this.db.selectFrom('experiments').selectAll().where('project_id', '=', projectId);
    if (filter.route) q = q.where('route', '=', filter.route);
    if (filter.status) q = q.where('status', '=', filter.status);
    const rows = await q.orderBy('started_at', 'desc').execute();
    return rows.map((r) => this.toExperiment(r as Row));
  }

  /**
   * Appends a look's decision and the sequential state it leaves; with `weights` (a bandit), the
   * route's weights move in the same transaction.
   */
  async recordDecision(
    projectId: string,
    id: string,
    entry: ExperimentDecisionEntry,
    state: unknown,
  ): Promise<Experiment> {
    await this.db.transaction().execute(async (trx) => {
      const row = (await trx
        .selectFrom('experiments')
        .selectAll()
        .where('project_id', '=', projectId)
        .where('id', '=', id)
        .executeTakeFirst()) as Row | undefined;
      if (!row) throw new RatchetError('not_found', `experiment "${id}" not found`, 'experiment');
      const exp = this.toExperiment(row);
      await trx
        .updateTable('experiments')
        .set({ history: encodeJson([...exp.history, entry]), state: encodeJson(state) })
        .where('id', '=', id)
        .execute();
      const weights = entry.weights;
      if (weights && exp.status === 'running') {
        const route = await this.routes.get(projectId, exp.route, trx);
        const variants = (route?.variants ?? exp.variants).map((v) => ({
          ...v,
          weight: weights[v.name] ?? v.weight,
        }));
        await this.routes.put(projectId, exp.route, variants, trx);
      }
    });
    return (await this.get(projectId, id))!;
  }

  /**
   * Stops an experiment. The route's database entry is removed (traffic returns to the gateway
   * file) unless `keepVariant` names the variant that now takes all traffic.
   */
  async stop(
    projectId: string,
    id: string,
    entry: ExperimentDecisionEntry,
    keepVariant?: string,
  ): Promise<Experiment> {
    await this.db.transaction().execute(async (trx) => {
      const row = (await trx
        .selectFrom('experiments')
        .selectAll()
        .where('project_id', '=', projectId)
        .where('id', '=', id)
        .executeTakeFirst()) as Row | undefined;
      if (!row) throw new RatchetError('not_found', `experiment "${id}" not found`, 'experiment');
      const exp = this.toExperiment(row);
      if (exp.status !== 'running')
        throw new RatchetError('conflict', `experiment "${exp.name}" is already stopped`, 'experiment');
      await trx
        .updateTable('experiments')
        .set({ status: 'stopped', stopped_at: entry.at, history: encodeJson([...exp.history, entry]) })
        .where('id', '=', id)
        .execute();
      const segments = segmentVariants((await this.routes.get(projectId, exp.route, trx))?.variants);
      if (keepVariant) {
        const winner = exp.variants.find((v) => v.name === keepVariant);
        if (!winner)
          throw new RatchetError(
            'invalid_request',
            `variant: "${keepVariant}" is not in the experiment`,
            'variant',
          );
        await this.routes.put(projectId, exp.route, [...segments, { ...winner, weight: 1 }], trx);
      } else if (segments.length > 0) {
        // The file's route serves the calls of no segment again; the segments keep their adapters.
        await this.routes.put(projectId, exp.route, segments, trx);
      } else {
        await this.routes.delete(projectId, exp.route, trx);
      }
      await this.audit.record(
        {
          projectId,
          actor: entry.actor,
          action: 'experiment.stopped',
          subjectType: 'experiment',
          subjectId: id,
          details: { route: exp.route, keep: keepVariant ?? null, reasons: entry.reasons },
        },
        trx,
      );
    });
    return (await this.get(projectId, id))!;
  }

  /**
   * Per-variant totals of the route's traffic in [from, to): users (distinct end users, or the
   * interaction when no user is known), thumbs, default-scale stars and calibrated rewards.
   * Four GROUP BY queries; nothing is read row by row.
   */
  async variantTotals(
    projectId: string,
    route: string,
    from: number,
    to: number = Number.MAX_SAFE_INTEGER,
  ): Promise<VariantFeedbackTotals[]> {
    const users = await this.db
      .selectFrom('interactions')
      .select([
        'variant',
        sql<number>`count(distinct coalesce(user_id, id))`.as('users'),
        sql<number>`count(*)`.as('interactions'),
      ])
      .where('project_id', '=', projectId)
      .where('route', '=', route)
      .where('created_at', '>=', from)
      .where('created_at', '<', to)
      .where('variant', 'is not', null)
      .groupBy('variant')
      .execute();
    const ratings = await this.db
      .selectFrom('feedback_current as f')
      .innerJoin('interactions as i', (j) =>
        j.onRef('i.project_id', '=', 'f.project_id').onRef('i.id', '=', 'f.interaction_id'),
      )
      .select([
        'i.variant',
        'f.kind',
        sql<number>`count(*)`.as('n'),
        sql<number>`sum(case when f.value > 0 then 1 else 0 end)`.as('positive'),
        sql<number>`sum(f.value)`.as('total'),
        sql<number>`sum(f.value * f.value)`.as('squares'),
      ])
      .where('f.project_id', '=', projectId)
      .where('i.route', '=', route)
      .where('i.created_at', '>=', from)
      .where('i.created_at', '<', to)
      .where((eb) =>
        eb.or([
          eb('f.kind', '=', 'thumbs'),
          eb.and([eb('f.kind', '=', 'stars'), eb('f.label', '=', 'stars')]),
        ]),
      )
      .where('f.value', 'is not', null)
      .groupBy(['i.variant', 'f.kind'])
      .execute();
    const rewards = await this.db
      .selectFrom('interaction_rewards as r')
      .innerJoin('interactions as i', (j) =>
        j.onRef('i.project_id', '=', 'r.project_id').onRef('i.id', '=', 'r.interaction_id'),
      )
      .select([
        'i.variant',
        sql<number>`count(*)`.as('n'),
        sql<number>`sum(r.reward)`.as('total'),
        sql<number>`sum(r.reward * r.reward)`.as('squares'),
      ])
      .where('r.project_id', '=', projectId)
      .where('i.route', '=', route)
      .where('i.created_at', '>=', from)
      .where('i.created_at', '<', to)
      .groupBy('i.variant')
      .execute();
    const out = new Map<string, VariantFeedbackTotals>();
    const of = (variant: string | null): VariantFeedbackTotals | undefined => {
      if (variant === null) return undefined;
      let t = out.get(variant);
      if (!t) {
        t = {
          variant,
          users: 0,
          interactions: 0,
          thumbs: { up: 0, total: 0 },
          stars: { n: 0, sum: 0, sumOfSquares: 0 },
          reward: { n: 0, sum: 0, sumOfSquares: 0 },
        };
        out.set(variant, t);
      }
      return t;
    };
    for (const u of users) {
      const t = of(u.variant);
      if (!t) continue;
      t.users = Number(u.users);
      t.interactions = Number(u.interactions);
    }
    for (const r of ratings) {
      const t = of(r.variant);
      if (!t) continue;
      if (r.kind === 'thumbs') t.thumbs = { up: Number(r.positive), total: Number(r.n) };
      else t.stars = { n: Number(r.n), sum: Number(r.total), sumOfSquares: Number(r.squares) };
    }
    for (const r of rewards) {
      const t = of(r.variant);
      if (!t) continue;
      t.reward = { n: Number(r.n), sum: Number(r.total), sumOfSquares: Number(r.squares) };
    }
    return [...out.values()];
  }

  private toExperiment(r: Row): Experiment {
    return {
      id: r.id,
      projectId: r.project_id,
      name: r.name,
      route: r.route,
      control: r.control,
      variants: decodeJson(this.dialect, r.variants),
      metric: r.metric,
      engine: r.engine,
      decisionRule: decodeJson(this.dialect, r.decision_rule),
      bandit: Boolean(r.bandit),
      status: r.status,
      state: r.state === null ? null : decodeJson(this.dialect, r.state),
      history: decodeJson(this.dialect, r.history),
      startedAt: Number(r.started_at),
      stoppedAt: r.stopped_at === null ? null : Number(r.stopped_at),
    };
  }
}
