import { beforeAll, describe, expect, it } from 'vitest';
import { proportionMoments } from './moments.js';
import { msprtHalfWidth, msprtLogLikelihoodRatio, msprtTest } from './msprt.js';
import {
  type AaSimulationResult,
  type ClusteredAaResult,
  type PowerRow,
  simulateAaPeeking,
  simulateClusteredAa,
  simulatePower,
} from './simulate.js';
import { welchTTest } from './t-test.js';

/** The mixture likelihood ratio by brute-force integration over the mixing distribution. */
function mixtureByIntegration(delta: number, v: number, tau: number): number {
  const steps = 20_000;
  const lo = -12 * tau;
  const h = (24 * tau) / steps;
  let sum = 0;
  for (let i = 0; i <= steps; i++) {
    const theta = lo + i * h;
    const lr = Math.exp((theta * delta - (theta * theta) / 2) / v);
    const prior = Math.exp(-(theta * theta) / (2 * tau * tau)) / (tau * Math.sqrt(2 * Math.PI));
    sum += (i === 0 || i === steps ? 0.5 : 1) * lr * prior;
  }
  return sum * h;
}

describe('mSPRT', () => {
  it('its closed form is the normal-mixture likelihood ratio', () => {
    for (const [delta, v, tau] of [
      [0.03, 1e-4, 0.05],
      [-0.01, 4e-4, 0.02],
      [0.2, 0.01, 0.3],
    ] as const) {
      const closed = Math.exp(msprtLogLikelihoodRatio(delta, v, tau * tau));
      expect(closed / mixtureByIntegration(delta, v, tau)).toBeCloseTo(1, 8);
    }
  });

  it('its interval is the set of null differences it does not reject', () => {
    const control = { n: 2000, mean: 0.6, variance: 0.24 };
    const treatment = { n: 2100, mean: 0.64, variance: 0.23 };
    const r = msprtTest(control, treatment, { alpha: 0.05 });
    for (const edge of [r.interval.lower, r.interval.upper]) {
      const at = msprtTest(control, treatment, { alpha: 0.05, nullDifference: edge, tau: r.tau });
      expect(at.pValue).toBeCloseTo(0.05, 10);
    }
    expect(r.significant).toBe(r.interval.lower > 0 || r.interval.upper < 0);
    expect(msprtHalfWidth(1e-4, 0.0025, 0.05)).toBeGreaterThan(1.96 * 0.01);
  });

  it('carries a running minimum p-value and a running intersection of intervals', () => {
    const first = msprtTest(proportionMoments(330, 500), proportionMoments(300, 500));
    const second = msprtTest(proportionMoments(640, 1000), proportionMoments(630, 1000), {
      previous: first.state,
    });
    expect(second.pValue).toBeLessThanOrEqual(first.pValue);
    expect(second.interval.lower).toBeGreaterThanOrEqual(first.interval.lower);
    expect(second.interval.upper).toBeLessThanOrEqual(first.interval.upper);
  });

  it('claims nothing for a constant metric', () => {
    const r = msprtTest({ n: 50, mean: 1, variance: 0 }, { n: 50, mean: 1, variance: 0 });
    expect(r.pValue).toBe(1);
    expect(r.significant).toBe(false);
  });
});

describe('Welch t-test', () => {
  it('matches scipy.stats.ttest_ind(equal_var=False)', () => {
    const moments = (xs: number[]) => {
      const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
      return { n: xs.length, mean, variance: xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1) };
    };
    // scipy: statistic -1.7028685611389724, pvalue 0.12402819950101833, df 8.682373714614432 (a - b).
    const r = welchTTest(moments([2, 3, 5, 6, 7, 9.1]), moments([1, 2, 3, 4, 5.5]));
    expect(r.t).toBeCloseTo(-1.7028685611389724, 12);
    expect(r.degreesOfFreedom).toBeCloseTo(8.682373714614432, 10);
    expect(r.pValue).toBeCloseTo(0.12402819950101833, 12);
  });
});

describe('A/A experiments looked at after every 100 users', () => {
  // The full 2,000-experiment run of the issue: about 3 s here (bench/experiments/run.ts repeats it).
  let aa: AaSimulationResult;
  beforeAll(() => {
    aa = simulateAaPeeking({
      experiments: 2000,
      usersPerExperiment: 10_000,
      peekEvery: 100,
      rate: 0.6,
      seed: 2026,
    });
  });

  it('the sequential test keeps its false positive rate at or below 5%', () => {
    expect(aa.looksPerExperiment).toBe(100);
    expect(aa.sequentialFalsePositiveRate).toBeLessThanOrEqual(0.05);
  });

  it('the fixed-horizon t-test looked at the same way is far above it', () => {
    expect(aa.naiveFalsePositiveRate).toBeGreaterThanOrEqual(0.25);
    expect(aa.naiveFalsePositiveRate).toBeGreaterThan(5 * aa.sequentialFalsePositiveRate);
  });
});

describe('clustered A/A experiments: users rate 1 to 20 answers with their own propensity', () => {
  // 400 experiments of 3,000 users (a few seconds); bench/experiments runs 2,000 of 10,000 users.
  let aa: ClusteredAaResult;
  beforeAll(() => {
    aa = simulateClusteredAa({
      experiments: 400,
      usersPerExperiment: 3000,
      peekEvery: 100,
      rate: 0.6,
      concentration: 4,
      maxRatingsPerUser: 20,
      seed: 14,
    });
  });

  it('the per-user analysis the product runs keeps its false positive rate at or below 5%', () => {
    expect(aa.meanRatingsPerUser).toBeGreaterThan(9);
    expect(aa.userLevelFalsePositiveRate).toBeLessThanOrEqual(0.05);
  });

  it('treating each rating as an independent unit does not: far above 5%', () => {
    expect(aa.eventLevelFalsePositiveRate).toBeGreaterThan(0.2);
  });
});

describe('power to detect a 5-point lift (60% -> 65% thumbs up)', () => {
  let rows: PowerRow[];
  beforeAll(() => {
    rows = simulatePower({
      control: 0.6,
      treatment: 0.65,
      usersPerArm: [500, 1000, 2000, 4000, 6000],
      simulations: 200,
      peekEvery: 100,
      seed: 7,
    });
  });

  it('grows with sample size and reaches 80% by 4,000 users per arm', () => {
    for (let i = 1; i < rows.length; i++)
      expect(rows[i]!.sequentialPower).toBeGreaterThanOrEqual(rows[i - 1]!.sequentialPower);
    expect(rows.find((r) => r.usersPerArm === 4000)!.sequentialPower).toBeGreaterThanOrEqual(0.8);
    expect(rows[0]!.sequentialPower).toBeLessThan(0.5);
  });

  it('the simulated fixed-horizon power matches the formula (within 4 standard errors)', () => {
    for (const r of rows) {
      const p = r.fixedHorizonPowerFormula;
      const se = Math.sqrt((p * (1 - p)) / 200);
      expect(Math.abs(r.fixedHorizonPower - p)).toBeLessThanOrEqual(4 * se + 0.01);
    }
  });
});
