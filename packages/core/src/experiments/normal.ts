/**
 * Bayesian comparison of two means (mean calibrated reward, stars) with unknown variances: with a
 * flat prior each mean's posterior is Student-t around the sample mean, which for the sample
 * sizes of an A/B test is normal, N(mean, variance / n). The difference is then normal too, and
 * every quantity has a closed form.
 */
import { normalCdf, normalQuantile } from '../calibration/distributions.js';
import type { ArmMoments } from './moments.js';
import { normalPdf } from './special.js';

export interface NormalArmSummary {
  mean: number;
  /** Posterior standard deviation of the mean (the standard error). */
  standardError: number;
  interval: { lower: number; upper: number };
}

export interface NormalMeanComparison {
  control: NormalArmSummary;
  treatment: NormalArmSummary;
  /** P(treatment mean > control mean). */
  probabilityToBeat: number;
  /** E[max(control - treatment, 0)]: the mean lost, on average, by shipping the treatment. */
  expectedLossTreatment: number;
  /** E[max(treatment - control, 0)]: the mean lost by keeping the control. */
  expectedLossControl: number;
  difference: number;
  differenceInterval: { lower: number; upper: number };
  /** treatment mean / control mean - 1 (NaN when the control mean is 0). */
  relativeLift: number;
  level: number;
}

function assertArm(arm: ArmMoments, label: string): void {
  if (!(arm.n >= 2) || !(arm.variance >= 0) || !Number.isFinite(arm.mean)) {
    throw new Error(`${label}: need n >= 2, a finite mean and variance >= 0 (got ${JSON.stringify(arm)})`);
  }
}

/** E[max(-D, 0)] for D ~ N(mu, sigma^2): the normal partial expectation. */
export function normalExpectedShortfall(mu: number, sigma: number): number {
  if (sigma === 0) return Math.max(0, -mu);
  const z = mu / sigma;
  return Math.max(0, sigma * normalPdf(z) - mu * normalCdf(-z));
}

function summarize(arm: ArmMoments, z: number): NormalArmSummary {
  const standardError = Math.sqrt(arm.variance / arm.n);
  return {
    mean: arm.mean,
    standardError,
    interval: { lower: arm.mean - z * standardError, upper: arm.mean + z * standardError },
  };
}

/** Compares a treatment's mean with the control's: probability to beat, expected losses, intervals. */
export function normalMeanComparison(
  control: ArmMoments,
  treatment: ArmMoments,
  options: { level?: number } = {},
): NormalMeanComparison {
  assertArm(control, 'control');
  assertArm(treatment, 'treatment');
  const level = options.level ?? 0.95;
  const z = normalQuantile(1 - (1 - level) / 2);
  const c = summarize(control, z);
  const t = summarize(treatment, z);
  const difference = t.mean - c.mean;
  const sd = Math.hypot(c.standardError, t.standardError);
  const probabilityToBeat =
    sd === 0 ? (difference > 0 ? 1 : difference < 0 ? 0 : 0.5) : normalCdf(difference / sd);
  return {
    control: c,
    treatment: t,
    probabilityToBeat,
    expectedLossTreatment: normalExpectedShortfall(difference, sd),
    expectedLossControl: normalExpectedShortfall(-difference, sd),
    difference,
    differenceInterval: { lower: difference - z * sd, upper: difference + z * sd },
    relativeLift: c.mean !== 0 ? t.mean / c.mean - 1 : Number.NaN,
    level,
  };
}
