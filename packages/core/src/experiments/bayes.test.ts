import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../random.js';
import { betaBinomialComparison, probabilityBetaExceeds } from './beta-binomial.js';
import { momentsFromSums, momentsOf, proportionMoments } from './moments.js';
import { normalMeanComparison } from './normal.js';
import { logBeta } from './special.js';

/** Evan Miller's closed form of P(T > C) for an integer treatment alpha (a sum in log space). */
function closedFormProbability(aC: number, bC: number, aT: number, bT: number): number {
  let sum = 0;
  for (let i = 0; i < aT; i++) {
    sum += Math.exp(logBeta(aC + i, bC + bT) - Math.log(bT + i) - logBeta(1 + i, bT) - logBeta(aC, bC));
  }
  return sum;
}

describe('beta-binomial comparison', () => {
  it('equals the closed form of P(T > C) to 1e-12 on integer posteriors', () => {
    const cases = [
      [1, 1, 1, 1],
      [2, 1, 1, 2],
      [11, 21, 15, 18],
      [101, 201, 120, 180],
      [1, 50, 3, 48],
      [200, 3, 190, 5],
    ] as const;
    for (const [aC, bC, aT, bT] of cases) {
      const p = probabilityBetaExceeds({ alpha: aT, beta: bT }, { alpha: aC, beta: bC });
      expect(Math.abs(p - closedFormProbability(aC, bC, aT, bT))).toBeLessThan(1e-12);
    }
  });

  it('matches 30-digit values where the closed form itself loses digits', () => {
    // mpmath, 40 digits: sum of Evan Miller's series.
    const p = probabilityBetaExceeds({ alpha: 5101, beta: 4901 }, { alpha: 5001, beta: 5001 });
    expect(Math.abs(p - 0.9213512602209371)).toBeLessThan(1e-11);
  });

  it('handles singular priors exactly (Jeffreys, no data)', () => {
    const r = betaBinomialComparison(
      { successes: 0, trials: 0 },
      { successes: 0, trials: 0 },
      { prior: { alpha: 0.5, beta: 0.5 } },
    );
    expect(r.probabilityToBeat).toBeCloseTo(0.5, 13);
    // E|X - Y| / 2 for independent arcsine variables is 2 / pi^2.
    expect(r.expectedLossTreatment).toBeCloseTo(2 / Math.PI ** 2, 12);
    expect(r.differenceInterval.lower).toBeCloseTo(-r.differenceInterval.upper, 10);
  });

  it('stays precise with all thumbs up', () => {
    const r = betaBinomialComparison(
      { successes: 50, trials: 50 },
      { successes: 49, trials: 50 },
      { prior: { alpha: 0.5, beta: 0.5 } },
    );
    expect(r.probabilityToBeat).toBeGreaterThan(0);
    expect(r.probabilityToBeat).toBeLessThan(0.5);
    expect(r.control.interval.upper).toBeLessThanOrEqual(1);
  });

  it('agrees with a seeded Monte Carlo on losses and the difference interval', () => {
    const control = { successes: 600, trials: 1000 };
    const treatment = { successes: 640, trials: 1000 };
    const r = betaBinomialComparison(control, treatment);
    const rng = new SeededRandom(7);
    const draws = 200_000;
    let beat = 0;
    let loss = 0;
    const diffs: number[] = [];
    for (let i = 0; i < draws; i++) {
      const c = rng.beta(601, 401);
      const t = rng.beta(641, 361);
      if (t > c) beat++;
      loss += Math.max(c - t, 0);
      diffs.push(t - c);
    }
    diffs.sort((a, b) => a - b);
    expect(r.probabilityToBeat).toBeCloseTo(beat / draws, 2);
    expect(r.expectedLossTreatment).toBeCloseTo(loss / draws, 4);
    expect(r.differenceInterval.lower).toBeCloseTo(diffs[Math.floor(0.025 * draws)]!, 3);
    expect(r.differenceInterval.upper).toBeCloseTo(diffs[Math.floor(0.975 * draws)]!, 3);
    // The two expected losses differ by exactly the difference of means.
    expect(r.expectedLossControl - r.expectedLossTreatment).toBeCloseTo(r.difference, 12);
    expect(r.treatment.interval.lower).toBeCloseTo(0.6097528613507633, 10);
  });

  it('rejects impossible counts', () => {
    expect(() => betaBinomialComparison({ successes: 5, trials: 3 }, { successes: 1, trials: 2 })).toThrow(
      /successes/,
    );
  });
});

describe('normal comparison of means', () => {
  it('has the closed forms of a normal difference', () => {
    const control = { n: 400, mean: 3.9, variance: 1.21 };
    const treatment = { n: 500, mean: 4.05, variance: 1.0 };
    const r = normalMeanComparison(control, treatment);
    const sd = Math.sqrt(1.21 / 400 + 1.0 / 500);
    expect(r.difference).toBeCloseTo(0.15, 12);
    expect(r.differenceInterval.upper - r.differenceInterval.lower).toBeCloseTo(
      2 * 1.959963984540054 * sd,
      6,
    );
    expect(r.probabilityToBeat).toBeCloseTo(0.982829, 5); // Phi(0.15 / 0.0708872)
    expect(r.expectedLossControl - r.expectedLossTreatment).toBeCloseTo(r.difference, 7);
  });

  it('agrees with a seeded Monte Carlo on the expected loss', () => {
    const r = normalMeanComparison(
      { n: 100, mean: 0.2, variance: 0.5 },
      { n: 120, mean: 0.21, variance: 0.6 },
    );
    const rng = new SeededRandom(11);
    let loss = 0;
    const draws = 200_000;
    for (let i = 0; i < draws; i++) {
      loss += Math.max(rng.normal(0.2, Math.sqrt(0.005)) - rng.normal(0.21, Math.sqrt(0.005)), 0);
    }
    expect(r.expectedLossTreatment).toBeCloseTo(loss / draws, 3);
  });
});

describe('moments', () => {
  it('agree between raw values and SQL sums', () => {
    const values = [1, 5, 3, 4, 4, 2, 5];
    const a = momentsOf(values);
    const b = momentsFromSums(
      values.length,
      24,
      values.reduce((s, v) => s + v * v, 0),
    );
    expect(a.mean).toBeCloseTo(b.mean, 14);
    expect(a.variance).toBeCloseTo(b.variance, 12);
  });

  it('never give a proportion zero variance', () => {
    expect(proportionMoments(20, 20).variance).toBeGreaterThan(0);
    expect(proportionMoments(0, 20).mean).toBe(0);
  });
});
