/** Text-shape filters: length bounds, length outliers, degenerate repetition. */

export interface LengthBounds {
  minChars?: number;
  maxChars?: number;
}

export function lengthViolation(text: string, bounds: LengthBounds): string | undefined {
  if (bounds.minChars !== undefined && text.length < bounds.minChars)
    return `shorter than ${bounds.minChars} characters (${text.length})`;
  if (bounds.maxChars !== undefined && text.length > bounds.maxChars)
    return `longer than ${bounds.maxChars} characters (${text.length})`;
  return undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Indices whose log-length is an outlier by the robust z-score (median and MAD, which a few
 * huge outliers cannot drag along the way a mean and standard deviation would), and at least
 * `minRatio` times longer or shorter than the median: when lengths barely vary, a z-score alone
 * would call ordinary answers outliers.
 */
export function lengthOutliers(
  texts: readonly string[],
  maxRobustZ = 3.5,
  minRatio = 3,
): Map<number, string> {
  const out = new Map<number, string>();
  if (texts.length < 10) return out;
  const logs = texts.map((t) => Math.log1p(t.length));
  const med = median(logs);
  const deviations = logs.map((x) => Math.abs(x - med));
  // When most lengths are equal the MAD is 0; the mean absolute deviation (scaled to match the
  // MAD's consistency constant) still separates the odd one out.
  const mad = median(deviations) || (deviations.reduce((a, b) => a + b, 0) / deviations.length) * 0.7979;
  if (mad === 0) return out;
  logs.forEach((x, i) => {
    const z = (0.6745 * (x - med)) / mad;
    if (Math.abs(z) > maxRobustZ && Math.abs(x - med) >= Math.log(minRatio))
      out.set(i, `length ${texts[i]!.length} is an outlier (robust z ${z.toFixed(1)})`);
  });
  return out;
}

/** Share of word 3-grams that repeat an earlier one: high for looping, degenerate generations. */
export function repetitionRatio(text: string): number {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length < 6) return 0;
  const seen = new Set<string>();
  let repeated = 0;
  for (let i = 0; i + 3 <= words.length; i++) {
    const g = `${words[i]} ${words[i + 1]} ${words[i + 2]}`;
    if (seen.has(g)) repeated++;
    else seen.add(g);
  }
  return repeated / (words.length - 2);
}
