/**
 * Experiments on a gateway route: start (the route's variants go to the database, where every
 * gateway picks them up), look (per-variant metrics over users, from the users' own ratings and
 * their implicit signals (core's metrics.ts defines each metric, its direction and its default
 * effect), in SQL; judge and annotator labels shown apart; the Bayesian and mSPRT engines, the sample ratio
 * check over users, a decision appended to the history, Thompson-sampling weights when the
 * experiment is a bandit), and stop (keep the winner or return the route to the file).
 */
import {
  type CupedAdjustment,
  cupedAdjust,
  decideExperiment,
  type ExperimentDecision,
  ExperimentDecisionConfig,
  type ExperimentMetricData,
  type ExperimentMetricName,
  type ExperimentVariantData,
  emptyUserCovariateSums,
  emptyUserMetricSums,
  experimentMetric,
  experimentMetricNames,
  isExperimentMetric,
  type NetImplicitMetricName,
  parseInput,
  primaryHigherIsBetter,
  RatchetError,
  thompsonSamplingWeights,
  type UserCovariateSums,
  type UserMeanSummary,
  type UserMetricSums,
  userMeanMetric,
  userMeanSummary,
  Weight,
} from '@ratchet/core';
import type { Experiment, Store, StoredVariant, VariantFeedbackTotals } from '@ratchet/store';
import { z } from 'zod';

/** The metrics an experiment decides on: core's definitions (metrics.ts), named once there. */
export const experimentMetrics = experimentMetricNames;
export type ExperimentMetric = ExperimentMetricName;

export const experimentEngines = ['msprt', 'bayesian'] as const;

const VariantSpec = z
  .strictObject({
    name: z.string().min(1).max(100),
    weight: Weight,
    /** A registry model (id or name); the gateway sends its name as the model to `upstream`. */
    model: z.string().min(1).optional(),
    /** The gateway upstream; defaults to the gateway file's defaultUpstream. */
    upstream: z.string().min(1).optional(),
    /** The model name sent upstream, for a variant that is not a registry model. */
    upstreamModel: z.string().min(1).optional(),
  })
  .refine((v) => (v.model === undefined) !== (v.upstreamModel === undefined), {
    message: 'give exactly one of model (a registry model) or upstreamModel',
    path: ['model'],
  });

export const ExperimentStartSpec = z
  .strictObject({
    name: z
      .string()
      .min(1)
      .max(200)
      .regex(/^[A-Za-z0-9._:@/-]+$/, 'letters, digits and . _ : @ / - only'),
    route: z.string().min(1).max(200),
    /** The variant the others are compared with (usually production). */
    control: z.string().min(1),
    variants: z.array(VariantSpec).min(2).max(20),
    metric: z.enum(experimentMetrics).default('thumbs_up_rate'),
    engine: z.enum(experimentEngines).default('msprt'),
    /** Decision rule: ExperimentDecisionConfig without the primary metric (it is `metric`). */
    decisionRule: z.record(z.string(), z.unknown()).default({}),
    /** Let Thompson sampling set the weights at every look. */
    bandit: z.boolean().default(false),
  })
  .superRefine((s, ctx) => {
    const names = s.variants.map((v) => v.name);
    if (new Set(names).size !== names.length)
      ctx.addIssue({ code: 'custom', path: ['variants'], message: 'variant names must be unique' });
    if (!names.includes(s.control))
      ctx.addIssue({
        code: 'custom',
        path: ['control'],
        message: `"${s.control}" is not one of the variants`,
      });
    if (!s.variants.some((v) => v.weight > 0))
      ctx.addIssue({
        code: 'custom',
        path: ['variants'],
        message: 'at least one variant needs a positive weight',
      });
  });
export type ExperimentStartSpec = z.input<typeof ExperimentStartSpec>;

export interface GatewayFacts {
  /** Upstream names the gateway file defines; variants are checked against them when given. */
  upstreams?: readonly string[];
  defaultUpstream?: string;
}

function decisionConfig(e: { metric: string; decisionRule: Record<string, unknown> }) {
  return { ...e.decisionRule, primaryMetric: e.metric };
}

/**
 * The rule as stored at the start: a rule that sets neither the effect it looks for nor the
 * mixture width gets the metric's default expected effect, written down so that the mixture is
 * fixed before any data (which keeps the guarantee exact) and the history says what ran.
 */
function withDefaultEffect(metric: ExperimentMetric, rule: Record<string, unknown>): Record<string, unknown> {
  if ('expectedEffect' in rule || 'tauInStandardDeviations' in rule) return rule;
  return { ...rule, expectedEffect: experimentMetric(metric).defaultExpectedEffect };
}

async function resolveVariants(
  store: Store,
  projectId: string,
  spec: z.output<typeof ExperimentStartSpec>,
  gateway: GatewayFacts,
): Promise<StoredVariant[]> {
  const out: StoredVariant[] = [];
  for (const [i, v] of spec.variants.entries()) {
    const upstream = v.upstream ?? gateway.defaultUpstream;
    if (!upstream)
      throw new RatchetError(
        'invalid_request',
        `variants.${i}.upstream: required (the gateway has no defaultUpstream)`,
        `variants.${i}.upstream`,
      );
    if (gateway.upstreams && !gateway.upstreams.includes(upstream))
      throw new RatchetError(
        'invalid_request',
        `variants.${i}.upstream: "${upstream}" is not an upstream of the gateway file`,
        `variants.${i}.upstream`,
      );
    if (v.model) {
      const model = await store.models.get(projectId, v.model);
      if (!model)
        throw new RatchetError(
          'not_found',
          `variants.${i}.model: "${v.model}" is not in the registry`,
          `variants.${i}.model`,
        );
      out.push({ name: v.name, upstream, model: model.name, weight: v.weight, modelId: model.id });
    } else {
      out.push({ name: v.name, upstream, model: v.upstreamModel!, weight: v.weight, modelId: null });
    }
  }
  return out;
}

export async function startExperiment(
  store: Store,
  projectId: string,
  specInput: ExperimentStartSpec,
  options: { gateway?: GatewayFacts; actor?: string } = {},
): Promise<Experiment> {
  const parsed = parseInput(ExperimentStartSpec, specInput);
  const spec = { ...parsed, decisionRule: withDefaultEffect(parsed.metric, parsed.decisionRule) };
  // Reject a bad rule now, not at the first look.
  const rule = parseInput(ExperimentDecisionConfig, decisionConfig(spec), 'decisionRule');
  rule.guardrails.forEach((g, i) => {
    if (!isExperimentMetric(g.metric))
      throw new RatchetError(
        'invalid_request',
        `decisionRule.guardrails.${i}.metric: "${g.metric}" is not an experiment metric (${experimentMetrics.join(', ')})`,
        `decisionRule.guardrails.${i}.metric`,
      );
  });
  const variants = await resolveVariants(store, projectId, spec, options.gateway ?? {});
  return store.experiments.start(projectId, { ...spec, variants }, options.actor ?? 'loop');
}

/** A variant's metric over its users (`source: user` feedback): users, ratings, mean of user means. */
export type VariantMetricStatus = UserMeanSummary;

/** Thumbs and stars from one other source (judge, annotator): shown apart, never in the decision. */
export interface OtherSourceStatus {
  source: string;
  thumbs: { up: number; total: number; rate: number | null };
  stars: { n: number; mean: number | null };
}

export interface VariantStatus {
  name: string;
  weight: number;
  model: string;
  modelId: string | null;
  /** Units served (end users; the interaction for a call without one): what the SRM check counts. */
  users: number;
  interactions: number;
  /** Users with thumbs, their thumbs, the mean of each user's share of ups and its interval. */
  thumbsUpRate: VariantMetricStatus & { up: number };
  meanReward: VariantMetricStatus;
  stars: VariantMetricStatus;
  /**
   * Every metric of core's definitions, the implicit ones too (regenerate rate, copy rate...):
   * per user, with its direction. `users` is what the primary metric's minimum and maximum count.
   */
  metrics: Record<ExperimentMetric, MetricStatus>;
  otherSources: OtherSourceStatus[];
}

export interface MetricStatus extends VariantMetricStatus {
  metric: ExperimentMetric;
  label: string;
  source: 'ratings' | 'implicit';
  higherIsBetter: boolean;
  /** Implicit metrics: the answers that got the signal (of `events` answers served). */
  signalled?: number;
}

/** One metric's per-user sums and pre-period covariate in a variant's totals (core's definition says which). */
export function sumsOf(
  metric: ExperimentMetric,
  t: VariantFeedbackTotals | undefined,
): { outcome: UserMetricSums & { signalled?: number }; covariate: UserCovariateSums } {
  const o = experimentMetric(metric).outcome;
  if (o.source === 'implicit' && 'net' in o) {
    const name = metric as NetImplicitMetricName;
    return {
      outcome: t?.implicitNet[name] ?? emptyUserMetricSums,
      covariate: t?.prePeriod.implicitNet[name] ?? emptyUserCovariateSums,
    };
  }
  if (o.source === 'implicit')
    return {
      outcome: t?.implicit[o.signal] ?? emptyUserMetricSums,
      covariate: t?.prePeriod.implicit[o.signal] ?? emptyUserCovariateSums,
    };
  return {
    outcome: t?.[o.sums] ?? emptyUserMetricSums,
    covariate: t?.prePeriod[o.sums] ?? emptyUserCovariateSums,
  };
}

/** What was done to the primary metric before the test, so a person can tell what the numbers are. */
export interface ExperimentAdjustments {
  /** Ratings of raters the last calibration flagged were left out of every metric. */
  flaggedRatersExcluded: boolean;
  /** CUPED on the users' pre-period outcomes; null when the rule turns it off. */
  cuped: {
    prePeriodDays: number;
    /** The slope applied: adjusted = outcome - theta (pre-period mean - its mean over users). */
    theta: number;
    /** Share of the experiment's users (with an outcome) who had pre-period data. */
    coveredShare: number;
    /** Share of the variance of the arms' difference removed (0 when theta is 0). */
    varianceReduction: number;
  } | null;
  /** The mSPRT's mixture: tau from the expected effect (metric units) or in standard deviations. */
  mixture: { expectedEffect: number } | { tauInStandardDeviations: number };
}

export interface ExperimentStatus {
  experiment: Experiment;
  variants: VariantStatus[];
  decision: ExperimentDecision;
  adjustments: ExperimentAdjustments;
  /** Weights Thompson sampling chose at this look (bandit experiments). */
  weights: Record<string, number> | null;
}

/**
 * Every metric of every variant per user (the user is the unit: core's users.ts says how and
 * why), CUPED-adjusted with one theta per metric over all the variants when `cuped` is on.
 */
function metricData(
  totals: readonly (VariantFeedbackTotals | undefined)[],
  cuped: boolean,
): {
  data: Record<ExperimentMetric, ExperimentMetricData>[];
  adjustments: Map<ExperimentMetric, CupedAdjustment>;
} {
  const data = totals.map(() => ({}) as Record<ExperimentMetric, ExperimentMetricData>);
  const adjustments = new Map<ExperimentMetric, CupedAdjustment>();
  for (const metric of experimentMetrics) {
    const arms = totals.map((t) => sumsOf(metric, t));
    const adjusted = cuped ? cupedAdjust(arms) : null;
    if (adjusted) adjustments.set(metric, adjusted);
    arms.forEach((a, i) => {
      data[i]![metric] = userMeanMetric(adjusted ? adjusted.arms[i]! : a.outcome);
    });
  }
  return { data, adjustments };
}

function variantStatus(
  v: StoredVariant,
  t: VariantFeedbackTotals | undefined,
  weight: number,
  level: number,
): VariantStatus {
  return {
    name: v.name,
    weight,
    model: v.model,
    modelId: v.modelId ?? null,
    users: t?.users ?? 0,
    interactions: t?.interactions ?? 0,
    thumbsUpRate: { ...userMeanSummary(t?.thumbs ?? emptyUserMetricSums, level), up: t?.thumbs.up ?? 0 },
    meanReward: userMeanSummary(t?.reward ?? emptyUserMetricSums, level),
    stars: userMeanSummary(t?.stars ?? emptyUserMetricSums, level),
    metrics: Object.fromEntries(
      experimentMetrics.map((metric) => {
        const d = experimentMetric(metric);
        const { outcome } = sumsOf(metric, t);
        return [
          metric,
          {
            metric,
            label: d.label,
            source: d.outcome.source,
            higherIsBetter: d.higherIsBetter,
            ...userMeanSummary(outcome, level),
            ...(outcome.signalled !== undefined ? { signalled: outcome.signalled } : {}),
          },
        ];
      }),
    ) as Record<ExperimentMetric, MetricStatus>,
    otherSources: (t?.otherSources ?? []).map((o) => ({
      source: o.source,
      thumbs: { ...o.thumbs, rate: o.thumbs.total ? o.thumbs.up / o.thumbs.total : null },
      stars: { n: o.stars.n, mean: o.stars.n ? o.stars.sum / o.stars.n : null },
    })),
  };
}

/**
 * The Bayesian engine's rule, on the same comparisons: ship when the probability to beat the
 * control and the expected loss clear the thresholds, stop for harm when the credible interval
 * lies entirely on the harmful side of the margin. Unlike the mSPRT rule it is not protected
 * against peeking; it is there for teams that decide on posterior risk.
 */
function bayesianDecision(d: ExperimentDecision, config: ExperimentDecisionConfig): ExperimentDecision {
  const harm = d.comparisons.filter((c) => {
    const worse = c.higherIsBetter ? c.credibleInterval.upper : -c.credibleInterval.lower;
    const margin =
      c.role === 'primary'
        ? config.harm.margin
        : (config.guardrails.find((g) => g.metric === c.metric)?.margin ?? 0);
    return worse < -margin;
  });
  if (harm.length)
    return {
      ...d,
      decision: 'stop_for_harm',
      noEffect: false,
      variant: harm[0]!.variant,
      reasons: harm.map(
        (c) =>
          `harm: ${c.variant} ${c.metric} credible interval [${c.credibleInterval.lower.toPrecision(3)}, ${c.credibleInterval.upper.toPrecision(3)}] is entirely worse`,
      ),
    };
  const winners = d.comparisons
    .filter(
      (c) =>
        c.role === 'primary' &&
        c.probabilityToBeat >= config.ship.minProbabilityToBeat &&
        (config.ship.maxExpectedLoss === undefined || c.expectedLoss <= config.ship.maxExpectedLoss),
    )
    .sort((a, b) => b.probabilityToBeat - a.probabilityToBeat);
  if (winners.length && !d.srm.mismatch) {
    const w = winners[0]!;
    return {
      ...d,
      decision: 'ship',
      noEffect: false,
      variant: w.variant,
      reasons: [
        `ship: ${w.variant} ${w.metric} P(better) = ${w.probabilityToBeat.toPrecision(3)}, expected loss ${w.expectedLoss.toPrecision(3)}`,
      ],
    };
  }
  return { ...d, decision: 'keep_running', variant: null };
}

/**
 * One look at an experiment: metrics per variant, the engines' analysis and the decision. With
 * `record`, the decision joins the history (and a bandit's new weights go to the route).
 */
export async function experimentStatus(
  store: Store,
  projectId: string,
  ref: string,
  options: { record?: boolean; actor?: string } = {},
): Promise<ExperimentStatus> {
  const experiment = await store.experiments.get(projectId, ref);
  if (!experiment) throw new RatchetError('not_found', `experiment "${ref}" not found`, 'experiment');
  const config = ExperimentDecisionConfig.parse(decisionConfig(experiment));
  const day = 24 * 60 * 60 * 1000;
  const totals = await store.experiments.variantTotals(
    projectId,
    experiment.route,
    experiment.startedAt,
    experiment.stoppedAt ?? undefined,
    {
      ...(config.cuped.enabled ? { prePeriodMs: config.cuped.prePeriodDays * day } : {}),
      excludeFlaggedRaters: config.excludeFlaggedRaters,
    },
  );
  const byName = new Map(totals.map((t) => [t.variant, t]));
  const metrics = metricData(
    experiment.variants.map((v) => byName.get(v.name)),
    config.cuped.enabled,
  );
  const route =
    experiment.status === 'running' ? await store.routes.get(projectId, experiment.route) : undefined;
  const currentWeight = (v: StoredVariant) =>
    route?.variants.find((r) => r.name === v.name)?.weight ?? v.weight;
  const data: ExperimentVariantData[] = experiment.variants.map((v, i) => {
    const t = byName.get(v.name);
    return {
      name: v.name,
      // A bandit moves the weights, so the users cannot be tested against any one set of them.
      weight: experiment.bandit ? Math.max(1, t?.users ?? 0) : v.weight,
      users: t?.users ?? 0,
      metrics: metrics.data[i]!,
    };
  });
  let decision = decideExperiment(
    { control: experiment.control, variants: data, previous: (experiment.state ?? undefined) as never },
    config,
  );
  if (experiment.engine === 'bayesian') decision = bayesianDecision(decision, config);
  if (experiment.bandit)
    decision.reasons.push('sample ratio check not applicable: Thompson sampling sets the weights');

  let weights: Record<string, number> | null = null;
  if (experiment.bandit && experiment.status === 'running') {
    const arms = data.map((d) => d.metrics[experiment.metric]!);
    const w = thompsonSamplingWeights(arms, {
      seed: experiment.history.length + 1,
      higherIsBetter: primaryHigherIsBetter(config),
      prior: config.prior,
    });
    weights = Object.fromEntries(data.map((d, i) => [d.name, w[i]!]));
  }
  let stored = experiment;
  if (options.record && experiment.status === 'running') {
    stored = await store.experiments.recordDecision(
      projectId,
      experiment.id,
      {
        at: Date.now(),
        decision: decision.decision,
        variant: decision.variant,
        reasons: decision.reasons,
        ...(weights ? { weights } : {}),
        actor: options.actor ?? 'loop',
      },
      decision.state,
    );
  }
  const variants = experiment.variants.map((v) =>
    variantStatus(v, byName.get(v.name), weights?.[v.name] ?? currentWeight(v), config.credibleLevel),
  );
  return {
    experiment: stored,
    variants,
    decision,
    adjustments: adjustmentsOf(config, metrics.adjustments.get(experiment.metric as ExperimentMetric)),
    weights,
  };
}

/** One line for people: which adjustments ran on the primary metric and what they did. */
export function describeAdjustments(a: ExperimentAdjustments): string {
  const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
  const cuped = a.cuped
    ? `CUPED on ${a.cuped.prePeriodDays} days before the start: theta ${a.cuped.theta.toPrecision(3)}, ${pct(a.cuped.coveredShare)} of users with a pre-period, variance ${pct(a.cuped.varianceReduction)} lower`
    : 'no CUPED adjustment';
  const mixture =
    'expectedEffect' in a.mixture
      ? `mixture tuned to an expected effect of ${a.mixture.expectedEffect}`
      : `mixture tau ${a.mixture.tauInStandardDeviations} standard deviations`;
  const raters = a.flaggedRatersExcluded ? 'flagged raters left out' : 'every rater counted';
  return `${raters}; ${cuped}; ${mixture}`;
}

function adjustmentsOf(
  config: ExperimentDecisionConfig,
  cuped: CupedAdjustment | undefined,
): ExperimentAdjustments {
  return {
    flaggedRatersExcluded: config.excludeFlaggedRaters,
    cuped: cuped
      ? {
          prePeriodDays: config.cuped.prePeriodDays,
          theta: cuped.theta,
          coveredShare: cuped.coveredShare,
          varianceReduction: cuped.varianceReduction,
        }
      : null,
    mixture:
      config.expectedEffect !== undefined
        ? { expectedEffect: config.expectedEffect }
        : { tauInStandardDeviations: config.tauInStandardDeviations },
  };
}

/**
 * Stops an experiment. `keep` names the variant that takes all of the route's traffic (e.g. the
 * shipped one); without it the route returns to the gateway file.
 */
export async function stopExperiment(
  store: Store,
  projectId: string,
  ref: string,
  options: { keep?: string; reason: string; actor?: string },
): Promise<Experiment> {
  const experiment = await store.experiments.get(projectId, ref);
  if (!experiment) throw new RatchetError('not_found', `experiment "${ref}" not found`, 'experiment');
  const actor = options.actor ?? 'loop';
  return store.experiments.stop(
    projectId,
    experiment.id,
    {
      at: Date.now(),
      decision: 'stopped',
      variant: options.keep ?? null,
      reasons: [options.reason],
      actor,
    },
    options.keep,
  );
}
