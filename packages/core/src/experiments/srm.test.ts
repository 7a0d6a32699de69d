import { describe, expect, it } from 'vitest';
import { simulateSampleRatio } from './simulate.js';
import { sampleRatioMismatch } from './srm.js';

describe('sample ratio mismatch', () => {
  it('flags a 50/50 route that logged 52/48 of 20,000 users', () => {
    const r = sampleRatioMismatch([
      { name: 'control', users: 10_400, weight: 50 },
      { name: 'candidate', users: 9_600, weight: 50 },
    ]);
    expect(r.chiSquare).toBeCloseTo(32, 12);
    // scipy.stats.chi2.sf(32, 1)
    expect(r.pValue / 1.5417257900280013e-8).toBeCloseTo(1, 10);
    expect(r.mismatch).toBe(true);
  });

  it('flags a simulated route that loses 1 in 13 of one arm’s logs (52/48 expected)', () => {
    const r = simulateSampleRatio({
      users: 20_000,
      weights: [0.5, 0.5],
      loggingRates: [1, 12 / 13],
      seed: 52,
    });
    expect(r.variants[0]!.users + r.variants[1]!.users).toBe(20_000);
    expect(r.mismatch).toBe(true);
  });

  it('rarely flags a healthy route (strict threshold)', () => {
    let flagged = 0;
    for (let seed = 0; seed < 300; seed++) {
      if (simulateSampleRatio({ users: 20_000, weights: [0.5, 0.5], loggingRates: [1, 1], seed }).mismatch)
        flagged++;
    }
    expect(flagged).toBeLessThanOrEqual(2);
  });

  it('matches scipy.stats.chisquare on three unequal weights', () => {
    const r = sampleRatioMismatch([
      { name: 'a', users: 3300, weight: 0.33 },
      { name: 'b', users: 3420, weight: 0.34 },
      { name: 'c', users: 3280, weight: 0.33 },
    ]);
    expect(r.chiSquare).toBeCloseTo(0.23885918003564527, 12);
    expect(r.pValue).toBeCloseTo(0.8874264893026602, 12);
    expect(r.degreesOfFreedom).toBe(2);
    expect(r.mismatch).toBe(false);
  });

  it('treats users on a weight-0 variant as a certain mismatch, and no users as none', () => {
    expect(
      sampleRatioMismatch([
        { name: 'a', users: 10, weight: 1 },
        { name: 'off', users: 1, weight: 0 },
      ]).mismatch,
    ).toBe(true);
    expect(
      sampleRatioMismatch([
        { name: 'a', users: 0, weight: 1 },
        { name: 'b', users: 0, weight: 1 },
      ]).pValue,
    ).toBe(1);
    expect(() => sampleRatioMismatch([{ name: 'a', users: 1, weight: 0 }])).toThrow(/weight/);
  });
});
