/**
 * The user is the unit of an experiment. The gateway randomizes end users (sticky assignment), so
 * users, not rating events, are the independent draws: one user's ratings share that user's taste
 * and mood, and a test that treats each rating as independent underestimates the variance and
 * finds differences that are not there (bench/experiments measures by how much).
 *
 * Each user's outcome on a metric is the mean of that user's outcomes (the share of thumbs up
 * among the user's thumbs, the mean of the user's stars or of the calibrated rewards of the
 * answers the user rated), and an arm's value is the mean of its users' means. We chose this over
 * the ratio metric (sum of ups / sum of ratings over users, with the delta method for its
 * variance) because:
 * - the user means of an arm are independent and identically distributed, so their sample mean
 *   and sample variance are exactly what the mSPRT and the normal posterior assume, with no
 *   linearization (the delta method is a first-order approximation that needs the per-user
 *   denominators to vary little relative to their mean, and users here rate 1 to hundreds of
 *   answers);
 * - every user counts once: a handful of heavy raters (or a script) cannot carry the result,
 *   which in a ratio metric they do in proportion to their ratings;
 * - the same three sums (users, Σ mean, Σ mean²) serve every metric, and the later additions
 *   (CUPED: Σ pre-period mean, its square and its product with the mean; guardrails) are more
 *   sums of the same per-user rows.
 * What it estimates is "how satisfied is the average user", which differs from "what share of
 * ratings is a thumbs up" when heavy raters are happier or unhappier than the rest; the event
 * totals are still reported beside it.
 */
import { normalQuantile } from '../calibration/distributions.js';
import type { ExperimentMetricData } from './decision.js';
import { momentsFromSums } from './moments.js';

/** One metric of one arm summed over its users: what the store computes with GROUP BY user. */
export interface UserMetricSums {
  /** Users with at least one outcome of the metric: the units of the test. */
  users: number;
  /** The outcomes behind them (ratings, or rated answers for the reward): shown, never tested. */
  events: number;
  /** Σ over users of the user's mean outcome. */
  sum: number;
  /** Σ over users of the square of the user's mean outcome. */
  sumOfSquares: number;
}

export const emptyUserMetricSums: UserMetricSums = Object.freeze({
  users: 0,
  events: 0,
  sum: 0,
  sumOfSquares: 0,
});

/** Per-user sums from each user's raw outcomes: the reference the SQL is tested against. */
export function userMetricSums(outcomesPerUser: readonly (readonly number[])[]): UserMetricSums {
  const s = { users: 0, events: 0, sum: 0, sumOfSquares: 0 };
  for (const outcomes of outcomesPerUser) {
    if (outcomes.length === 0) continue;
    const mean = outcomes.reduce((a, b) => a + b, 0) / outcomes.length;
    s.users++;
    s.events += outcomes.length;
    s.sum += mean;
    s.sumOfSquares += mean * mean;
  }
  return s;
}

/**
 * The metric as the decision engines take it: n users, the mean of their means and the sample
 * variance of the user means (a mean metric, whatever the outcome's scale, so the mSPRT and the
 * Bayesian engine see the same numbers).
 */
export function userMeanMetric(s: UserMetricSums): ExperimentMetricData {
  return { kind: 'mean', ...momentsFromSums(s.users, s.sum, s.sumOfSquares) };
}

export interface UserMeanSummary {
  users: number;
  events: number;
  /** Mean of the user means; null without users. */
  mean: number | null;
  /** Its standard error, sd of the user means / sqrt(users); null with fewer than 2 users. */
  standardError: number | null;
  /** Normal interval of the mean over users at `level`; null with fewer than 2 users. */
  interval: { lower: number; upper: number } | null;
}

/** What a person reads per arm: users, events, the mean of user means and its interval. */
export function userMeanSummary(s: UserMetricSums, level = 0.95): UserMeanSummary {
  const m = momentsFromSums(s.users, s.sum, s.sumOfSquares);
  const none = { users: m.n, events: s.events, standardError: null, interval: null };
  if (m.n === 0) return { ...none, mean: null };
  if (m.n < 2) return { ...none, mean: m.mean };
  const standardError = Math.sqrt(m.variance / m.n);
  const half = normalQuantile(1 - (1 - level) / 2) * standardError;
  return {
    users: m.n,
    events: s.events,
    mean: m.mean,
    standardError,
    interval: { lower: m.mean - half, upper: m.mean + half },
  };
}
