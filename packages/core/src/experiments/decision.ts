/**
 * Decision rules for an experiment: `ship` a treatment, `keep_running`, or `stop_for_harm`, each
 * with the reasons a person can check.
 *
 * The guarantees come from the sequential test: a treatment ships only when the mSPRT's
 * always-valid interval lies above zero (above `ship.minEffect`), so looking every day does not
 * inflate false wins; the Bayesian numbers add "is it worth it" (probability to beat, expected
 * loss). Harm on the primary metric or on a guardrail stops the experiment, and a sample ratio
 * mismatch blocks shipping because the comparison itself is then broken.
 */
import { z } from 'zod';
import { betaBinomialComparison } from './beta-binomial.js';
import { experimentMetricDefinitions, isExperimentMetric, metricHigherIsBetter } from './metrics.js';
import { type ArmMoments, proportionMoments } from './moments.js';
import { type MsprtResult, type MsprtState, msprtTest } from './msprt.js';
import { normalMeanComparison } from './normal.js';
import { msprtHorizonVariance } from './sizing.js';
import { type SampleRatioMismatchResult, sampleRatioMismatch } from './srm.js';

const Probability = z.number().gt(0).lt(1);

export const ExperimentGuardrailConfig = z.strictObject({
  metric: z.string().min(1),
  /**
   * A metric core defines (metrics.ts) has its own direction, and stating the other one is an
   * error; a metric of the caller's own is higher-is-better unless this says otherwise.
   */
  higherIsBetter: z.boolean().optional(),
  /** Harm only when the treatment is worse by more than this (metric units). */
  margin: z.number().nonnegative().default(0),
});

export const ExperimentDecisionConfig = z
  .strictObject({
    primaryMetric: z.string().min(1),
    /** As a guardrail's: the direction of a metric core defines comes from its definition. */
    higherIsBetter: z.boolean().optional(),
    guardrails: z.array(ExperimentGuardrailConfig).default([]),
    /** Level of the sequential test, split over the treatments (Bonferroni). */
    alpha: Probability.default(0.05),
    /** Mixture width of the mSPRT in pooled standard deviations of the metric (when no `expectedEffect`). */
    tauInStandardDeviations: z.number().positive().default(0.1),
    /**
     * The effect the experiment is there to find, in metric units (e.g. 0.05 = 5 points of
     * thumbs-up rate). When given, the mSPRT's mixture is N(0, expectedEffect²): the test is most
     * sensitive where the effects one expects lie, and, being fixed before the data, it keeps the
     * guarantee exactly (the default, tau = 0.1 sd of the metric, moves with the estimated sd, and
     * shrinks with it when CUPED removes variance). Any value is valid; a poor one costs power only.
     */
    expectedEffect: z.number().positive().finite().optional(),
    /**
     * CUPED (cuped.ts) on every metric: each user's outcome adjusted by their mean of the same
     * metric over `prePeriodDays` before the experiment started. Applied where the per-user sums
     * are read (the loop's experimentStatus); decideExperiment receives the adjusted metrics.
     */
    /**
     * Outcomes cleaned by calibration: leave out the ratings of raters the last calibration flagged
     * (adversarial, random), before and during the experiment. Applied where the per-user sums are
     * read, like `cuped`.
     */
    excludeFlaggedRaters: z.boolean().default(true),
    cuped: z
      .strictObject({
        enabled: z.boolean().default(true),
        prePeriodDays: z.number().positive().max(365).default(28),
      })
      .prefault({}),
    /**
     * No decision before every arm has this many observations of the primary metric (users with an
     * outcome, for the per-user metrics the product passes; see users.ts).
     */
    minObservationsPerArm: z.number().int().nonnegative().default(100),
    /** Planned maximum; past it, the reasons say that no effect was found. */
    maxObservationsPerArm: z.number().int().positive().optional(),
    /**
     * The horizon sized from power (sizing.ts): once the variance of the primary metric's
     * difference is at or below the variance at which one look ships a true improvement of
     * `effect` with probability `power`, a test that has not shipped says so (`noEffect`). It is
     * counted in information, not users, so outcomes from returning users and CUPED count. It
     * only ends a test without a win, so it leaves the always-valid guarantee as it is.
     */
    horizon: z
      .strictObject({
        effect: z.number().positive().finite(),
        power: Probability.default(0.8),
      })
      .optional(),
    /** p-value below which the users per variant do not match the weights. */
    srmThreshold: Probability.default(0.001),
    credibleLevel: Probability.default(0.95),
    /**
     * Beta prior for proportion metrics (event counts given straight to decideExperiment). The
     * product's experiments pass per-user means (users.ts), which take the flat-prior normal posterior.
     */
    prior: z
      .strictObject({ alpha: z.number().positive(), beta: z.number().positive() })
      .default({ alpha: 1, beta: 1 }),
    ship: z
      .strictObject({
        /** The always-valid interval's lower bound of the improvement must exceed this (metric units). */
        minEffect: z.number().nonnegative().default(0),
        minProbabilityToBeat: Probability.default(0.95),
        /** Largest acceptable expected loss of shipping, in metric units. */
        maxExpectedLoss: z.number().nonnegative().optional(),
        /** When `maxExpectedLoss` is not given: this many pooled standard deviations of the metric. */
        maxExpectedLossInStandardDeviations: z.number().nonnegative().default(0.005),
      })
      .prefault({}),
    harm: z
      .strictObject({
        /** Stop when the always-valid interval shows the treatment worse by more than this (metric units). */
        margin: z.number().nonnegative().default(0),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    // A metric core defines has its direction; a rule stating the other one would ship the worse arm.
    const directions = [
      { metric: c.primaryMetric, stated: c.higherIsBetter, path: ['higherIsBetter'] },
      ...c.guardrails.map((g, i) => ({
        metric: g.metric,
        stated: g.higherIsBetter,
        path: ['guardrails', i, 'higherIsBetter'],
      })),
    ];
    for (const d of directions)
      if (isExperimentMetric(d.metric) && d.stated !== undefined)
        if (d.stated !== experimentMetricDefinitions[d.metric].higherIsBetter)
          ctx.addIssue({
            code: 'custom',
            path: d.path,
            message: `${d.metric} is ${d.stated ? 'lower' : 'higher'} is better by definition; leave it out`,
          });
  });
export type ExperimentDecisionConfig = z.output<typeof ExperimentDecisionConfig>;
export type ExperimentDecisionConfigInput = z.input<typeof ExperimentDecisionConfig>;

/**
 * A metric of one arm. `proportion` treats every trial as an independent unit (right only when
 * each unit gives one 0/1 outcome); `mean` is n independent units with their mean and sample
 * variance, which is how per-user metrics come in (userMeanMetric in users.ts).
 */
export type ExperimentMetricData =
  | { kind: 'proportion'; successes: number; trials: number }
  | { kind: 'mean'; n: number; mean: number; variance: number };

export interface ExperimentVariantData {
  name: string;
  /** Configured traffic weight. */
  weight: number;
  /** Users assigned (for the sample ratio check). */
  users: number;
  metrics: Record<string, ExperimentMetricData>;
}

/** Sequential-test state per variant and metric, returned by each decision for the next one. */
export type ExperimentState = Record<string, Record<string, MsprtState>>;

export interface ExperimentData {
  control: string;
  variants: ExperimentVariantData[];
  previous?: ExperimentState;
}

export type ComparisonVerdict = 'better' | 'worse' | 'inconclusive';

export interface MetricComparison {
  variant: string;
  metric: string;
  role: 'primary' | 'guardrail';
  higherIsBetter: boolean;
  /** treatment - control, in metric units. */
  difference: number;
  /** Always-valid confidence interval of treatment - control. */
  sequentialInterval: { lower: number; upper: number };
  sequentialPValue: number;
  /** Bayesian probability that the treatment is better (in the metric's direction). */
  probabilityToBeat: number;
  /** Bayesian expected loss of shipping the treatment, in metric units. */
  expectedLoss: number;
  /** Credible interval of treatment - control. */
  credibleInterval: { lower: number; upper: number };
  /** Standard error of the difference at this look and the mixture's tau (metric units). */
  standardError: number;
  tau: number;
  verdict: ComparisonVerdict;
}

export type ExperimentDecisionKind = 'ship' | 'keep_running' | 'stop_for_harm';

export interface ExperimentDecision {
  decision: ExperimentDecisionKind;
  /** The variant to ship, or the (first) harmful one; null when running. */
  variant: string | null;
  reasons: string[];
  srm: SampleRatioMismatchResult;
  comparisons: MetricComparison[];
  state: ExperimentState;
  /**
   * No decision, and the planned end is reached (the horizon's information or the maximum of
   * observations per arm): no effect worth having was found; keeping the control is the safe choice.
   */
  noEffect: boolean;
}

function count(m: ExperimentMetricData): number {
  return m.kind === 'proportion' ? m.trials : m.n;
}

/**
 * The metric turned so that higher is better: a proportion becomes its complement (swap
 * successes and failures), a mean is negated. Differences flip sign and nothing else changes.
 */
function oriented(m: ExperimentMetricData, higherIsBetter: boolean): ExperimentMetricData {
  if (higherIsBetter) return m;
  return m.kind === 'proportion'
    ? { kind: 'proportion', successes: m.trials - m.successes, trials: m.trials }
    : { ...m, mean: -m.mean };
}

function moments(m: ExperimentMetricData): ArmMoments {
  return m.kind === 'proportion' ? proportionMoments(m.successes, m.trials) : m;
}

interface Oriented {
  sequential: MsprtResult;
  probabilityToBeat: number;
  expectedLoss: number;
  credible: { lower: number; upper: number };
  pooledSd: number;
}

function compareOriented(
  control: ExperimentMetricData,
  treatment: ExperimentMetricData,
  alpha: number,
  previous: MsprtState | undefined,
  config: ExperimentDecisionConfig,
): Oriented {
  const mc = moments(control);
  const mt = moments(treatment);
  const sequential = msprtTest(mc, mt, {
    alpha,
    tauInStandardDeviations: config.tauInStandardDeviations,
    ...(config.expectedEffect !== undefined ? { tau: config.expectedEffect } : {}),
    ...(previous ? { previous } : {}),
  });
  const pooledSd = Math.sqrt((mc.variance + mt.variance) / 2);
  if (control.kind === 'proportion' && treatment.kind === 'proportion') {
    const b = betaBinomialComparison(control, treatment, {
      prior: config.prior,
      level: config.credibleLevel,
    });
    return {
      sequential,
      probabilityToBeat: b.probabilityToBeat,
      expectedLoss: b.expectedLossTreatment,
      credible: b.differenceInterval,
      pooledSd,
    };
  }
  const n = normalMeanComparison(mc, mt, { level: config.credibleLevel });
  return {
    sequential,
    probabilityToBeat: n.probabilityToBeat,
    expectedLoss: n.expectedLossTreatment,
    credible: n.differenceInterval,
    pooledSd,
  };
}

function flip(i: { lower: number; upper: number }, higherIsBetter: boolean) {
  return higherIsBetter ? i : { lower: -i.upper, upper: -i.lower };
}

function fmt(x: number): string {
  return Number.isFinite(x) ? Number(x.toPrecision(3)).toString() : String(x);
}

interface ComparisonInput {
  variant: string;
  metric: string;
  role: 'primary' | 'guardrail';
  higherIsBetter: boolean;
  harmMargin: number;
  control: ExperimentMetricData;
  treatment: ExperimentMetricData;
}

function compareMetric(
  input: ComparisonInput,
  alpha: number,
  previous: MsprtState | undefined,
  config: ExperimentDecisionConfig,
): { comparison: MetricComparison; state: MsprtState } {
  const dir = input.higherIsBetter;
  const o = compareOriented(
    oriented(input.control, dir),
    oriented(input.treatment, dir),
    alpha,
    previous,
    config,
  );
  const interval = o.sequential.interval;
  const maxLoss = config.ship.maxExpectedLoss ?? config.ship.maxExpectedLossInStandardDeviations * o.pooledSd;
  let verdict: ComparisonVerdict = 'inconclusive';
  if (interval.upper < -input.harmMargin) verdict = 'worse';
  else if (
    input.role === 'primary' &&
    interval.lower > config.ship.minEffect &&
    o.probabilityToBeat >= config.ship.minProbabilityToBeat &&
    o.expectedLoss <= maxLoss
  ) {
    verdict = 'better';
  } else if (input.role === 'guardrail' && interval.lower > 0) {
    verdict = 'better';
  }
  const sign = dir ? 1 : -1;
  return {
    comparison: {
      variant: input.variant,
      metric: input.metric,
      role: input.role,
      higherIsBetter: dir,
      difference: sign * o.sequential.difference,
      sequentialInterval: flip(interval, dir),
      sequentialPValue: o.sequential.pValue,
      probabilityToBeat: o.probabilityToBeat,
      expectedLoss: o.expectedLoss,
      credibleInterval: flip(o.credible, dir),
      standardError: o.sequential.standardError,
      tau: o.sequential.tau,
      verdict,
    },
    state: o.sequential.state,
  };
}

function metricOf(v: ExperimentVariantData, metric: string): ExperimentMetricData {
  const m = v.metrics[metric];
  if (!m) throw new Error(`variant "${v.name}" has no data for metric "${metric}"`);
  return m;
}

/** Why a primary comparison that is not a win is not one yet. */
function pendingReasons(c: MetricComparison, config: ExperimentDecisionConfig): string[] {
  const out: string[] = [];
  const i = c.sequentialInterval;
  const improvementLower = c.higherIsBetter ? i.lower : -i.upper;
  if (!(improvementLower > config.ship.minEffect)) {
    out.push(
      `${c.variant}: the always-valid interval of ${c.metric} [${fmt(i.lower)}, ${fmt(i.upper)}] does not yet exclude an improvement of ${fmt(config.ship.minEffect)} or less`,
    );
  }
  if (c.probabilityToBeat < config.ship.minProbabilityToBeat) {
    out.push(
      `${c.variant}: probability to beat ${fmt(c.probabilityToBeat)} < ${config.ship.minProbabilityToBeat}`,
    );
  }
  return out.length ? out : [`${c.variant}: expected loss ${fmt(c.expectedLoss)} is above the threshold`];
}

function describe(c: MetricComparison): string {
  const i = c.sequentialInterval;
  return `${c.variant} ${c.metric}: difference ${fmt(c.difference)}, always-valid interval [${fmt(i.lower)}, ${fmt(i.upper)}], p = ${fmt(c.sequentialPValue)}, P(better) = ${fmt(c.probabilityToBeat)}, expected loss ${fmt(c.expectedLoss)}`;
}

function checkVariants(data: ExperimentData): {
  control: ExperimentVariantData;
  treatments: ExperimentVariantData[];
} {
  const control = data.variants.find((v) => v.name === data.control);
  if (!control) throw new Error(`control "${data.control}" is not one of the variants`);
  const treatments = data.variants.filter((v) => v.name !== data.control);
  if (treatments.length === 0) throw new Error('an experiment needs at least one treatment');
  return { control, treatments };
}

/** The primary metric's direction: its definition's (metrics.ts), else the rule's, else higher. */
export function primaryHigherIsBetter(config: ExperimentDecisionConfig): boolean {
  return metricHigherIsBetter(config.primaryMetric, config.higherIsBetter, 'higherIsBetter');
}

/** Applies the decision rules to an experiment's current totals. */
export function decideExperiment(
  data: ExperimentData,
  configInput: ExperimentDecisionConfigInput,
): ExperimentDecision {
  const config = ExperimentDecisionConfig.parse(configInput);
  const { control, treatments } = checkVariants(data);
  const srm = sampleRatioMismatch(data.variants, { threshold: config.srmThreshold });
  const alpha = config.alpha / treatments.length;
  const metrics = [
    {
      metric: config.primaryMetric,
      role: 'primary' as const,
      higherIsBetter: primaryHigherIsBetter(config),
      margin: config.harm.margin,
    },
    ...config.guardrails.map((g, i) => ({
      ...g,
      higherIsBetter: metricHigherIsBetter(g.metric, g.higherIsBetter, `guardrails.${i}.higherIsBetter`),
      role: 'guardrail' as const,
    })),
  ];
  const comparisons: MetricComparison[] = [];
  const state: ExperimentState = {};
  const thin: string[] = [];
  for (const t of treatments) {
    state[t.name] = {};
    for (const m of metrics) {
      const c = metricOf(control, m.metric);
      const tr = metricOf(t, m.metric);
      if (Math.min(count(c), count(tr)) < Math.max(2, config.minObservationsPerArm)) {
        if (m.role === 'primary')
          thin.push(
            `${t.name}: ${Math.min(count(c), count(tr))} observations of ${m.metric} in the smaller arm, waiting for ${config.minObservationsPerArm}`,
          );
        continue;
      }
      const r = compareMetric(
        {
          variant: t.name,
          metric: m.metric,
          role: m.role,
          higherIsBetter: m.higherIsBetter,
          harmMargin: m.margin,
          control: c,
          treatment: tr,
        },
        alpha,
        data.previous?.[t.name]?.[m.metric],
        config,
      );
      comparisons.push(r.comparison);
      state[t.name]![m.metric] = r.state;
    }
  }
  const base = { srm, comparisons, state, noEffect: false };
  const harmful = comparisons.filter((c) => c.verdict === 'worse');
  if (harmful.length > 0) {
    return {
      ...base,
      decision: 'stop_for_harm',
      variant: harmful[0]!.variant,
      reasons: harmful.map((c) => `harm: ${describe(c)}`),
    };
  }
  const reasons: string[] = [];
  if (srm.mismatch) {
    const shares = srm.variants
      .map((v) => `${v.name} ${fmt(v.observedShare)} (expected ${fmt(v.expectedShare)})`)
      .join(', ');
    reasons.push(
      `sample ratio mismatch (chi-square p = ${fmt(srm.pValue)} < ${config.srmThreshold}): ${shares}; assignment or logging is broken, so no result can be trusted until it is fixed`,
    );
  }
  reasons.push(...thin);
  const winners = comparisons
    .filter((c) => c.role === 'primary' && c.verdict === 'better')
    .sort(
      (a, b) => b.probabilityToBeat - a.probabilityToBeat || Math.abs(b.difference) - Math.abs(a.difference),
    );
  if (!srm.mismatch && winners.length > 0) {
    const w = winners[0]!;
    return { ...base, decision: 'ship', variant: w.variant, reasons: [`ship: ${describe(w)}`] };
  }
  for (const c of comparisons.filter((c) => c.role === 'primary')) {
    if (c.verdict !== 'better') reasons.push(...pendingReasons(c, config));
    else reasons.push(`${describe(c)} (would ship, but shipping is blocked)`);
  }
  const ends = plannedEnd(control, treatments, comparisons, thin.length > 0, config);
  reasons.push(...ends);
  return { ...base, decision: 'keep_running', variant: null, reasons, noEffect: ends.length > 0 };
}

/**
 * Why an undecided test is over, if it is: every treatment's primary comparison past the horizon
 * (its standard error at or below the horizon's), or every arm at the planned maximum.
 */
function plannedEnd(
  control: ExperimentVariantData,
  treatments: ExperimentVariantData[],
  comparisons: MetricComparison[],
  thin: boolean,
  config: ExperimentDecisionConfig,
): string[] {
  const out: string[] = [];
  const h = config.horizon;
  const primary = comparisons.filter((c) => c.role === 'primary');
  if (h && !thin && primary.length === treatments.length) {
    const alpha = config.alpha / treatments.length;
    const past = primary.map((c) => {
      const v = msprtHorizonVariance({ effect: h.effect, tau: c.tau, alpha, power: h.power });
      return { c, target: Math.sqrt(v), reached: c.standardError ** 2 <= v };
    });
    if (past.every((p) => p.reached))
      out.push(
        `the horizon is reached: ${past.map((p) => `${p.c.variant}'s standard error ${fmt(p.c.standardError)} <= ${fmt(p.target)}`).join(', ')}, where one look had power ${h.power} to ship an improvement of ${fmt(h.effect)}: no effect that large; keeping the control is the safe choice`,
      );
  }
  const maxN = config.maxObservationsPerArm;
  if (
    maxN !== undefined &&
    treatments.every(
      (t) =>
        count(metricOf(control, config.primaryMetric)) >= maxN &&
        count(metricOf(t, config.primaryMetric)) >= maxN,
    )
  ) {
    out.push(
      `the planned maximum of ${maxN} observations per arm is reached: no effect large enough to detect; keeping the control is the safe choice`,
    );
  }
  return out;
}
