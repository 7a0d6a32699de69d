import { describe, expect, it } from 'vitest';
import { decideExperiment } from './decision.js';
import { userMeanMetric, userMeanSummary, userMetricSums } from './users.js';

// Thumbs as 1 (up) and 0 (down), one list per user. Control's first user rates 10 answers.
const control = [[1, 1, 1, 1, 1, 1, 1, 1, 1, 0], [0], [1, 0]];
const treatment = [[1, 1], [0, 1, 1, 1], [1, 0, 0], [1]];

describe('per-user metrics (the user is the unit)', () => {
  it('sums each user’s mean once, however many answers the user rated', () => {
    // User means 0.9, 0, 0.5: Σ = 1.4, Σ² = 0.81 + 0 + 0.25 = 1.06, over 3 users and 13 ratings.
    const s = userMetricSums(control);
    expect(s).toMatchObject({ users: 3, events: 13 });
    expect(s.sum).toBeCloseTo(1.4, 12);
    expect(s.sumOfSquares).toBeCloseTo(1.06, 12);
    expect(userMetricSums([[], [1]])).toEqual({ users: 1, events: 1, sum: 1, sumOfSquares: 1 });
  });

  it('gives the engines the mean and sample variance of the user means (hand-computed)', () => {
    // Control: mean 1.4 / 3 = 0.46667 (the 13 ratings' rate, 10/13 = 0.769, is the heavy user's);
    // variance ((0.9 - m)² + m² + (0.5 - m)²) / 2 = 0.40667 / 2 = 0.20333.
    const c = userMeanMetric(userMetricSums(control));
    expect(c.kind).toBe('mean');
    if (c.kind !== 'mean') return;
    expect(c.n).toBe(3);
    expect(c.mean).toBeCloseTo(0.4666667, 6);
    expect(c.variance).toBeCloseTo(0.2033333, 6);
    // Treatment: means 1, 0.75, 1/3, 1: mean 0.77083, variance 0.296875 / 3 = 0.098958.
    const t = userMeanMetric(userMetricSums(treatment));
    if (t.kind !== 'mean') return;
    expect(t.n).toBe(4);
    expect(t.mean).toBeCloseTo(0.7708333, 6);
    expect(t.variance).toBeCloseTo(0.0989583, 6);
  });

  it('is what the mSPRT and the Bayesian engine compare', () => {
    const d = decideExperiment(
      {
        control: 'a',
        variants: [
          { name: 'a', weight: 1, users: 3, metrics: { up: userMeanMetric(userMetricSums(control)) } },
          { name: 'b', weight: 1, users: 4, metrics: { up: userMeanMetric(userMetricSums(treatment)) } },
        ],
      },
      { primaryMetric: 'up', minObservationsPerArm: 2 },
    );
    const c = d.comparisons[0]!;
    // Difference 0.30417; standard error sqrt(0.20333 / 3 + 0.098958 / 4) = 0.30417 over users.
    expect(c.difference).toBeCloseTo(0.3041667, 6);
    // Normal posterior: ±1.95996 × 0.30417 and P(better) = Φ(1) = 0.84134.
    expect(c.credibleInterval.lower).toBeCloseTo(-0.291989, 6);
    expect(c.credibleInterval.upper).toBeCloseTo(0.9003224, 6);
    expect(c.probabilityToBeat).toBeCloseTo(0.8413447, 6);
    // Seven users cannot show anything with the always-valid interval.
    expect(c.sequentialInterval.lower).toBeLessThan(0);
    expect(d.decision).toBe('keep_running');
  });

  it('summarizes an arm for people: users, ratings, mean of user means and its interval', () => {
    const s = userMeanSummary(userMetricSums(control));
    expect(s).toMatchObject({ users: 3, events: 13 });
    expect(s.mean).toBeCloseTo(0.4666667, 6);
    // 0.46667 ± 1.95996 × sqrt(0.20333 / 3).
    expect(s.interval!.lower).toBeCloseTo(-0.0435936, 6);
    expect(s.interval!.upper).toBeCloseTo(0.9769269, 6);
    expect(s.standardError).toBeCloseTo(0.2603417, 6);
    expect(userMeanSummary({ users: 0, events: 0, sum: 0, sumOfSquares: 0 })).toEqual({
      users: 0,
      events: 0,
      mean: null,
      standardError: null,
      interval: null,
    });
    expect(userMeanSummary(userMetricSums([[1, 0]])).interval).toBeNull();
  });
});
