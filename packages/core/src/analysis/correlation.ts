/** Pearson correlation from running sums, as SQL can aggregate them (count, sums, sums of squares and products). */
export interface PairSums {
  n: number;
  sumX: number;
  sumY: number;
  sumXX: number;
  sumYY: number;
  sumXY: number;
}

export function pearsonFromSums(s: PairSums): number | null {
  const cov = s.n * s.sumXY - s.sumX * s.sumY;
  const vx = s.n * s.sumXX - s.sumX * s.sumX;
  const vy = s.n * s.sumYY - s.sumY * s.sumY;
  if (s.n < 3 || vx <= 0 || vy <= 0) return null;
  return cov / Math.sqrt(vx * vy);
}
