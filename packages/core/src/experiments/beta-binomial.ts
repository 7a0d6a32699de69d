/**
 * Bayesian comparison of two rates (thumbs-up rate): each arm's rate has a Beta posterior
 * (conjugate to binomial counts), and every number below is an exact integral over those
 * posteriors, computed by quadrature, not by Monte Carlo, so it is the same on every run.
 */
import { type BetaParameters, betaCutPoints, expectationOverBeta, shiftPoints } from './quadrature.js';
import { betaQuantile, regularizedBeta } from './special.js';

export interface BinomialCounts {
  successes: number;
  trials: number;
}

export interface BetaPrior {
  alpha: number;
  beta: number;
}

export interface BetaArmSummary {
  posterior: BetaParameters;
  mean: number;
  /** Equal-tailed credible interval of the rate. */
  interval: { lower: number; upper: number };
}

export interface BetaBinomialComparison {
  control: BetaArmSummary;
  treatment: BetaArmSummary;
  /** P(treatment rate > control rate). */
  probabilityToBeat: number;
  /** E[max(control - treatment, 0)]: the rate lost, on average, by shipping the treatment. */
  expectedLossTreatment: number;
  /** E[max(treatment - control, 0)]: the rate lost by keeping the control. */
  expectedLossControl: number;
  /** Posterior mean of treatment - control. */
  difference: number;
  /** Equal-tailed credible interval of treatment - control. */
  differenceInterval: { lower: number; upper: number };
  /** Posterior mean of treatment / control - 1 (E[T] / E[C] - 1). */
  relativeLift: number;
  level: number;
}

export interface BetaBinomialOptions {
  /** Beta prior on each rate; Beta(1, 1) (uniform) by default. */
  prior?: BetaPrior;
  /** Two-sided credible level (default 0.95). */
  level?: number;
}

function assertCounts(c: BinomialCounts, label: string): void {
  if (
    !(
      Number.isInteger(c.successes) &&
      Number.isInteger(c.trials) &&
      c.successes >= 0 &&
      c.trials >= c.successes
    )
  ) {
    throw new Error(`${label}: need integers 0 <= successes <= trials (got ${c.successes}/${c.trials})`);
  }
}

export function betaPosterior(
  counts: BinomialCounts,
  prior: BetaPrior = { alpha: 1, beta: 1 },
): BetaParameters {
  return { alpha: prior.alpha + counts.successes, beta: prior.beta + counts.trials - counts.successes };
}

function summarize(posterior: BetaParameters, level: number): BetaArmSummary {
  const tail = (1 - level) / 2;
  return {
    posterior,
    mean: posterior.alpha / (posterior.alpha + posterior.beta),
    interval: {
      lower: betaQuantile(tail, posterior.alpha, posterior.beta),
      upper: betaQuantile(1 - tail, posterior.alpha, posterior.beta),
    },
  };
}

/** P(T > C) = E_C[1 - F_T(C)]. */
export function probabilityBetaExceeds(treatment: BetaParameters, control: BetaParameters): number {
  const p = expectationOverBeta(
    control,
    // 1 - F_T(x), as the upper tail so that it keeps its precision when small.
    (p) => regularizedBeta(p.y, treatment.beta, treatment.alpha, p.x),
    betaCutPoints(treatment),
  );
  return Math.min(1, Math.max(0, p));
}

/**
 * E[max(C - T, 0)] = E_C[ E[(x - T)+] ] with E[(x - T)+] = x F_T(x) - E[T] F_{T'}(x), where T' is
 * Beta(alpha + 1, beta) (the partial expectation of a Beta).
 */
function expectedShortfall(treatment: BetaParameters, control: BetaParameters): number {
  const { alpha: a, beta: b } = treatment;
  const mean = a / (a + b);
  const loss = expectationOverBeta(
    control,
    (p) => Math.max(0, p.x * regularizedBeta(p.x, a, b, p.y) - mean * regularizedBeta(p.x, a + 1, b, p.y)),
    betaCutPoints(treatment),
  );
  return Math.max(0, loss);
}

/** P(T - C <= d) = E_C[F_T(C + d)]. */
function differenceCdf(d: number, treatment: BetaParameters, control: BetaParameters): number {
  return expectationOverBeta(
    control,
    (p) => regularizedBeta(p.x + d, treatment.alpha, treatment.beta, p.y - d),
    shiftPoints(betaCutPoints(treatment), -d),
  );
}

/**
 * The p-quantile of T - C: regula falsi (Illinois) on its CDF, bracketed from the normal
 * approximation, to 1e-12; a dozen CDF evaluations instead of the forty of a bisection.
 */
function differenceQuantile(p: number, treatment: BetaParameters, control: BetaParameters): number {
  const f = (d: number) => differenceCdf(d, treatment, control) - p;
  const mean = meanOf(treatment) - meanOf(control);
  const sd = Math.sqrt(varianceOf(treatment) + varianceOf(control));
  let step = 4 * sd;
  let lo = Math.max(-1, mean - step);
  let hi = Math.min(1, mean + step);
  let flo = f(lo);
  let fhi = f(hi);
  // Widen until the root is bracketed (the normal approximation is poor for skewed posteriors).
  while (flo > 0 && lo > -1) {
    step *= 2;
    lo = Math.max(-1, mean - step);
    flo = f(lo);
  }
  while (fhi < 0 && hi < 1) {
    step *= 2;
    hi = Math.min(1, mean + step);
    fhi = f(hi);
  }
  let side = 0;
  for (let i = 0; i < 100 && hi - lo > 1e-12; i++) {
    const x = (lo * fhi - hi * flo) / (fhi - flo);
    const fx = f(x);
    if (fx === 0) return x;
    if (fx < 0) {
      lo = x;
      flo = fx;
      if (side === -1) fhi /= 2;
      side = -1;
    } else {
      hi = x;
      fhi = fx;
      if (side === 1) flo /= 2;
      side = 1;
    }
    if (Math.abs(fx) < 1e-13) return x;
  }
  return (lo + hi) / 2;
}

function meanOf(d: BetaParameters): number {
  return d.alpha / (d.alpha + d.beta);
}

function varianceOf(d: BetaParameters): number {
  const n = d.alpha + d.beta;
  return (d.alpha * d.beta) / (n * n * (n + 1));
}

/**
 * Compares a treatment's rate with the control's: probability to beat, expected losses, credible
 * intervals of each rate and of the difference.
 */
export function betaBinomialComparison(
  control: BinomialCounts,
  treatment: BinomialCounts,
  options: BetaBinomialOptions = {},
): BetaBinomialComparison {
  assertCounts(control, 'control');
  assertCounts(treatment, 'treatment');
  const level = options.level ?? 0.95;
  const c = summarize(betaPosterior(control, options.prior), level);
  const t = summarize(betaPosterior(treatment, options.prior), level);
  const expectedLossTreatment = expectedShortfall(t.posterior, c.posterior);
  const difference = t.mean - c.mean;
  const tail = (1 - level) / 2;
  return {
    control: c,
    treatment: t,
    probabilityToBeat: probabilityBetaExceeds(t.posterior, c.posterior),
    expectedLossTreatment,
    // E[(T - C)+] - E[(C - T)+] = E[T - C], so one integral gives both losses.
    expectedLossControl: Math.max(0, expectedLossTreatment + difference),
    difference,
    differenceInterval: {
      lower: differenceQuantile(tail, t.posterior, c.posterior),
      upper: differenceQuantile(1 - tail, t.posterior, c.posterior),
    },
    relativeLift: c.mean > 0 ? t.mean / c.mean - 1 : Number.NaN,
    level,
  };
}
