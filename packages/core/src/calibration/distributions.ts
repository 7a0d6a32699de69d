/** Distribution helpers for intervals and tests. Accuracy is ~1e-7, ample for p-values and bounds. */

/** Complementary error function (Numerical Recipes' Chebyshev fit, fractional error < 1.2e-7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly =
    -1.26551223 +
    t *
      (1.00002368 +
        t *
          (0.37409196 +
            t *
              (0.09678418 +
                t *
                  (-0.18628806 +
                    t *
                      (0.27886807 +
                        t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const r = t * Math.exp(-z * z + poly);
  return x >= 0 ? r : 2 - r;
}

/** P(Z <= x) for a standard normal Z. */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

/** The x with P(Z <= x) = p for a standard normal Z (Acklam's rational approximation). */
export function normalQuantile(p: number): number {
  if (p <= 0) return Number.NEGATIVE_INFINITY;
  if (p >= 1) return Number.POSITIVE_INFINITY;
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716,
    2.506628277459239,
  ];
  const b = [
    -54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572,
  ];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const tail = (q: number) =>
    (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) /
    ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  if (p < 0.02425) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - 0.02425) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
    (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
  );
}

/** P(X > x) for X ~ chi-square with `df` degrees of freedom (Wilson-Hilferty cube-root normal). */
export function chiSquareUpperTail(x: number, df: number): number {
  if (x <= 0) return 1;
  const v = 2 / (9 * df);
  return 1 - normalCdf((Math.cbrt(x / df) - (1 - v)) / Math.sqrt(v));
}

/**
 * One-sided upper confidence bound of a Pearson correlation `r` over `n` pairs (Fisher z), at
 * confidence 1 - `alpha`. NaN when n <= 3.
 */
export function correlationUpperBound(r: number, n: number, alpha: number): number {
  if (n <= 3) return Number.NaN;
  const clamped = Math.max(-0.999999, Math.min(0.999999, r));
  return Math.tanh(Math.atanh(clamped) + normalQuantile(1 - alpha) / Math.sqrt(n - 3));
}

export interface ConfidenceInterval {
  lower: number;
  upper: number;
}

/**
 * Wilson score interval of a proportion (`successes` of `n`): unlike the normal approximation it
 * stays inside [0, 1] and behaves with few ratings or all-up / all-down items. `level` is the
 * two-sided confidence. For n = 0 the interval is [0, 1].
 */
export function wilsonInterval(
  successes: number,
  n: number,
  level = 0.95,
): ConfidenceInterval & { center: number } {
  if (n <= 0) return { lower: 0, upper: 1, center: 0.5 };
  const z = normalQuantile(1 - (1 - level) / 2);
  const p = successes / n;
  const z2n = (z * z) / n;
  const center = (p + z2n / 2) / (1 + z2n);
  const half = (z / (1 + z2n)) * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n));
  return { lower: Math.max(0, center - half), upper: Math.min(1, center + half), center };
}

/** The Wilson interval of thumbs (up = +1, down = -1) on the reward scale [-1, 1]. */
export function thumbsRewardInterval(ups: number, n: number, level = 0.95): ConfidenceInterval {
  const w = wilsonInterval(ups, n, level);
  return { lower: 2 * w.lower - 1, upper: 2 * w.upper - 1 };
}
