/**
 * Fixed-horizon power of the two-proportion z-test, for planning: how many users per arm a lift
 * needs. The sequential test needs more for the same power at a fixed look (the price of being
 * allowed to look at any time); the simulation in simulate.ts measures its power.
 */
import { normalCdf, normalQuantile } from '../calibration/distributions.js';

export interface TwoProportionDesign {
  /** The control's rate. */
  control: number;
  /** The treatment's rate to detect. */
  treatment: number;
  /** Two-sided level (default 0.05). */
  alpha?: number;
}

/** Power of the two-sided z-test (pooled variance under the null) with `usersPerArm` in each arm. */
export function twoProportionPower(design: TwoProportionDesign, usersPerArm: number): number {
  const { control: p0, treatment: p1 } = design;
  const z = normalQuantile(1 - (design.alpha ?? 0.05) / 2);
  const pooled = (p0 + p1) / 2;
  const seNull = Math.sqrt((2 * pooled * (1 - pooled)) / usersPerArm);
  const seAlt = Math.sqrt((p0 * (1 - p0) + p1 * (1 - p1)) / usersPerArm);
  const delta = Math.abs(p1 - p0);
  // Both rejection regions; the far one adds a negligible amount but keeps the formula exact.
  return normalCdf((delta - z * seNull) / seAlt) + normalCdf((-delta - z * seNull) / seAlt);
}

/** Smallest users per arm reaching `power` (default 0.8) by the same test. */
export function twoProportionSampleSize(design: TwoProportionDesign, power = 0.8): number {
  if (twoProportionPower(design, 1) >= power) return 1;
  let lo = 1;
  let hi = 2;
  while (twoProportionPower(design, hi) < power) hi *= 2;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (twoProportionPower(design, mid) >= power) hi = mid;
    else lo = mid;
  }
  return hi;
}
