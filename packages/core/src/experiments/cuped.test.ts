import { describe, expect, it } from 'vitest';
import { cupedAdjust, cupedArmSums } from './cuped.js';
import { decideExperiment } from './decision.js';
import { shippedByRate, simulateCupedExperiments } from './simulate-cuped.js';
import { userMeanMetric } from './users.js';

// Users as (experiment mean y, pre-period mean x or null for a new user).
const control = [
  { outcome: 1, covariate: 0.8 },
  { outcome: 0.5, covariate: 0.4 },
  { outcome: 0, covariate: 0 },
  { outcome: 1, covariate: null },
];
const treatment = [
  { outcome: 1, covariate: 1 },
  { outcome: 0.5, covariate: 0.2 },
  { outcome: 1, covariate: 0.6 },
];

describe('CUPED regression adjustment (hand-computed)', () => {
  it('estimates theta pooled within arms and adjusts each user by theta (x - x̄)', () => {
    const a = cupedAdjust([cupedArmSums(control), cupedArmSums(treatment)]);
    // x̄ over the 5 users with a pre-period: (0.8 + 0.4 + 0 + 1 + 0.2 + 0.6) / 6 = 0.5 — 6 users.
    expect(a.covariateMean).toBeCloseTo(0.5, 12);
    expect(a.coveredShare).toBeCloseTo(6 / 7, 12);
    // d = x - 0.5, 0 for the new user. Control d: 0.3, -0.1, -0.5, 0; y: 1, 0.5, 0, 1.
    //   Σyd = 0.3 - 0.05 = 0.25, Σd = -0.3, Σy = 2.5, n = 4: Sxy = 0.25 - 2.5(-0.3)/4 = 0.4375
    //   Σd² = 0.09 + 0.01 + 0.25 = 0.35: Sxx = 0.35 - 0.09/4 = 0.3275
    // Treatment d: 0.5, -0.3, 0.1; y: 1, 0.5, 1.
    //   Σyd = 0.5 - 0.15 + 0.1 = 0.45, Σd = 0.3, Σy = 2.5, n = 3: Sxy = 0.45 - 0.25 = 0.2
    //   Σd² = 0.25 + 0.09 + 0.01 = 0.35: Sxx = 0.35 - 0.03 = 0.32
    // theta = 0.6375 / 0.6475
    const theta = 0.6375 / 0.6475;
    expect(a.theta).toBeCloseTo(theta, 12);
    // Adjusted control: 1 - 0.3θ, 0.5 + 0.1θ, 0.5θ, 1 (the new user as is).
    const adj = [1 - 0.3 * theta, 0.5 + 0.1 * theta, 0.5 * theta, 1];
    const c = userMeanMetric(a.arms[0]!);
    if (c.kind !== 'mean') throw new Error('mean metric expected');
    const mean = adj.reduce((s, v) => s + v, 0) / 4;
    const variance = adj.reduce((s, v) => s + (v - mean) ** 2, 0) / 3;
    expect(c.n).toBe(4);
    expect(c.mean).toBeCloseTo(mean, 12);
    expect(c.variance).toBeCloseTo(variance, 12);
    // Unadjusted control variance: y = 1, 0.5, 0, 1 -> mean 0.625, variance 0.729167 / 3.
    expect(variance).toBeLessThan(0.6875 / 3);
    // Treatment: 1 - 0.5θ, 0.5 + 0.3θ, 1 - 0.1θ.
    const tAdj = [1 - 0.5 * theta, 0.5 + 0.3 * theta, 1 - 0.1 * theta];
    const tm = tAdj.reduce((s, v) => s + v, 0) / 3;
    const tv = tAdj.reduce((s, v) => s + (v - tm) ** 2, 0) / 2;
    const t = userMeanMetric(a.arms[1]!);
    if (t.kind !== 'mean') throw new Error('mean metric expected');
    expect(t.mean).toBeCloseTo(tm, 12);
    expect(t.variance).toBeCloseTo(tv, 12);
    // Variance reduction of the difference: 1 - (v_c/4 + v_t/3) / (0.6875/3/4 + (1/6)/2/3).
    const before = 0.6875 / 3 / 4 + 1 / 6 / 2 / 3;
    expect(a.varianceReduction).toBeCloseTo(1 - (variance / 4 + tv / 3) / before, 12);
    expect(a.varianceReduction).toBeGreaterThan(0.3);
  });

  it('leaves the outcomes alone when no user has a pre-period or the covariate is constant', () => {
    const none = cupedAdjust([
      cupedArmSums(control.map((u) => ({ ...u, covariate: null }))),
      cupedArmSums(treatment.map((u) => ({ ...u, covariate: null }))),
    ]);
    expect(none.theta).toBe(0);
    expect(none.varianceReduction).toBe(0);
    expect(none.arms[0]).toEqual(cupedArmSums(control).outcome);
    const flat = cupedAdjust([
      cupedArmSums(control.map((u) => ({ ...u, covariate: 0.5 }))),
      cupedArmSums(treatment.map((u) => ({ ...u, covariate: 0.5 }))),
    ]);
    expect(flat.theta).toBe(0);
    expect(flat.arms[1]!.sum).toBeCloseTo(2.5, 12);
  });

  it('does not move the difference of means when x̄ is the same in both arms (theta cannot absorb the effect)', () => {
    // Treatment = control + 0.2 on every user, same covariates: the adjusted difference stays 0.2.
    const base = [0.1, 0.4, 0.5, 0.9].map((x, i) => ({
      outcome: 0.2 + 0.6 * x + (i % 2) * 0.05,
      covariate: x,
    }));
    const a = cupedAdjust([
      cupedArmSums(base),
      cupedArmSums(base.map((u) => ({ ...u, outcome: u.outcome + 0.2 }))),
    ]);
    expect(a.arms[1]!.sum / 4 - a.arms[0]!.sum / 4).toBeCloseTo(0.2, 12);
    // Both arms have the same within-arm spread, so theta is the control's own least-squares slope.
    const xs = base.map((u) => u.covariate);
    const ys = base.map((u) => u.outcome);
    const mx = xs.reduce((s, v) => s + v, 0) / 4;
    const my = ys.reduce((s, v) => s + v, 0) / 4;
    const slope =
      xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0) / xs.reduce((s, x) => s + (x - mx) ** 2, 0);
    expect(a.theta).toBeCloseTo(slope, 12);
  });
});

describe('the mixture tuned to the expected effect', () => {
  it('sets the mSPRT tau to expectedEffect in metric units', () => {
    const arm = (name: string, mean: number) => ({
      name,
      weight: 1,
      users: 400,
      metrics: { m: { kind: 'mean' as const, n: 400, mean, variance: 0.2 } },
    });
    const data = { control: 'a', variants: [arm('a', 0.6), arm('b', 0.66)] };
    const tuned = decideExperiment(data, { primaryMetric: 'm', expectedEffect: 0.05 });
    const wide = decideExperiment(data, { primaryMetric: 'm', expectedEffect: 5 });
    // The same evidence under a mixture centred on far larger effects than this one is weaker.
    expect(tuned.comparisons[0]!.sequentialPValue).toBeLessThan(wide.comparisons[0]!.sequentialPValue);
    expect(() => decideExperiment(data, { primaryMetric: 'm', expectedEffect: 0 })).toThrow();
  });
});

describe('CUPED keeps the always-valid guarantee (seeded simulation)', () => {
  const population = { rate: 0.6, concentration: 2, maxRatingsPerUser: 3, maxPrePeriodRatingsPerUser: 20 };
  const analyses = [
    { name: 'unadjusted', cuped: false },
    { name: 'cuped_tuned', cuped: true, decisionRule: { expectedEffect: 0.05 } },
  ];

  it('A/A: the adjusted test, theta re-estimated at every look, is significant in at most alpha of the runs', () => {
    const r = simulateCupedExperiments({
      population,
      lift: 0,
      analyses,
      experiments: 200,
      usersPerExperiment: 4000,
      peekEvery: 200,
      seed: 11,
    });
    // 200 runs: 0.05 + about two binomial standard errors (0.015) of slack.
    for (const a of r.analyses) expect(a.significantRate).toBeLessThanOrEqual(0.08);
    expect(r.analyses[1]!.meanVarianceReduction).toBeGreaterThan(0.2);
  });

  it('+5 points: CUPED ships more often by 1,000 users per arm than the unadjusted test', () => {
    const r = simulateCupedExperiments({
      population,
      lift: 0.05,
      analyses,
      experiments: 100,
      usersPerExperiment: 2000,
      peekEvery: 100,
      seed: 12,
    });
    expect(r.prePostCorrelation).toBeGreaterThan(0.45);
    expect(shippedByRate(r.analyses[1]!, 1000)).toBeGreaterThan(shippedByRate(r.analyses[0]!, 1000) + 0.1);
  });
});

describe('an implicit metric (regenerate rate, lower is better) keeps the guarantee (seeded simulation)', () => {
  // The realistic demo's shape: about 10% of answers regenerated, 1 to 5 answers a user.
  const population = { rate: 0.1, concentration: 10, maxRatingsPerUser: 5, maxPrePeriodRatingsPerUser: 3 };
  const analyses = [{ name: 'cuped_tuned', cuped: true, decisionRule: { expectedEffect: 0.03 } }];

  it('A/A: significant in at most alpha of the runs; 3 points fewer regenerations ship, and only that way round', () => {
    const run = (lift: number, experiments: number, seed: number) =>
      simulateCupedExperiments({
        population,
        metric: 'regenerate_rate',
        lift,
        analyses,
        experiments,
        usersPerExperiment: 4000,
        peekEvery: 200,
        seed,
      });
    const aa = run(0, 200, 21);
    expect(aa.analyses[0]!.significantRate).toBeLessThanOrEqual(0.08);
    const better = run(0.03, 60, 22);
    // lower is better: the treatment's lower rate is what ships, in most runs by 2,000 users an arm.
    expect(shippedByRate(better.analyses[0]!, 2000)).toBeGreaterThan(0.6);
    const worse = run(-0.03, 60, 23);
    expect(shippedByRate(worse.analyses[0]!, 2000)).toBe(0);
  });
});

describe('net dissatisfaction against the regenerate rate on the same answers (seeded simulation)', () => {
  // The realistic demo's people: 88% of answers unrated; unrated ones copied 10% of the time when
  // liked, regenerated 15% when not; a third of answers liked before the treatment.
  const population = { rate: 0.33, concentration: 4, maxRatingsPerUser: 5, maxPrePeriodRatingsPerUser: 3 };
  const answers = { unratedShare: 0.88, copyIfLiked: 0.1, regenerateIfDisliked: 0.15 };
  const run = (
    metric: 'regenerate_rate' | 'net_dissatisfaction',
    lift: number,
    experiments: number,
    seed: number,
  ) =>
    simulateCupedExperiments({
      population,
      answers,
      metric,
      lift,
      analyses: [{ name: 'cuped_tuned', cuped: true, decisionRule: { expectedEffect: 0.02 } }],
      experiments,
      usersPerExperiment: 4000,
      peekEvery: 200,
      seed,
    });

  it('A/A: the net outcome is significant in at most alpha of the runs', () => {
    expect(run('net_dissatisfaction', 0, 200, 31).analyses[0]!.significantRate).toBeLessThanOrEqual(0.08);
  });

  it('+10 true points: the net outcome ships more often by 2,000 users an arm than regenerations alone', () => {
    const net = shippedByRate(run('net_dissatisfaction', 0.1, 60, 32).analyses[0]!, 2000);
    const regenerate = shippedByRate(run('regenerate_rate', 0.1, 60, 32).analyses[0]!, 2000);
    expect(net).toBeGreaterThan(regenerate + 0.15);
    // A worse model (10 points less liked) never ships on it.
    expect(shippedByRate(run('net_dissatisfaction', -0.1, 30, 33).analyses[0]!, 2000)).toBe(0);
  });
});
