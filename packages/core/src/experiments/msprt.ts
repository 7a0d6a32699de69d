/**
 * The mixture sequential probability ratio test (mSPRT) of Johari, Koomen, Pekelis and Walsh
 * ("Peeking at A/B tests", KDD 2017; "Always valid inference", Operations Research 2022) for the
 * difference of two means or proportions.
 *
 * The difference of sample means, Δ, is treated as normal with variance V = s_c²/n_c + s_t²/n_t.
 * Mixing the likelihood ratio of "true difference θ" against "θ = θ0" over θ ~ N(θ0, τ²) gives
 *
 *   Λ = sqrt(V / (V + τ²)) · exp( τ² (Δ - θ0)² / (2 V (V + τ²)) ),
 *
 * a nonnegative martingale under the null in information time 1/V. By Ville's inequality
 * P(Λ ever reaches 1/α) <= α, so p = min over looks of 1/Λ is a p-value that stays valid however
 * often it is looked at, and {θ0 : Λ(θ0) < 1/α} is a confidence interval valid at all times at
 * once. Looking every day is safe; a fixed-horizon test looked at every day is not.
 */

import type { ArmMoments } from './moments.js';

export interface MsprtState {
  /** Running minimum of the p-value over the looks so far. */
  pValue: number;
  /** Running intersection of the confidence intervals so far. */
  lower: number;
  upper: number;
}

export interface MsprtOptions {
  /** Level of the always-valid p-value threshold and interval (default 0.05). */
  alpha?: number;
  /**
   * Standard deviation of the normal mixture over the true difference, in the metric's units. The
   * test is most efficient when τ is near the effects one expects; any τ keeps it valid.
   */
  tau?: number;
  /** When `tau` is not given: τ = this many pooled standard deviations of the metric (default 0.1). */
  tauInStandardDeviations?: number;
  /** The difference under the null hypothesis (default 0). */
  nullDifference?: number;
  /** The state returned by the previous look, to carry the running minimum and intersection. */
  previous?: MsprtState;
}

export interface MsprtResult {
  /** treatment mean - control mean. */
  difference: number;
  standardError: number;
  /** log Λ at the null difference. */
  logLikelihoodRatio: number;
  /** Always-valid p-value (running minimum when `previous` was given). */
  pValue: number;
  /** Always-valid confidence interval of the difference (running intersection when `previous` was given). */
  interval: { lower: number; upper: number };
  /** pValue <= alpha. */
  significant: boolean;
  tau: number;
  alpha: number;
  /** Pass as `previous` on the next look. */
  state: MsprtState;
}

function assertArm(arm: ArmMoments, label: string): void {
  if (!(arm.n >= 1) || !(arm.variance >= 0) || !Number.isFinite(arm.mean)) {
    throw new Error(`${label}: need n >= 1, a finite mean and variance >= 0 (got ${JSON.stringify(arm)})`);
  }
}

/** log Λ for an observed difference `delta` with variance `v`, mixture variance `tau2`. */
export function msprtLogLikelihoodRatio(delta: number, v: number, tau2: number): number {
  return 0.5 * Math.log(v / (v + tau2)) + (tau2 * delta * delta) / (2 * v * (v + tau2));
}

/** Half-width of the always-valid interval: the |Δ - θ0| at which Λ reaches 1/α. */
export function msprtHalfWidth(v: number, tau2: number, alpha: number): number {
  return Math.sqrt(((v * (v + tau2)) / tau2) * (-2 * Math.log(alpha) + Math.log((v + tau2) / v)));
}

function resolveTau(control: ArmMoments, treatment: ArmMoments, options: MsprtOptions): number {
  if (options.tau !== undefined) return options.tau;
  const pooledSd = Math.sqrt((control.variance + treatment.variance) / 2);
  return (options.tauInStandardDeviations ?? 0.1) * pooledSd;
}

/** One look of the mSPRT at the current totals of each arm. */
export function msprtTest(
  control: ArmMoments,
  treatment: ArmMoments,
  options: MsprtOptions = {},
): MsprtResult {
  assertArm(control, 'control');
  assertArm(treatment, 'treatment');
  const alpha = options.alpha ?? 0.05;
  const tau = resolveTau(control, treatment, options);
  const v = control.variance / control.n + treatment.variance / treatment.n;
  const difference = treatment.mean - control.mean;
  const theta0 = options.nullDifference ?? 0;
  let logLikelihoodRatio: number;
  let lower: number;
  let upper: number;
  if (v > 0 && tau > 0) {
    logLikelihoodRatio = msprtLogLikelihoodRatio(difference - theta0, v, tau * tau);
    const half = msprtHalfWidth(v, tau * tau, alpha);
    lower = difference - half;
    upper = difference + half;
  } else {
    // No variance (a constant metric) or no mixture: nothing can be learned, nothing is claimed.
    logLikelihoodRatio = 0;
    lower = Number.NEGATIVE_INFINITY;
    upper = Number.POSITIVE_INFINITY;
  }
  let pValue = Math.min(1, Math.exp(-logLikelihoodRatio));
  const prev = options.previous;
  if (prev) {
    pValue = Math.min(pValue, prev.pValue);
    // The running intersection; should it ever be empty (the normal model misfits), keep this look's.
    if (Math.max(lower, prev.lower) <= Math.min(upper, prev.upper)) {
      lower = Math.max(lower, prev.lower);
      upper = Math.min(upper, prev.upper);
    }
  }
  return {
    difference,
    standardError: Math.sqrt(v),
    logLikelihoodRatio,
    pValue,
    interval: { lower, upper },
    significant: pValue <= alpha,
    tau,
    alpha,
    state: { pValue, lower, upper },
  };
}
