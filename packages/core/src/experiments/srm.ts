/**
 * Sample ratio mismatch: the users each variant received, tested against the configured traffic
 * weights by a chi-square goodness-of-fit test. A mismatch means assignment or logging is broken
 * (a variant that crashes before logging, a bot filter that hits one arm), and then no metric
 * comparison of the experiment can be trusted, however significant. The threshold is strict
 * (p < 0.001 by default) because the check runs on every look of every experiment.
 */
import { chiSquareSurvival } from './special.js';

export interface SrmVariant {
  name: string;
  users: number;
  /** Configured traffic weight (any positive scale; normalized here). */
  weight: number;
}

export interface SampleRatioMismatchResult {
  chiSquare: number;
  degreesOfFreedom: number;
  pValue: number;
  /** pValue < threshold. */
  mismatch: boolean;
  threshold: number;
  variants: {
    name: string;
    users: number;
    expectedUsers: number;
    observedShare: number;
    expectedShare: number;
  }[];
}

export function sampleRatioMismatch(
  variants: readonly SrmVariant[],
  options: { threshold?: number } = {},
): SampleRatioMismatchResult {
  const threshold = options.threshold ?? 0.001;
  const totalWeight = variants.reduce((s, v) => s + v.weight, 0);
  const totalUsers = variants.reduce((s, v) => s + v.users, 0);
  if (variants.some((v) => v.weight < 0 || v.users < 0) || !(totalWeight > 0)) {
    throw new Error('sampleRatioMismatch: weights and users must be >= 0, with some weight > 0');
  }
  const rows = variants.map((v) => ({
    name: v.name,
    users: v.users,
    expectedShare: v.weight / totalWeight,
    expectedUsers: (totalUsers * v.weight) / totalWeight,
    observedShare: totalUsers > 0 ? v.users / totalUsers : 0,
  }));
  // Users on a variant with weight 0 cannot happen under correct assignment: certain mismatch.
  const impossible = rows.some((r) => r.expectedShare === 0 && r.users > 0);
  const tested = rows.filter((r) => r.expectedShare > 0);
  const chiSquare = impossible
    ? Number.POSITIVE_INFINITY
    : tested.reduce((s, r) => s + (r.users - r.expectedUsers) ** 2 / r.expectedUsers, 0);
  const degreesOfFreedom = Math.max(1, tested.length - 1);
  const pValue = totalUsers === 0 ? 1 : impossible ? 0 : chiSquareSurvival(chiSquare, degreesOfFreedom);
  return { chiSquare, degreesOfFreedom, pValue, mismatch: pValue < threshold, threshold, variants: rows };
}
