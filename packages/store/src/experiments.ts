import {
  emptyUserCovariateSums,
  emptyUserMetricSums,
  type ImplicitSignal,
  implicitSignals,
  type NetImplicitMetricName,
  netImplicitMetrics,
  newId,
  RatchetError,
  type UserCovariateSums,
  type UserMetricSums,
} from '@ratchet/core';
import { type Kysely, type RawBuilder, sql } from 'kysely';
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

/**
 * Thumbs and stars on a variant's answers that are not its users' own ratings (`judge`,
 * `annotator`, or a thumb sent with `source: implicit`): event counts shown beside the experiment,
 * never part of its metrics. The users' implicit signals (`kind: implicit`) are metrics of their
 * own (`VariantFeedbackTotals.implicit`).
 */
export interface SourceFeedbackTotals {
  source: string;
  thumbs: { up: number; total: number };
  stars: { n: number; sum: number };
}

/**
 * Totals of one variant since the experiment started, computed in SQL. The metrics are per end
 * user (core's users.ts says why): `source: user` feedback only, each user's mean outcome summed
 * over the users, and CUPED's covariate: the same users' pre-period means joined per user, with
 * their squares and cross-products summed (`prePeriod`).
 */
export interface VariantFeedbackTotals {
  variant: string;
  /**
   * Units served since the start, what the sample ratio check counts: distinct end users, or the
   * interaction when the call named no user (the gateway then assigned that call alone at random).
   */
  users: number;
  interactions: number;
  /** Each user's share of thumbs up; `up` counts the thumbs-up events (shown, not tested). */
  thumbs: UserMetricSums & { up: number };
  /** Each user's mean of default-scale stars. */
  stars: UserMetricSums;
  /** Each user's mean calibrated reward over the answers that user rated. */
  reward: UserMetricSums;
  /**
   * Per implicit signal: each user's share of the answers served to them that got the signal
   * (`kind: implicit` from `source: user` or `implicit`; core's metrics.ts names a metric for
   * each). Every user served has an outcome, 0 when they did nothing, so `users` here is the units
   * served; `events` counts the answers and `signalled` the answers with the signal. Implicit
   * signals are what people did, not what they said, so flagged raters are not left out of them.
   */
  implicit: Record<ImplicitSignal, UserMetricSums & { signalled: number }>;
  /**
   * Per metric of core's that nets several signals (net_dissatisfaction): each user's mean over
   * the answers served to them of +1 (a dissatisfied signal), -1 (a satisfied one and no
   * dissatisfied one) or 0; `signalled` counts the answers that were not 0. Every user served has
   * an outcome, as for a single signal.
   */
  implicitNet: Record<NetImplicitMetricName, UserMetricSums & { signalled: number }>;
  /** Other sources' labels, at event level, apart from the metrics. */
  otherSources: SourceFeedbackTotals[];
  /**
   * CUPED's covariate per metric: over this variant's users who also have an outcome of the same
   * metric on the route in the pre-period (before the experiment started), their count, Σ x,
   * Σ x², Σ x·y and Σ y (x the user's pre-period mean, y the experiment mean). Empty without a
   * pre-period.
   */
  prePeriod: {
    thumbs: UserCovariateSums;
    stars: UserCovariateSums;
    reward: UserCovariateSums;
    /** Per signal, over the users who were also served on the route in the pre-period. */
    implicit: Record<ImplicitSignal, UserCovariateSums>;
    implicitNet: Record<NetImplicitMetricName, UserCovariateSums>;
  };
}

const perSignal = <T>(value: () => T) =>
  Object.fromEntries(implicitSignals.map((s) => [s, value()])) as Record<ImplicitSignal, T>;
const perNetMetric = <T>(value: () => T) =>
  Object.fromEntries(netImplicitMetrics.map((m) => [m.name, value()])) as Record<NetImplicitMetricName, T>;

/** Whether interaction `i` got any of `signals` from its user's own actions (any number count once). */
function gotAny(signals: readonly ImplicitSignal[]) {
  return sql<boolean>`exists (select 1 from feedback s where s.project_id = i.project_id and s.interaction_id = i.id and s.kind = 'implicit' and s.label in (${sql.join(signals)}) and s.source in ('user', 'implicit'))`;
}

interface TotalsWindow {
  projectId: string;
  route: string;
  from: number;
  to: number;
}

export interface VariantTotalsOptions {
  /** Length of the pre-period before `from` whose per-user outcomes are CUPED's covariate (0: none). */
  prePeriodMs?: number;
  /**
   * Leave out the ratings of raters the last calibration flagged (adversarial or random), in the
   * experiment and the pre-period: a flagged user's thumbs say little about the answers and, with
   * many of them, shrink the difference between the arms toward 0.
   */
  excludeFlaggedRaters?: boolean;
}

type RouteInteractions = ReturnType<ExperimentRepository['anyRouteInteractions']>;

/**
 * The unit of randomization: the end user, or the interaction when the call named none (the
 * gateway assigns such a call on its own, at random, so it is its own unit).
 */
const userUnit = sql`coalesce(i.user_id, i.id)`;

/** Sums over the per-user rows `u` (with `events` and `outcome` per user). */
const overUsers = [
  sql<number>`count(*)`.as('users'),
  sql<number>`sum(u.events)`.as('events'),
  sql<number>`sum(u.outcome)`.as('total'),
  sql<number>`sum(u.outcome * u.outcome)`.as('squares'),
] as const;

function sumsOf(r: { users: unknown; events: unknown; total: unknown; squares: unknown }): UserMetricSums {
  return {
    users: Number(r.users),
    events: Number(r.events),
    sum: Number(r.total),
    sumOfSquares: Number(r.squares),
  };
}

/**
 * Sums over the per-user rows `u` left-joined to the same users' pre-period rows `p` (null for a
 * user without one): count(p.outcome) counts the users with a covariate, and the products are
 * null (skipped by SUM) for the others.
 */
const overPrePeriod = [
  sql<number>`count(p.outcome)`.as('pre_users'),
  sql<number>`sum(p.outcome)`.as('pre_total'),
  sql<number>`sum(p.outcome * p.outcome)`.as('pre_squares'),
  sql<number>`sum(p.outcome * u.outcome)`.as('pre_cross'),
  sql<number>`sum(case when p.outcome is null then null else u.outcome end)`.as('pre_outcome'),
] as const;

function covariateOf(r: {
  pre_users: unknown;
  pre_total: unknown;
  pre_squares: unknown;
  pre_cross: unknown;
  pre_outcome: unknown;
}): UserCovariateSums {
  // SUM over no rows is NULL on both databases: Number(null) is the 0 it means.
  return {
    users: Number(r.pre_users),
    sum: Number(r.pre_total),
    sumOfSquares: Number(r.pre_squares),
    crossSum: Number(r.pre_cross),
    outcomeSum: Number(r.pre_outcome),
  };
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
    await this.routes.transaction(async (trx) => {
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
      // The experiment's variants replace a promotion watch's holdback: the watch ends here (the
      // experiment now compares the route's models on its users), not at its next look.
      await trx
        .updateTable('promotion_watches')
        .set({
          status: 'superseded',
          closed_at: now,
          outcome: encodeJson({ actor, reason: `experiment "${e.name}" started on the route` }),
        })
        .where('project_id', '=', projectId)
        .where('route', '=', e.route)
        .where('status', '=', 'watching')
        .execute();
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
    await this.routes.transaction(async (trx) => {
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
    await this.routes.transaction(async (trx) => {
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
   * Per-variant totals of the route's traffic in [from, to): units served (for the SRM check),
   * per-user sums of thumbs, default-scale stars and calibrated rewards from `source: user`
   * feedback, and the other sources' labels apart. GROUP BY queries (per user, then per variant);
   * nothing is read row by row.
   */
  async variantTotals(
    projectId: string,
    route: string,
    from: number,
    to: number = Number.MAX_SAFE_INTEGER,
    options: VariantTotalsOptions = {},
  ): Promise<VariantFeedbackTotals[]> {
    const window = { projectId, route, from, to };
    const pre = { projectId, route, from: from - Math.max(0, options.prePeriodMs ?? 0), to: from };
    const clean = options.excludeFlaggedRaters ?? false;
    const [units, ratings, rewards, others, implicit, implicitNet] = await Promise.all([
      this.unitsServed(window),
      this.userRatingSums(window, pre, clean),
      this.userRewardSums(window, pre, clean),
      this.otherSourceTotals(window),
      Promise.all(
        implicitSignals.map((signal) =>
          this.userImplicitSums(window, pre, sql<number>`case when ${gotAny([signal])} then 1 else 0 end`),
        ),
      ),
      Promise.all(
        netImplicitMetrics.map((m) =>
          this.userImplicitSums(
            window,
            pre,
            sql<number>`case when ${gotAny(m.dissatisfied)} then 1 when ${gotAny(m.satisfied)} then -1 else 0 end`,
          ),
        ),
      ),
    ]);
    const out = new Map<string, VariantFeedbackTotals>();
    const of = (variant: string): VariantFeedbackTotals => {
      let t = out.get(variant);
      if (!t) {
        t = {
          variant,
          users: 0,
          interactions: 0,
          thumbs: { ...emptyUserMetricSums, up: 0 },
          stars: { ...emptyUserMetricSums },
          reward: { ...emptyUserMetricSums },
          implicit: perSignal(() => ({ ...emptyUserMetricSums, signalled: 0 })),
          implicitNet: perNetMetric(() => ({ ...emptyUserMetricSums, signalled: 0 })),
          otherSources: [],
          prePeriod: {
            thumbs: { ...emptyUserCovariateSums },
            stars: { ...emptyUserCovariateSums },
            reward: { ...emptyUserCovariateSums },
            implicit: perSignal(() => ({ ...emptyUserCovariateSums })),
            implicitNet: perNetMetric(() => ({ ...emptyUserCovariateSums })),
          },
        };
        out.set(variant, t);
      }
      return t;
    };
    for (const u of units) Object.assign(of(u.variant), { users: u.users, interactions: u.interactions });
    for (const r of ratings) {
      const t = of(r.variant);
      if (r.kind === 'thumbs') {
        t.thumbs = { ...r.sums, up: r.up };
        t.prePeriod.thumbs = r.covariate;
      } else {
        t.stars = r.sums;
        t.prePeriod.stars = r.covariate;
      }
    }
    for (const r of rewards) {
      of(r.variant).reward = r.sums;
      of(r.variant).prePeriod.reward = r.covariate;
    }
    implicitSignals.forEach((signal, k) => {
      for (const r of implicit[k]!) {
        of(r.variant).implicit[signal] = { ...r.sums, signalled: r.signalled };
        of(r.variant).prePeriod.implicit[signal] = r.covariate;
      }
    });
    netImplicitMetrics.forEach((m, k) => {
      for (const r of implicitNet[k]!) {
        of(r.variant).implicitNet[m.name] = { ...r.sums, signalled: r.signalled };
        of(r.variant).prePeriod.implicitNet[m.name] = r.covariate;
      }
    });
    for (const o of others) {
      const t = of(o.variant);
      let s = t.otherSources.find((x) => x.source === o.source);
      if (!s) {
        s = { source: o.source, thumbs: { up: 0, total: 0 }, stars: { n: 0, sum: 0 } };
        t.otherSources.push(s);
      }
      if (o.kind === 'thumbs') s.thumbs = { up: o.up, total: o.n };
      else s.stars = { n: o.n, sum: o.sum };
    }
    return [...out.values()];
  }

  /** The route's interactions in the window that were assigned a variant. */
  private routeInteractions(w: TotalsWindow) {
    return this.anyRouteInteractions(w).where('i.variant', 'is not', null);
  }

  /** All the route's interactions in the window, assigned or not (the pre-period's). */
  private anyRouteInteractions(w: TotalsWindow) {
    return this.db
      .selectFrom('interactions as i')
      .where('i.project_id', '=', w.projectId)
      .where('i.route', '=', w.route)
      .where('i.created_at', '>=', w.from)
      .where('i.created_at', '<', w.to);
  }

  private async unitsServed(w: TotalsWindow) {
    const rows = await this.routeInteractions(w)
      .select([
        'i.variant',
        sql<number>`count(distinct ${userUnit})`.as('users'),
        sql<number>`count(*)`.as('interactions'),
      ])
      .groupBy('i.variant')
      .execute();
    return rows.map((r) => ({
      variant: r.variant!,
      users: Number(r.users),
      interactions: Number(r.interactions),
    }));
  }

  /**
   * The current thumbs and default-scale stars of `source: user` feedback on `interactions`, one
   * row per (kind, user) with the user's mean outcome. A thumb is 1 when up and 0 when down.
   */
  private userRatingRows(interactions: RouteInteractions, excludeFlagged: boolean) {
    return interactions
      .innerJoin('feedback_current as f', (j) =>
        j.onRef('f.project_id', '=', 'i.project_id').onRef('f.interaction_id', '=', 'i.id'),
      )
      .innerJoin('feedback as e', 'e.id', 'f.feedback_id')
      .leftJoin('raters as rr', (j) =>
        j.onRef('rr.project_id', '=', 'f.project_id').onRef('rr.id', '=', 'f.rater_id'),
      )
      .where((eb) =>
        excludeFlagged ? eb.or([eb('rr.flagged', 'is', null), eb('rr.flagged', '=', 0)]) : eb.lit(true),
      )
      .where('e.source', '=', 'user')
      .where('f.value', 'is not', null)
      .where((eb) =>
        eb.or([
          eb('f.kind', '=', 'thumbs'),
          eb.and([eb('f.kind', '=', 'stars'), eb('f.label', '=', 'stars')]),
        ]),
      )
      .select([
        'f.kind',
        sql<string>`${userUnit}`.as('unit'),
        sql<number>`count(*)`.as('events'),
        sql<number>`sum(case when f.value > 0 then 1 else 0 end)`.as('up'),
        sql<number>`avg(case when f.kind = 'thumbs' then (case when f.value > 0 then 1.0 else 0.0 end) else f.value end)`.as(
          'outcome',
        ),
      ]);
  }

  /** Per (variant, kind, user) in the window; per (kind, user) in the pre-period; summed per variant and kind. */
  private async userRatingSums(w: TotalsWindow, pre: TotalsWindow, excludeFlagged: boolean) {
    const perUser = this.userRatingRows(this.routeInteractions(w), excludeFlagged)
      .select('i.variant')
      .groupBy(['i.variant', 'f.kind', userUnit]);
    const prePeriod = this.userRatingRows(this.anyRouteInteractions(pre), excludeFlagged).groupBy([
      'f.kind',
      userUnit,
    ]);
    const rows = await this.db
      .selectFrom(perUser.as('u'))
      .leftJoin(prePeriod.as('p'), (j) => j.onRef('p.kind', '=', 'u.kind').onRef('p.unit', '=', 'u.unit'))
      .select(['u.variant', 'u.kind', sql<number>`sum(u.up)`.as('up'), ...overUsers, ...overPrePeriod])
      .groupBy(['u.variant', 'u.kind'])
      .execute();
    return rows.map((r) => ({
      variant: r.variant!,
      kind: r.kind,
      up: Number(r.up),
      sums: sumsOf(r),
      covariate: covariateOf(r),
    }));
  }

  /** Calibrated rewards of the answers a user (`source: user`) rated on `interactions`, per user. */
  private userRewardRows(interactions: RouteInteractions, excludeFlagged: boolean) {
    return interactions
      .innerJoin('current_rewards as r', (j) =>
        j.onRef('r.project_id', '=', 'i.project_id').onRef('r.interaction_id', '=', 'i.id'),
      )
      .where(({ exists, selectFrom }) =>
        exists(
          selectFrom('feedback_current as f')
            .innerJoin('feedback as e', 'e.id', 'f.feedback_id')
            .leftJoin('raters as rr', (j) =>
              j.onRef('rr.project_id', '=', 'f.project_id').onRef('rr.id', '=', 'f.rater_id'),
            )
            .select(sql`1`.as('one'))
            .whereRef('f.project_id', '=', 'i.project_id')
            .whereRef('f.interaction_id', '=', 'i.id')
            .where('e.source', '=', 'user')
            .where((eb) =>
              excludeFlagged ? eb.or([eb('rr.flagged', 'is', null), eb('rr.flagged', '=', 0)]) : eb.lit(true),
            ),
        ),
      )
      .select([
        sql<string>`${userUnit}`.as('unit'),
        sql<number>`count(*)`.as('events'),
        sql<number>`avg(r.reward)`.as('outcome'),
      ]);
  }

  private async userRewardSums(w: TotalsWindow, pre: TotalsWindow, excludeFlagged: boolean) {
    const perUser = this.userRewardRows(this.routeInteractions(w), excludeFlagged)
      .select('i.variant')
      .groupBy(['i.variant', userUnit]);
    const prePeriod = this.userRewardRows(this.anyRouteInteractions(pre), excludeFlagged).groupBy(userUnit);
    const rows = await this.db
      .selectFrom(perUser.as('u'))
      .leftJoin(prePeriod.as('p'), 'p.unit', 'u.unit')
      .select(['u.variant', ...overUsers, ...overPrePeriod])
      .groupBy('u.variant')
      .execute();
    return rows.map((r) => ({ variant: r.variant!, sums: sumsOf(r), covariate: covariateOf(r) }));
  }

  /**
   * Each user's answers on `interactions`, the mean of `value` over them (an answer's outcome from
   * its user's own actions: `kind: implicit`, source `user` or `implicit`) and how many answers
   * had a value other than 0. Read from the event table, not `feedback_current`: a later signal of
   * the same rater on the same answer (copied after regenerating) must not hide the earlier one.
   */
  private userImplicitRows(interactions: RouteInteractions, value: RawBuilder<number>) {
    return interactions.select([
      sql<string>`${userUnit}`.as('unit'),
      sql<number>`count(*)`.as('events'),
      sql<number>`sum(case when ${value} = 0 then 0 else 1 end)`.as('signalled'),
      sql<number>`avg(1.0 * ${value})`.as('outcome'),
    ]);
  }

  private async userImplicitSums(w: TotalsWindow, pre: TotalsWindow, value: RawBuilder<number>) {
    const perUser = this.userImplicitRows(this.routeInteractions(w), value)
      .select('i.variant')
      .groupBy(['i.variant', userUnit]);
    const prePeriod = this.userImplicitRows(this.anyRouteInteractions(pre), value).groupBy(userUnit);
    const rows = await this.db
      .selectFrom(perUser.as('u'))
      .leftJoin(prePeriod.as('p'), 'p.unit', 'u.unit')
      .select(['u.variant', sql<number>`sum(u.signalled)`.as('signalled'), ...overUsers, ...overPrePeriod])
      .groupBy('u.variant')
      .execute();
    return rows.map((r) => ({
      variant: r.variant!,
      signalled: Number(r.signalled),
      sums: sumsOf(r),
      covariate: covariateOf(r),
    }));
  }

  /** Judge and annotator labels (and thumbs sent as implicit): event counts per source, apart from the metrics. */
  private async otherSourceTotals(w: TotalsWindow) {
    const rows = await this.routeInteractions(w)
      .innerJoin('feedback_current as f', (j) =>
        j.onRef('f.project_id', '=', 'i.project_id').onRef('f.interaction_id', '=', 'i.id'),
      )
      .innerJoin('feedback as e', 'e.id', 'f.feedback_id')
      .where('e.source', '!=', 'user')
      .where('f.value', 'is not', null)
      .where((eb) =>
        eb.or([
          eb('f.kind', '=', 'thumbs'),
          eb.and([eb('f.kind', '=', 'stars'), eb('f.label', '=', 'stars')]),
        ]),
      )
      .select([
        'i.variant',
        'e.source',
        'f.kind',
        sql<number>`count(*)`.as('n'),
        sql<number>`sum(case when f.value > 0 then 1 else 0 end)`.as('up'),
        sql<number>`sum(f.value)`.as('sum'),
      ])
      .groupBy(['i.variant', 'e.source', 'f.kind'])
      .orderBy('e.source')
      .execute();
    return rows.map((r) => ({
      variant: r.variant!,
      source: r.source,
      kind: r.kind,
      n: Number(r.n),
      up: Number(r.up),
      sum: Number(r.sum),
    }));
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
