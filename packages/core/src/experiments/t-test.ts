/**
 * Welch's two-sample t-test: the classical fixed-horizon test. Valid when it is computed once, at
 * a sample size fixed in advance; looked at repeatedly and stopped at the first p < 0.05, its
 * false positive rate climbs far above 5% (see the A/A simulation). Kept for reports and as the
 * baseline the sequential test is compared with.
 */
import type { ArmMoments } from './moments.js';
import { studentTCdf } from './special.js';

export interface TTestResult {
  difference: number;
  standardError: number;
  t: number;
  /** Welch-Satterthwaite degrees of freedom. */
  degreesOfFreedom: number;
  /** Two-sided p-value. */
  pValue: number;
}

export function welchTTest(control: ArmMoments, treatment: ArmMoments): TTestResult {
  if (control.n < 2 || treatment.n < 2) throw new Error('welchTTest needs at least 2 observations per arm');
  const vc = control.variance / control.n;
  const vt = treatment.variance / treatment.n;
  const se = Math.sqrt(vc + vt);
  const difference = treatment.mean - control.mean;
  if (se === 0) {
    const pValue = difference === 0 ? 1 : 0;
    return {
      difference,
      standardError: 0,
      t: difference === 0 ? 0 : Math.sign(difference) * Infinity,
      degreesOfFreedom: control.n + treatment.n - 2,
      pValue,
    };
  }
  const t = difference / se;
  const df = (vc + vt) ** 2 / (vc ** 2 / (control.n - 1) + vt ** 2 / (treatment.n - 1));
  return {
    difference,
    standardError: se,
    t,
    degreesOfFreedom: df,
    pValue: 2 * studentTCdf(-Math.abs(t), df),
  };
}
