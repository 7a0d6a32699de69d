// The experiments bench: what the statistics of packages/core/src/experiments promise, by
// seeded simulation (issue 6, "Must show"; the clustered A/A runs: issue 14, "the user is the
// unit"). Pure computation: no servers, no network.
import {
  type CupedAnalysis,
  type CupedPopulation,
  type ImplicitAnswerModel,
  sampleRatioMismatch,
  shippedByRate,
  simulateAaPeeking,
  simulateClusteredAa,
  simulateCupedExperiments,
  simulatePower,
  simulateSampleRatio,
} from '../../packages/core/src/experiments/index.js';
import type { Bench, BenchContext, BenchOutcome } from '../lib/bench.js';
import { round } from '../lib/results.js';

interface Config {
  aaExperiments: number;
  usersPerExperiment: number;
  peekEvery: number;
  baseRate: number;
  lift: number;
  powerUsersPerArm: number[];
  powerSimulations: number;
  srmRoutes: number;
  clustered: {
    experiments: number;
    usersPerExperiment: number;
    /** Intra-user correlation 1 / (concentration + 1). */
    concentration: number;
    maxRatingsPerUser: number;
  };
  returning: {
    population: CupedPopulation;
    powerSimulations: number;
    powerUsersPerArm: number[];
    aaExperiments: number;
    aaUsersPerExperiment: number;
  };
  implicit: {
    population: CupedPopulation;
    /** Improvement of the treatment, in points of regenerate rate (lower). */
    lift: number;
    powerSimulations: number;
    powerUsersPerArm: number[];
    aaExperiments: number;
    aaUsersPerExperiment: number;
  };
  implicitNet: {
    /** Propensity: the chance a user likes an answer (true quality). */
    population: CupedPopulation;
    answers: ImplicitAnswerModel;
    /** Improvement of the treatment, in points of true quality (liking). */
    lift: number;
    powerSimulations: number;
    powerUsersPerArm: number[];
    aaExperiments: number;
    aaUsersPerExperiment: number;
  };
}

/**
 * Returning users (issue 19, "more power per user"). Each user has a thumbs-up propensity of
 * their own, Beta(1.2, 0.8) (mean 0.6, intra-user correlation 1/3: users differ a lot in how
 * readily they give a thumbs up, the rater leniency that calibration measures as bias), which
 * persists: they rated 0 to 20 answers on the route before the experiment (1 in 21 is new) and
 * rate 1 to 3 during it (sparse feedback). Their pre-period and experiment means then correlate
 * at about 0.55, in the range CUPED reports for per-user engagement metrics (Deng et al. 2013
 * removed about half the variance of queries per user with one pre-period week).
 */
const RETURNING: Config['returning'] = {
  population: { rate: 0.6, concentration: 2, maxRatingsPerUser: 3, maxPrePeriodRatingsPerUser: 20 },
  powerSimulations: 1000,
  powerUsersPerArm: [500, 1000, 1500, 2000],
  aaExperiments: 1000,
  aaUsersPerExperiment: 10_000,
};

/**
 * Implicit outcomes (issue 19, "the loop under real feedback"): each user's regenerate rate, the
 * share of the answers served to them that they regenerated, lower is better. Modelled on the
 * realistic demo's population: about 10% of answers regenerated (11.1% of production's in its
 * first run), a propensity of each user's own (Beta with concentration 10: users differ in
 * patience and taste; intra-user correlation 0.09), 1 to 5 answers a user during the canary and
 * 0 to 3 in the round's traffic before it (the pre-period). Every user served is a unit. The
 * treatment lowers the rate by 3 points (the demo's first candidate: 4 points, for 9 points of
 * true quality); the mixture is tuned to 0.03, the metric's default effect.
 */
const IMPLICIT: Config['implicit'] = {
  population: { rate: 0.1, concentration: 10, maxRatingsPerUser: 5, maxPrePeriodRatingsPerUser: 3 },
  lift: 0.03,
  powerSimulations: 1000,
  powerUsersPerArm: [250, 500, 1000, 1500, 2000],
  aaExperiments: 1000,
  aaUsersPerExperiment: 6000,
};

/**
 * Net dissatisfaction against the regenerate rate alone, on the same simulated users and answers
 * (issue 19: more of each user's answers carry signal). Modelled on the realistic demo's people
 * (core simulate/rate.ts): 88% of answers unrated; an unrated answer is copied 10% of the time
 * when liked and regenerated 15% of the time when not. Each user likes answers with a propensity
 * of their own, Beta(0.33 x 4, 0.67 x 4) (production's true quality 33% at the start of the
 * realistic runs; users and segments differ in taste), 1 to 5 answers during the canary and 0 to
 * 3 before it. The treatment is 10 points of true quality (the realistic runs' better candidates
 * were 7 to 22 points up); each metric's mixture is tuned to what 10 points move it by under the
 * model (regenerate rate 0.15 x 0.88 x 0.1, net 0.25 x 0.88 x 0.1), both with CUPED.
 */
const IMPLICIT_NET: Config['implicitNet'] = {
  population: { rate: 0.33, concentration: 4, maxRatingsPerUser: 5, maxPrePeriodRatingsPerUser: 3 },
  answers: { unratedShare: 0.88, copyIfLiked: 0.1, regenerateIfDisliked: 0.15 },
  lift: 0.1,
  powerSimulations: 1000,
  powerUsersPerArm: [500, 1000, 1400, 2000, 3000],
  aaExperiments: 1000,
  aaUsersPerExperiment: 6000,
};

const FULL: Config = {
  aaExperiments: 2000,
  usersPerExperiment: 10_000,
  peekEvery: 100,
  baseRate: 0.6,
  lift: 0.05,
  powerUsersPerArm: [500, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000],
  powerSimulations: 1000,
  srmRoutes: 1000,
  clustered: { experiments: 2000, usersPerExperiment: 10_000, concentration: 4, maxRatingsPerUser: 20 },
  returning: RETURNING,
  implicit: IMPLICIT,
  implicitNet: IMPLICIT_NET,
};

const TINY: Config = {
  ...FULL,
  aaExperiments: 100,
  powerSimulations: 50,
  srmRoutes: 50,
  powerUsersPerArm: [1000, 4000],
  clustered: { ...FULL.clustered, experiments: 50 },
  returning: { ...RETURNING, powerSimulations: 50, aaExperiments: 20, aaUsersPerExperiment: 2000 },
  implicit: { ...IMPLICIT, powerSimulations: 50, aaExperiments: 20, aaUsersPerExperiment: 2000 },
  implicitNet: { ...IMPLICIT_NET, powerSimulations: 50, aaExperiments: 20, aaUsersPerExperiment: 2000 },
};

function timed<T>(ctx: BenchContext, label: string, f: () => T): [T, number] {
  const started = performance.now();
  const value = f();
  const seconds = (performance.now() - started) / 1000;
  ctx.log(`${label}: ${seconds.toFixed(1)} s`);
  return [value, seconds];
}

function aaMetrics(ctx: BenchContext, c: Config): Record<string, number> {
  const [aa, seconds] = timed(ctx, `${c.aaExperiments} A/A experiments`, () =>
    simulateAaPeeking({
      experiments: c.aaExperiments,
      usersPerExperiment: c.usersPerExperiment,
      peekEvery: c.peekEvery,
      rate: c.baseRate,
      seed: 20261124,
    }),
  );
  return {
    // One thumb per user, mixture tau = 0.1 sd, no adjustment: the configuration before issue 19.
    aa_fpr_sequential_unadjusted_rate: aa.sequentialFalsePositiveRate,
    aa_fpr_naive_ttest: aa.naiveFalsePositiveRate,
    aa_experiments_count: aa.experiments,
    aa_looks_per_experiment_count: aa.looksPerExperiment,
    aa_simulation_s: round(seconds, 2),
  };
}

/**
 * A/A experiments whose users rate 1 to 20 answers each with a propensity of their own, looked at
 * every 100 users by the product's decision code: over users (what experiments do now) and over
 * ratings as independent units (what they did before).
 */
function clusteredAaMetrics(ctx: BenchContext, c: Config): Record<string, number> {
  const k = c.clustered;
  const [aa, seconds] = timed(ctx, `${k.experiments} clustered A/A experiments`, () =>
    simulateClusteredAa({
      experiments: k.experiments,
      usersPerExperiment: k.usersPerExperiment,
      peekEvery: c.peekEvery,
      rate: c.baseRate,
      concentration: k.concentration,
      maxRatingsPerUser: k.maxRatingsPerUser,
      seed: 20261205,
    }),
  );
  ctx.log(
    `clustered A/A: user level ${aa.userLevelFalsePositiveRate}, event level ${aa.eventLevelFalsePositiveRate} (${round(aa.meanRatingsPerUser, 2)} ratings per user)`,
  );
  return {
    aa_fpr_user_level: aa.userLevelFalsePositiveRate,
    aa_fpr_event_level_clustered: aa.eventLevelFalsePositiveRate,
    aa_clustered_experiments_count: aa.experiments,
    aa_clustered_ratings_per_user_count: round(aa.meanRatingsPerUser, 3),
    aa_clustered_simulation_s: round(seconds, 2),
  };
}

/** The SRM case exactly (10,400 / 9,600), and as simulated routes that lose logs. */
function srmMetrics(ctx: BenchContext, c: Config): Record<string, number> {
  const exact = sampleRatioMismatch([
    { name: 'control', users: 10_400, weight: 0.5 },
    { name: 'candidate', users: 9_600, weight: 0.5 },
  ]);
  ctx.log(`SRM at 10,400 / 9,600: chi-square ${exact.chiSquare}, p = ${exact.pValue.toExponential(3)}`);
  let detected = 0;
  let falseFlags = 0;
  for (let seed = 0; seed < c.srmRoutes; seed++) {
    // A 50/50 route that logs 12 of 13 users of one arm: 52/48 of what is logged, in expectation.
    const lossy = simulateSampleRatio({
      users: 20_000,
      weights: [0.5, 0.5],
      loggingRates: [1, 12 / 13],
      seed,
    });
    if (lossy.mismatch) detected++;
    const healthy = simulateSampleRatio({
      users: 20_000,
      weights: [0.5, 0.5],
      loggingRates: [1, 1],
      seed: seed + 1e6,
    });
    if (healthy.mismatch) falseFlags++;
  }
  return {
    srm_detected_52_48_at_20k: exact.mismatch ? 1 : 0,
    srm_detection_simulated_52_48_rate: detected / c.srmRoutes,
    srm_false_flag_50_50_rate: falseFlags / c.srmRoutes,
  };
}

function powerMetrics(ctx: BenchContext, c: Config): Record<string, number> {
  const [rows] = timed(ctx, 'power simulation', () =>
    simulatePower({
      control: c.baseRate,
      treatment: c.baseRate + c.lift,
      usersPerArm: c.powerUsersPerArm,
      simulations: c.powerSimulations,
      peekEvery: c.peekEvery,
      seed: 5,
    }),
  );
  const lines = ['users/arm  sequential (look every 100)  fixed-horizon t-test  fixed-horizon formula'];
  const metrics: Record<string, number> = {};
  for (const r of rows) {
    lines.push(
      `${String(r.usersPerArm).padStart(9)}  ${r.sequentialPower.toFixed(3).padStart(27)}  ${r.fixedHorizonPower.toFixed(3).padStart(20)}  ${r.fixedHorizonPowerFormula.toFixed(3).padStart(21)}`,
    );
    metrics[`power_sequential_unadjusted_${r.usersPerArm}_per_arm_rate`] = r.sequentialPower;
    metrics[`power_fixed_ttest_${r.usersPerArm}_per_arm_rate`] = r.fixedHorizonPower;
    metrics[`power_fixed_formula_${r.usersPerArm}_per_arm_rate`] = round(r.fixedHorizonPowerFormula, 4);
  }
  ctx.log(`power to detect ${c.baseRate} -> ${c.baseRate + c.lift} thumbs-up rate:\n${lines.join('\n')}`);
  return metrics;
}

/** The analyses compared on the returning users, the product's best (CUPED + tuned mixture) last. */
const returningAnalyses = (lift: number): CupedAnalysis[] => [
  { name: 'unadjusted', cuped: false },
  { name: 'tuned', cuped: false, decisionRule: { expectedEffect: lift } },
  { name: 'cuped', cuped: true },
  { name: 'cuped_tuned', cuped: true, decisionRule: { expectedEffect: lift } },
];

/**
 * Power and A/A false-positive rates on returning users, every analysis on the same simulated
 * users, through decideExperiment (power: it says ship; A/A: the always-valid p reaches 0.05).
 */
function returningMetrics(ctx: BenchContext, c: Config): Record<string, number> {
  const r = c.returning;
  const analyses = returningAnalyses(c.lift);
  const [power, powerSeconds] = timed(ctx, `${r.powerSimulations} returning-user power runs`, () =>
    simulateCupedExperiments({
      population: r.population,
      lift: c.lift,
      analyses,
      experiments: r.powerSimulations,
      usersPerExperiment: 2 * Math.max(...r.powerUsersPerArm),
      peekEvery: c.peekEvery,
      seed: 1903,
    }),
  );
  const [aa, aaSeconds] = timed(ctx, `${r.aaExperiments} returning-user A/A runs`, () =>
    simulateCupedExperiments({
      population: r.population,
      lift: 0,
      analyses,
      experiments: r.aaExperiments,
      usersPerExperiment: r.aaUsersPerExperiment,
      peekEvery: c.peekEvery,
      seed: 1930,
    }),
  );
  const metrics: Record<string, number> = {};
  const lines = [`users/arm  ${analyses.map((a) => a.name.padStart(12)).join('')}`];
  for (const n of r.powerUsersPerArm) {
    const rates = power.analyses.map((a) => shippedByRate(a, n));
    lines.push(`${String(n).padStart(9)}  ${rates.map((x) => x.toFixed(3).padStart(12)).join('')}`);
    power.analyses.forEach((a, i) => {
      metrics[`power_returning_${a.name}_${n}_per_arm_rate`] = rates[i]!;
    });
  }
  lines.push(`A/A fpr    ${aa.analyses.map((a) => a.significantRate.toFixed(4).padStart(12)).join('')}`);
  ctx.log(
    `returning users (pre/post correlation ${round(power.prePostCorrelation, 3)}):\n${lines.join('\n')}`,
  );
  for (const a of aa.analyses) metrics[`aa_fpr_returning_${a.name}_rate`] = a.significantRate;
  const best = power.analyses.at(-1)!;
  const bestAa = aa.analyses.at(-1)!;
  // The product's best configuration now: CUPED with the mixture tuned to the expected effect.
  metrics.power_sequential_1000_per_arm_rate = shippedByRate(best, 1000);
  metrics.aa_fpr_sequential = bestAa.significantRate;
  metrics.returning_pre_post_corr = round(power.prePostCorrelation, 4);
  metrics.cuped_variance_reduction_ratio = round(best.meanVarianceReduction, 4);
  metrics.returning_power_simulations_count = r.powerSimulations;
  metrics.returning_aa_experiments_count = r.aaExperiments;
  metrics.returning_simulation_s = round(powerSeconds + aaSeconds, 2);
  return metrics;
}

/**
 * Power and A/A false-positive rates of the implicit metric (`regenerate_rate`, lower is better)
 * through decideExperiment, with the mixture tuned to its default effect, with and without CUPED
 * on the users' pre-period regenerate rate.
 */
function implicitMetrics(ctx: BenchContext, c: Config): Record<string, number> {
  const r = c.implicit;
  const analyses: CupedAnalysis[] = [
    { name: 'tuned', cuped: false, decisionRule: { expectedEffect: r.lift } },
    { name: 'cuped_tuned', cuped: true, decisionRule: { expectedEffect: r.lift } },
  ];
  const run = (lift: number, experiments: number, users: number, seed: number) =>
    simulateCupedExperiments({
      population: r.population,
      metric: 'regenerate_rate',
      lift,
      analyses,
      experiments,
      usersPerExperiment: users,
      peekEvery: c.peekEvery,
      seed,
    });
  const [power, powerSeconds] = timed(ctx, `${r.powerSimulations} regenerate-rate power runs`, () =>
    run(r.lift, r.powerSimulations, 2 * Math.max(...r.powerUsersPerArm), 1919),
  );
  const [aa, aaSeconds] = timed(ctx, `${r.aaExperiments} regenerate-rate A/A runs`, () =>
    run(0, r.aaExperiments, r.aaUsersPerExperiment, 1991),
  );
  const metrics: Record<string, number> = {};
  const lines = [`users/arm  ${analyses.map((a) => a.name.padStart(12)).join('')}`];
  for (const n of r.powerUsersPerArm) {
    const rates = power.analyses.map((a) => shippedByRate(a, n));
    lines.push(`${String(n).padStart(9)}  ${rates.map((x) => x.toFixed(3).padStart(12)).join('')}`);
    power.analyses.forEach((a, i) => {
      metrics[`power_implicit_${a.name}_${n}_per_arm_rate`] = rates[i]!;
    });
  }
  lines.push(`A/A fpr    ${aa.analyses.map((a) => a.significantRate.toFixed(4).padStart(12)).join('')}`);
  ctx.log(
    `regenerate rate ${r.population.rate} -> ${round(r.population.rate - r.lift, 3)} (pre/post correlation ${round(power.prePostCorrelation, 3)}):\n${lines.join('\n')}`,
  );
  for (const a of aa.analyses) metrics[`aa_fpr_implicit_${a.name}_rate`] = a.significantRate;
  // The product's configuration for an implicit metric: CUPED and the tuned mixture.
  const best = power.analyses.at(-1)!;
  metrics.power_implicit_regenerate_1000_per_arm_rate = shippedByRate(best, 1000);
  metrics.aa_fpr_implicit_regenerate = aa.analyses.at(-1)!.significantRate;
  metrics.implicit_pre_post_corr = round(power.prePostCorrelation, 4);
  metrics.implicit_cuped_variance_reduction_ratio = round(best.meanVarianceReduction, 4);
  metrics.implicit_power_simulations_count = r.powerSimulations;
  metrics.implicit_aa_experiments_count = r.aaExperiments;
  metrics.implicit_simulation_s = round(powerSeconds + aaSeconds, 2);
  return metrics;
}

/**
 * Power and A/A false-positive rate of net_dissatisfaction against regenerate_rate, on the same
 * users and answers (one seed per kind of run: the answer model draws the same numbers for either
 * metric), at one true improvement.
 */
function implicitNetMetrics(ctx: BenchContext, c: Config): Record<string, number> {
  const r = c.implicitNet;
  const moved = (m: 'regenerate_rate' | 'net_dissatisfaction') =>
    (m === 'regenerate_rate'
      ? r.answers.regenerateIfDisliked
      : r.answers.regenerateIfDisliked + r.answers.copyIfLiked) *
    r.answers.unratedShare *
    r.lift;
  const metrics: Record<string, number> = {};
  const lines = [`users/arm  ${'regenerate'.padStart(12)}${'net'.padStart(12)}`];
  const rates: Record<string, number[]> = {};
  let seconds = 0;
  for (const [name, metric] of [
    ['regenerate', 'regenerate_rate'],
    ['net', 'net_dissatisfaction'],
  ] as const) {
    const analyses: CupedAnalysis[] = [
      { name: 'cuped_tuned', cuped: true, decisionRule: { expectedEffect: moved(metric) } },
    ];
    const run = (lift: number, experiments: number, users: number, seed: number) =>
      simulateCupedExperiments({
        population: r.population,
        answers: r.answers,
        metric,
        lift,
        analyses,
        experiments,
        usersPerExperiment: users,
        peekEvery: c.peekEvery,
        seed,
      });
    const [power, powerSeconds] = timed(
      ctx,
      `${r.powerSimulations} ${metric} power runs (answer model)`,
      () => run(r.lift, r.powerSimulations, 2 * Math.max(...r.powerUsersPerArm), 2019),
    );
    const [aa, aaSeconds] = timed(ctx, `${r.aaExperiments} ${metric} A/A runs (answer model)`, () =>
      run(0, r.aaExperiments, r.aaUsersPerExperiment, 2091),
    );
    seconds += powerSeconds + aaSeconds;
    rates[name] = r.powerUsersPerArm.map((n) => shippedByRate(power.analyses[0]!, n));
    r.powerUsersPerArm.forEach((n, i) => {
      metrics[`power_implicit_${name}_answers_${n}_per_arm_rate`] = rates[name]![i]!;
    });
    metrics[`aa_fpr_implicit_${name}_answers_rate`] = aa.analyses[0]!.significantRate;
  }
  r.powerUsersPerArm.forEach((n, i) => {
    lines.push(
      `${String(n).padStart(9)}  ${rates.regenerate![i]!.toFixed(3).padStart(12)}${rates.net![i]!.toFixed(3).padStart(12)}`,
    );
  });
  ctx.log(
    `true quality ${r.population.rate} -> ${round(r.population.rate + r.lift, 3)}, answer model:\n${lines.join('\n')}`,
  );
  metrics.power_implicit_net_1000_per_arm_rate = metrics.power_implicit_net_answers_1000_per_arm_rate!;
  metrics.aa_fpr_implicit_net = metrics.aa_fpr_implicit_net_answers_rate!;
  metrics.implicit_net_power_simulations_count = r.powerSimulations;
  metrics.implicit_net_aa_experiments_count = r.aaExperiments;
  metrics.implicit_net_simulation_s = round(seconds, 2);
  return metrics;
}

export const experimentsBench: Bench = {
  name: 'experiments',
  summary: 'A/A false positive rates under peeking, SRM detection, power vs sample size (seeded simulation)',
  keyMetrics: [
    'power_sequential_1000_per_arm_rate',
    'aa_fpr_sequential',
    'power_implicit_regenerate_1000_per_arm_rate',
    'aa_fpr_implicit_regenerate',
    'power_implicit_net_1000_per_arm_rate',
    'aa_fpr_implicit_net',
    'power_returning_unadjusted_1000_per_arm_rate',
    'power_sequential_unadjusted_1000_per_arm_rate',
    'cuped_variance_reduction_ratio',
    'aa_fpr_naive_ttest',
    'aa_fpr_user_level',
    'aa_fpr_event_level_clustered',
    'srm_detected_52_48_at_20k',
  ],
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const c = ctx.tiny ? TINY : FULL;
    const metrics = {
      ...aaMetrics(ctx, c),
      ...clusteredAaMetrics(ctx, c),
      ...srmMetrics(ctx, c),
      ...powerMetrics(ctx, c),
      ...returningMetrics(ctx, c),
      ...implicitMetrics(ctx, c),
      ...implicitNetMetrics(ctx, c),
    };
    const n = c.implicitNet;
    const p = c.returning.population;
    const notes =
      `${c.aaExperiments} A/A experiments of ${c.usersPerExperiment} users at a ${c.baseRate} thumbs-up rate (one thumb per user), ` +
      `looked at after every ${c.peekEvery} users; a false positive is any look with p <= 0.05 (mSPRT, ` +
      `tau = 0.1 sd) or p < 0.05 (Welch t-test). Power: ${c.baseRate} -> ${c.baseRate + c.lift}, ` +
      `${c.powerSimulations} simulations. SRM: 50/50 weights, 10,400 vs 9,600 users, threshold p < 0.001; ` +
      `simulated routes losing 1 in 13 of one arm's logs, and healthy ones, ${c.srmRoutes} each. ` +
      `Clustered A/A: ${c.clustered.experiments} experiments of ${c.clustered.usersPerExperiment} users, each ` +
      `rating 1 to ${c.clustered.maxRatingsPerUser} answers (uniform) with their own propensity ` +
      `Beta(${c.baseRate} x ${c.clustered.concentration}, ${round(1 - c.baseRate, 2)} x ${c.clustered.concentration}) ` +
      `(intra-user correlation ${round(1 / (c.clustered.concentration + 1), 2)}), looked at after every ` +
      `${c.peekEvery} users; user level: decideExperiment on each user's share of thumbs up ` +
      '(userMeanMetric, as experimentStatus passes it), a false positive when the always-valid p of the ' +
      'primary metric reaches 0.05 at any look; event level: the same mSPRT on the ratings as one ' +
      'proportion (the analysis before the user was the unit). ' +
      `Returning users (issue 19): propensity Beta(${round(p.rate * p.concentration, 2)}, ${round((1 - p.rate) * p.concentration, 2)}) per user, ` +
      `0 to ${p.maxPrePeriodRatingsPerUser} pre-period ratings and 1 to ${p.maxRatingsPerUser} during the experiment; treatment ` +
      `+${c.lift} (p -> p + lift (1 - p) / (1 - rate)); ${c.returning.powerSimulations} power runs to ` +
      `${Math.max(...c.returning.powerUsersPerArm)} users per arm and ${c.returning.aaExperiments} A/A runs of ` +
      `${c.returning.aaUsersPerExperiment} users, looked at after every ${c.peekEvery} users by decideExperiment: ` +
      'unadjusted (tau = 0.1 sd), tuned (expectedEffect = lift: tau = 0.05), cuped (cupedAdjust, theta re-estimated ' +
      "at every look), cuped_tuned (both; the product's best: power_sequential_1000_per_arm_rate and aa_fpr_sequential). " +
      'Power = share that decideExperiment shipped by n users per arm; A/A = share whose always-valid p reached 0.05. ' +
      '*_unadjusted_* without "returning": the one-thumb-per-user runs above, the configuration before issue 19. ' +
      `Implicit (issue 19, the loop under real feedback): each user's regenerate rate (lower is better; every user served is a unit), ` +
      `propensity Beta(${round(c.implicit.population.rate * c.implicit.population.concentration, 2)}, ${round((1 - c.implicit.population.rate) * c.implicit.population.concentration, 2)}) per user, ` +
      `0 to ${c.implicit.population.maxPrePeriodRatingsPerUser} answers before the experiment and 1 to ${c.implicit.population.maxRatingsPerUser} during it; treatment ` +
      `-${c.implicit.lift} (p -> p (1 - lift / rate)); ${c.implicit.powerSimulations} power runs to ${Math.max(...c.implicit.powerUsersPerArm)} users per arm and ` +
      `${c.implicit.aaExperiments} A/A runs of ${c.implicit.aaUsersPerExperiment} users, looked at after every ${c.peekEvery} users by decideExperiment on ` +
      'regenerate_rate with expectedEffect = lift (tuned) and with CUPED on the pre-period rate (cuped_tuned: power_implicit_regenerate_1000_per_arm_rate, aa_fpr_implicit_regenerate). ' +
      `Net dissatisfaction (net_dissatisfaction: per answer +1 regenerated, edited or abandoned, -1 only copied, 0 neither; lower is better) against regenerate_rate on the same users and answers: ` +
      `each user likes answers with propensity Beta(${round(n.population.rate * n.population.concentration, 2)}, ${round((1 - n.population.rate) * n.population.concentration, 2)}), ` +
      `${Math.round(n.answers.unratedShare * 100)}% of answers unrated, an unrated answer copied ${n.answers.copyIfLiked} of the time when liked and regenerated ${n.answers.regenerateIfDisliked} when not (the realistic demo's people, core simulate/rate.ts); ` +
      `0 to ${n.population.maxPrePeriodRatingsPerUser} answers before and 1 to ${n.population.maxRatingsPerUser} during; treatment +${n.lift} true quality; ${n.powerSimulations} power runs to ${Math.max(...n.powerUsersPerArm)} users per arm and ` +
      `${n.aaExperiments} A/A runs of ${n.aaUsersPerExperiment} users per metric, CUPED, each mixture tuned to what the treatment moves its metric by under the model ` +
      '(power_implicit_{regenerate,net}_answers_*_per_arm_rate, aa_fpr_implicit_{regenerate,net}_answers_rate; power_implicit_net_1000_per_arm_rate and aa_fpr_implicit_net the net rows at 1,000 per arm). ' +
      'Seeded: the numbers are the same on every run.';
    return { metrics, notes };
  },
};
