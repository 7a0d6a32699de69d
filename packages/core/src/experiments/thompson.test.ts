import { describe, expect, it } from 'vitest';
import { probabilityBetaExceeds } from './beta-binomial.js';
import { twoProportionPower, twoProportionSampleSize } from './power.js';
import { thompsonSamplingWeights } from './thompson.js';

describe('Thompson-sampling weights', () => {
  const arms = [
    { kind: 'proportion' as const, successes: 60, trials: 100 },
    { kind: 'proportion' as const, successes: 66, trials: 100 },
  ];

  it('are reproducible for a seed and sum to 1', () => {
    const a = thompsonSamplingWeights(arms, { seed: 42 });
    expect(thompsonSamplingWeights(arms, { seed: 42 })).toEqual(a);
    expect(a[0]! + a[1]!).toBeCloseTo(1, 12);
  });

  it('estimate the exact probability of being best', () => {
    const [, w] = thompsonSamplingWeights(arms, { seed: 1, draws: 40_000, minWeight: 0 });
    const exact = probabilityBetaExceeds({ alpha: 67, beta: 35 }, { alpha: 61, beta: 41 });
    expect(Math.abs(w! - exact)).toBeLessThan(0.01);
  });

  it('keep a floor of traffic on every arm', () => {
    const w = thompsonSamplingWeights(
      [
        { kind: 'proportion', successes: 10, trials: 1000 },
        { kind: 'proportion', successes: 900, trials: 1000 },
        { kind: 'proportion', successes: 500, trials: 1000 },
      ],
      { seed: 3, minWeight: 0.05 },
    );
    expect(Math.min(...w)).toBeCloseTo(0.05, 12);
    expect(w[1]).toBeCloseTo(0.9, 12);
  });

  it('explore arms of means without data first, and honour lower-is-better', () => {
    const fresh = thompsonSamplingWeights(
      [
        { kind: 'mean', n: 100, mean: 4, variance: 1 },
        { kind: 'mean', n: 1, mean: 0, variance: 0 },
      ],
      { seed: 1, minWeight: 0 },
    );
    expect(fresh).toEqual([0, 1]);
    const latency = thompsonSamplingWeights(
      [
        { kind: 'mean', n: 500, mean: 900, variance: 40_000 },
        { kind: 'mean', n: 500, mean: 700, variance: 40_000 },
      ],
      { seed: 1, minWeight: 0, higherIsBetter: false },
    );
    expect(latency[1]).toBeGreaterThan(0.99);
  });
});

describe('fixed-horizon power', () => {
  it('agrees with the textbook sample-size formula', () => {
    // n = (z_a/2 sqrt(2 pbar qbar) + z_b sqrt(p0 q0 + p1 q1))^2 / delta^2 for 0.60 -> 0.65, 80% power.
    const za = 1.959963984540054;
    const zb = 0.8416212335729143;
    const n = (za * Math.sqrt(2 * 0.625 * 0.375) + zb * Math.sqrt(0.6 * 0.4 + 0.65 * 0.35)) ** 2 / 0.05 ** 2;
    expect(
      Math.abs(twoProportionSampleSize({ control: 0.6, treatment: 0.65 }) - Math.ceil(n)),
    ).toBeLessThanOrEqual(1);
    expect(twoProportionPower({ control: 0.6, treatment: 0.65 }, Math.ceil(n))).toBeGreaterThanOrEqual(0.8);
  });
});
