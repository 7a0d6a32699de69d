/**
 * Per-arm summaries that the tests consume: count, mean and sample variance. They come from SQL
 * aggregates (COUNT, SUM, SUM of squares) or from raw values, so experiments never need a row loop
 * over every interaction.
 */

export interface ArmMoments {
  n: number;
  mean: number;
  /** Sample variance (divisor n - 1); 0 when n < 2. */
  variance: number;
}

/** Moments of raw values (Welford's update: stable where sum-of-squares would cancel). */
export function momentsOf(values: readonly number[]): ArmMoments {
  let mean = 0;
  let m2 = 0;
  values.forEach((v, i) => {
    const delta = v - mean;
    mean += delta / (i + 1);
    m2 += delta * (v - mean);
  });
  const n = values.length;
  return { n, mean: n ? mean : 0, variance: n > 1 ? m2 / (n - 1) : 0 };
}

/** Moments from SQL-style sums: COUNT(x), SUM(x), SUM(x * x). */
export function momentsFromSums(n: number, sum: number, sumOfSquares: number): ArmMoments {
  if (n <= 0) return { n: 0, mean: 0, variance: 0 };
  const mean = sum / n;
  // Clamp the tiny negative values that cancellation can leave for a constant metric.
  const variance = n > 1 ? Math.max(0, (sumOfSquares - n * mean * mean) / (n - 1)) : 0;
  return { n, mean, variance };
}

/**
 * Moments of a 0/1 metric (thumbs up) for the normal-theory tests. The variance is that of the
 * rate shrunk toward 1/2 by one pseudo-success and one pseudo-failure: an arm with all thumbs up
 * (or all down) would otherwise have variance 0 and make any difference look infinitely certain.
 */
export function proportionMoments(successes: number, trials: number): ArmMoments {
  if (trials <= 0) return { n: 0, mean: 0, variance: 0.25 };
  const shrunk = (successes + 1) / (trials + 2);
  return { n: trials, mean: successes / trials, variance: shrunk * (1 - shrunk) };
}
