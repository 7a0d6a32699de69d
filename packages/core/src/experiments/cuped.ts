/**
 * CUPED (Deng, Xu, Kohavi and Walker, "Improving the sensitivity of online controlled experiments
 * by utilizing pre-experiment data", WSDM 2013): regression adjustment of each user's outcome on
 * that user's outcome of the same metric before the experiment started.
 *
 * A user's experiment outcome y (the user's mean, users.ts) is replaced by
 *
 *   y' = y - θ (x - x̄)
 *
 * where x is the user's pre-period mean and x̄ the mean of x over every user of every arm with
 * pre-period data. x was fixed before randomization, so E[x - x̄] is the same in every arm and
 * the adjusted difference of arm means estimates the same effect; its variance is the unadjusted
 * one times (1 - ρ²), ρ the correlation of x and y.
 *
 * Users with no pre-period data (new users) get x = x̄, i.e. no adjustment: their outcome enters
 * as it is. (The alternative, a covariate of 0 plus a "no pre-period" indicator, adds a second
 * regressor; mean imputation is unbiased and loses only the part of the variance that the
 * new/returning split itself explains.)
 *
 * θ is one number for all arms: the pooled within-arm least-squares slope of y on x (arm fixed
 * effects, so a treatment effect cannot leak into it). Because θ is estimated from the same data
 * the adjusted means are not exactly a sum of i.i.d. terms, but θ̂ converges to θ at rate 1/√n
 * and the error it adds to the difference is of order 1/n, so the adjusted difference is
 * asymptotically normal with the variance computed here (Deng et al. 2013, appendix; Lin 2013 for
 * the regression-adjustment view). The mSPRT needs exactly that asymptotic normality, so its
 * always-valid guarantee holds asymptotically as it does unadjusted; bench/experiments measures
 * the A/A false-positive rate of the adjusted test with θ re-estimated at every look.
 *
 * Everything is computed from sums over users (the store's GROUP BY), never from rows.
 */
import type { UserMetricSums } from './users.js';

/** Over the users of one arm that have pre-period data: their count and the sums CUPED needs. */
export interface UserCovariateSums {
  /** Users of the arm with a pre-period outcome of the metric. */
  users: number;
  /** Σ x: their pre-period means. */
  sum: number;
  /** Σ x². */
  sumOfSquares: number;
  /** Σ x·y: pre-period mean times the experiment mean. */
  crossSum: number;
  /** Σ y over the same users (their experiment means). */
  outcomeSum: number;
}

export const emptyUserCovariateSums: UserCovariateSums = Object.freeze({
  users: 0,
  sum: 0,
  sumOfSquares: 0,
  crossSum: 0,
  outcomeSum: 0,
});

/** One arm's per-user sums of the metric and of its pre-period covariate. */
export interface CupedArmSums {
  outcome: UserMetricSums;
  covariate: UserCovariateSums;
}

export interface CupedAdjustment {
  /** The pooled within-arm slope of the experiment mean on the pre-period mean; 0 when it cannot be estimated. */
  theta: number;
  /** x̄: the mean pre-period outcome over users with one, all arms. */
  covariateMean: number;
  /** Share of the arms' users that had pre-period data. */
  coveredShare: number;
  /**
   * 1 - (Σ over arms of adjusted variance / n) / (Σ of unadjusted variance / n): how much of the
   * variance of a difference of arm means the adjustment removed (0 when nothing was adjusted).
   */
  varianceReduction: number;
  /** The adjusted per-user sums per arm, in the order given: what userMeanMetric turns into the test's input. */
  arms: UserMetricSums[];
}

/** Per-user sums from raw pairs (y, x or null): the reference the SQL is tested against. */
export function cupedArmSums(users: readonly { outcome: number; covariate: number | null }[]): CupedArmSums {
  const outcome = { users: 0, events: 0, sum: 0, sumOfSquares: 0 };
  const covariate = { users: 0, sum: 0, sumOfSquares: 0, crossSum: 0, outcomeSum: 0 };
  for (const { outcome: y, covariate: x } of users) {
    outcome.users++;
    outcome.events++;
    outcome.sum += y;
    outcome.sumOfSquares += y * y;
    if (x === null) continue;
    covariate.users++;
    covariate.sum += x;
    covariate.sumOfSquares += x * x;
    covariate.crossSum += x * y;
    covariate.outcomeSum += y;
  }
  return { outcome, covariate };
}

/** Centred sums of one arm with d = x - x̄ (0 for users without pre-period data). */
function centred(a: CupedArmSums, xbar: number) {
  const c = a.covariate;
  const sumD = c.sum - c.users * xbar;
  const sumDD = c.sumOfSquares - 2 * xbar * c.sum + c.users * xbar * xbar;
  const sumYD = c.crossSum - xbar * c.outcomeSum;
  return { sumD, sumDD, sumYD };
}

function armVariance(n: number, sum: number, sumOfSquares: number): number {
  return n > 1 ? Math.max(0, (sumOfSquares - (sum * sum) / n) / (n - 1)) : 0;
}

/** θ, x̄ and the adjusted per-user sums of every arm. */
export function cupedAdjust(arms: readonly CupedArmSums[]): CupedAdjustment {
  const covered = arms.reduce((s, a) => s + a.covariate.users, 0);
  const users = arms.reduce((s, a) => s + a.outcome.users, 0);
  const xbar = covered > 0 ? arms.reduce((s, a) => s + a.covariate.sum, 0) / covered : 0;
  // Within-arm (co)variation pooled over the arms: Σ_arm [Σ y d - Σy Σd / n] / Σ_arm [Σ d² - (Σd)² / n].
  let sxy = 0;
  let sxx = 0;
  for (const a of arms) {
    const n = a.outcome.users;
    if (n < 1) continue;
    const { sumD, sumDD, sumYD } = centred(a, xbar);
    sxy += sumYD - (a.outcome.sum * sumD) / n;
    sxx += sumDD - (sumD * sumD) / n;
  }
  // A covariate with no spread (or no users with one) explains nothing: leave the outcomes alone.
  const theta = sxx > 1e-12 * Math.max(1, covered) ? sxy / sxx : 0;
  let before = 0;
  let after = 0;
  const adjusted = arms.map((a) => {
    const n = a.outcome.users;
    const { sumD, sumDD, sumYD } = centred(a, xbar);
    // Σ (y - θd) and Σ (y - θd)², expanded into the sums the store returns.
    const sum = a.outcome.sum - theta * sumD;
    const sumOfSquares = a.outcome.sumOfSquares - 2 * theta * sumYD + theta * theta * sumDD;
    if (n > 1) {
      before += armVariance(n, a.outcome.sum, a.outcome.sumOfSquares) / n;
      after += armVariance(n, sum, sumOfSquares) / n;
    }
    return { users: n, events: a.outcome.events, sum, sumOfSquares: Math.max(0, sumOfSquares) };
  });
  return {
    theta,
    covariateMean: xbar,
    coveredShare: users > 0 ? covered / users : 0,
    varianceReduction: before > 0 ? 1 - after / before : 0,
    arms: adjusted,
  };
}
