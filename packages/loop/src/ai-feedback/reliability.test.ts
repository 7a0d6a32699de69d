import { SeededRandom } from '@ratchet/core';
import { describe, expect, it } from 'vitest';
import {
  applyRule,
  chooseLabelRule,
  crossFitLabelRule,
  exactLowerBound,
  fewestToCertify,
  foldsOf,
  isotonicFit,
  type KeyedPoint,
  ruleFromHalves,
  splitHeldOut,
} from './reliability.js';

/** Held-out answers whose chance of being liked is `pLiked(score)`, scores uniform in [-3, 3]. */
function heldOut(n: number, seed: number, pLiked: (score: number) => number): KeyedPoint[] {
  const rng = new SeededRandom(seed);
  return Array.from({ length: n }, (_, i) => {
    const score = -3 + 6 * rng.uniform();
    return { id: `s${seed}-${i}`, score, up: rng.uniform() < pLiked(score) };
  });
}
const logistic = (s: number) => 1 / (1 + Math.exp(-2 * s));

describe('isotonic calibration of a labeller score', () => {
  it('is non-decreasing, averages the outcomes it pools, and recovers a logistic curve', () => {
    const f = isotonicFit([
      { score: 0, up: false },
      { score: 1, up: true },
      { score: 2, up: false },
      { score: 3, up: true },
    ]);
    // 1 and 2 violate the order: pooled to 1/2.
    expect([f(-5), f(0), f(1), f(1.5), f(2), f(3), f(9)]).toEqual([0, 0, 0.5, 0.5, 0.5, 1, 1]);
    const g = isotonicFit(heldOut(4000, 1, logistic));
    let last = 0;
    for (let s = -3; s <= 3; s += 0.25) {
      expect(g(s)).toBeGreaterThanOrEqual(last);
      last = g(s);
    }
    for (const s of [-2, -0.5, 0, 0.5, 2]) expect(Math.abs(g(s) - logistic(s))).toBeLessThan(0.12);
  });

  it('puts equal scores in one block', () => {
    const f = isotonicFit([
      { score: 1, up: true },
      { score: 1, up: false },
      { score: 1, up: false },
      { score: 2, up: true },
    ]);
    expect(f(1)).toBeCloseTo(1 / 3, 12);
    expect(f(2)).toBe(1);
  });
});

/** P(X >= x) for X ~ Binomial(n, p), summed term by term. */
function upperTail(x: number, n: number, p: number): number {
  let sum = 0;
  let logChoose = 0;
  for (let k = 0; k <= n; k++) {
    if (k > 0) logChoose += Math.log((n - k + 1) / k);
    if (k >= x) sum += Math.exp(logChoose + k * Math.log(p) + (n - k) * Math.log1p(-p));
  }
  return sum;
}

describe('the exact lower bound of a precision', () => {
  it('is the p at which the binomial tail of the correct count equals alpha', () => {
    for (const [x, n] of [
      [14, 14],
      [9, 10],
      [40, 50],
      [1, 3],
    ] as const) {
      const lower = exactLowerBound(x, n, 0.05);
      expect(upperTail(x, n, lower)).toBeCloseTo(0.05, 9);
    }
    expect(exactLowerBound(10, 10, 0.05)).toBeCloseTo(0.05 ** (1 / 10), 12);
    expect(exactLowerBound(0, 5, 0.05)).toBe(0);
    expect(exactLowerBound(0, 0, 0.05)).toBe(0);
  });

  it('needs 14 answers, all right, to show 80% at 95%: 13 are not enough', () => {
    expect(fewestToCertify(0.8, 0.05)).toBe(14);
    expect(exactLowerBound(14, 14, 0.05)).toBeGreaterThanOrEqual(0.8);
    expect(exactLowerBound(13, 13, 0.05)).toBeLessThan(0.8);
    expect(exactLowerBound(14, 15, 0.05)).toBeLessThan(0.8);
  });
});

describe('the split of the held-out answers', () => {
  it('puts each answer in one half, halves each outcome, and does not depend on the order', () => {
    const points = heldOut(101, 5, logistic);
    const { fit, check } = splitHeldOut(points, 0.5);
    expect([...fit, ...check].map((p) => p.id).sort()).toEqual(points.map((p) => p.id).sort());
    expect(new Set([...fit, ...check].map((p) => p.id)).size).toBe(101);
    const ups = points.filter((p) => p.up).length;
    expect(Math.abs(check.filter((p) => p.up).length - ups / 2)).toBeLessThanOrEqual(0.5);
    expect(Math.abs(check.filter((p) => !p.up).length - (101 - ups) / 2)).toBeLessThanOrEqual(0.5);
    const again = splitHeldOut([...points].reverse(), 0.5);
    expect(again.check.map((p) => p.id).sort()).toEqual(check.map((p) => p.id).sort());
    expect(splitHeldOut(points, 0.25).check).toHaveLength(
      Math.floor(ups * 0.25) + Math.floor((101 - ups) * 0.25),
    );
  });
});

describe('the labelling rule chosen on held-out ratings', () => {
  it('labels where a reliable score is past thresholds that reach the target precision', () => {
    const rule = chooseLabelRule(heldOut(600, 2, logistic), { targetPrecision: 0.8, alpha: 0.1 });
    expect(rule).toMatchObject({ heldOut: 600, fit: 300, check: 300, minCheck: 14, reasons: [] });
    expect(rule.up).not.toBeNull();
    expect(rule.down).not.toBeNull();
    expect(rule.down!.threshold).toBeLessThan(rule.up!.threshold);
    expect(rule.up!.lower).toBeGreaterThanOrEqual(0.8);
    expect(rule.down!.lower).toBeGreaterThanOrEqual(0.8);
    // On fresh answers from the same labeller, the rule's labels are right at least as often as promised.
    const fresh = heldOut(20_000, 99, logistic)
      .map((p) => ({ p, label: applyRule(rule, p.score) }))
      .filter((x) => x.label !== null);
    expect(fresh.filter((x) => x.label === x.p.up).length / fresh.length).toBeGreaterThan(0.8);
    expect(rule.precision!).toBeGreaterThanOrEqual(0.8);
    expect(rule.labeledShare).toBeGreaterThan(0.3);
    expect(rule.labeledShare).toBeLessThan(1);
    expect(applyRule(rule, 3)).toBe(true);
    expect(applyRule(rule, -3)).toBe(false);
    expect(applyRule(rule, (rule.up!.threshold + rule.down!.threshold) / 2)).toBeNull();
  });

  it('finds the planted thresholds: sure above 2, sure below -2, a coin in between', () => {
    // Liked for sure above 2, disliked for sure below -2, half and half in between: a threshold
    // at t in [0, 2] has precision (3 - 2 + (2 - t) / 2) / (3 - t), 0.8 at t = 4/3.
    const planted = (s: number) => (s > 2 ? 1 : s < -2 ? 0 : 0.5);
    const rule = chooseLabelRule(heldOut(2000, 6, planted), { targetPrecision: 0.8, alpha: 0.1 });
    expect(rule.up!.threshold).toBeGreaterThan(4 / 3);
    expect(rule.up!.threshold).toBeLessThan(2.1);
    expect(rule.down!.threshold).toBeLessThan(-4 / 3);
    expect(rule.down!.threshold).toBeGreaterThan(-2.1);
    const truePrecision = (t: number) => (1 + Math.max(0, 2 - t) / 2) / (3 - Math.min(t, 2));
    expect(truePrecision(rule.up!.threshold)).toBeGreaterThanOrEqual(0.8);
    expect(truePrecision(-rule.down!.threshold)).toBeGreaterThanOrEqual(0.8);
  });

  it('never takes its precision from the answers that chose the threshold', () => {
    // The fit half is perfectly separated by the score; on the check half the outcome is a coin
    // toss whatever the score. A precision measured on the fit half would be 100%.
    const separated = (p: KeyedPoint) => ({ ...p, up: p.score > 0 });
    const fit = heldOut(200, 7, logistic).map(separated);
    const rng = new SeededRandom(8);
    const check = heldOut(200, 9, logistic).map((p) => ({ ...p, up: rng.uniform() < 0.5 }));
    const rule = ruleFromHalves(fit, check, { targetPrecision: 0.8, alpha: 0.1 });
    expect(rule).toMatchObject({ up: null, down: null, precision: null, fit: 200, check: 200 });
    expect(rule.reasons).toEqual([
      expect.stringMatching(
        /^up: past the threshold the fit half chose \(100\.0% of \d+ right\), the \d+ check answers were/,
      ),
      expect.stringMatching(/^down: past the threshold the fit half chose \(100\.0% of \d+ right\)/),
    ]);
    // The same, with a check half as clean as the fit half: both sides are certified, and the
    // precision is the check half's.
    const clean = ruleFromHalves(fit, check.map(separated), { targetPrecision: 0.8, alpha: 0.1 });
    expect(clean.up).not.toBeNull();
    expect(clean.down).not.toBeNull();
    expect(clean.precision).toBe(1);
    expect(clean.up!.heldOut + clean.down!.heldOut).toBe(clean.labeledShare * 200);
  });

  it('labels none with a score that says nothing, and says why', () => {
    const rule = chooseLabelRule(
      heldOut(600, 3, () => 0.5),
      { targetPrecision: 0.8, alpha: 0.1 },
    );
    expect(rule).toMatchObject({ up: null, down: null, precision: null, labeledShare: 0 });
    expect(rule.reasons).toHaveLength(2);
    expect(rule.reasons[0]).toMatch(/^up: /);
  });

  it('labels none on the side where the score is confidently wrong', () => {
    // High scores are disliked as often as low ones: only the low side is reliable.
    const rule = chooseLabelRule(
      heldOut(600, 4, (s) => (s > 1 ? 0.3 : logistic(s))),
      { targetPrecision: 0.8, alpha: 0.1 },
    );
    expect(rule.up).toBeNull();
    expect(rule.down).not.toBeNull();
    expect(rule.reasons).toEqual([expect.stringMatching(/^up: /)]);
  });

  it('needs enough held-out answers to show the target even when all agree, and says how many', () => {
    // 24 answers, perfectly separated: 12 are left to check on, short of the 14 needed.
    const points = Array.from({ length: 24 }, (_, i) => ({ id: `p${i}`, score: i, up: i >= 12 }));
    const rule = chooseLabelRule(points, { targetPrecision: 0.8, alpha: 0.1 });
    expect(rule).toMatchObject({ up: null, down: null, check: 12, minCheck: 14 });
    expect(rule.reasons[0]).toBe(
      'up: 24 held-out answers leave 12 to check on; showing 80.0% precision at 0.95 confidence needs at least 14 past the threshold even if all agree',
    );
  });

  it('keeps its promise: with a score whose precision is below target everywhere, it rarely claims the target', () => {
    // P(liked) never exceeds 0.75 on the up side, nor 0.75 disliked on the down side: every
    // threshold's true precision is below 0.8, so any label rule it picks is a false claim.
    const capped = (s: number) => Math.min(0.75, Math.max(0.25, logistic(s)));
    let claims = 0;
    for (let seed = 0; seed < 200; seed++) {
      const rule = chooseLabelRule(heldOut(300, 100 + seed, capped), { targetPrecision: 0.8, alpha: 0.1 });
      if (rule.up || rule.down) claims++;
    }
    expect(claims / 200).toBeLessThanOrEqual(0.1);
  });
});

describe('cross-fitting the labelling rule', () => {
  const o = { targetPrecision: 0.8, alpha: 0.1, folds: 5 };

  it('deals every answer into one fold, each outcome evenly, whatever the input order', () => {
    const points = heldOut(103, 11, logistic);
    const folds = foldsOf(points, 5);
    expect(
      folds
        .flat()
        .map((p) => p.id)
        .sort(),
    ).toEqual(points.map((p) => p.id).sort());
    const ups = points.filter((p) => p.up).length;
    for (const fold of folds) {
      expect(Math.abs(fold.filter((p) => p.up).length - ups / 5)).toBeLessThan(1);
      expect(Math.abs(fold.length - 103 / 5)).toBeLessThanOrEqual(1);
    }
    const again = foldsOf([...points].reverse(), 5);
    expect(again.map((f) => f.map((p) => p.id).sort())).toEqual(folds.map((f) => f.map((p) => p.id).sort()));
  });

  it('checks on every held-out answer: certifies from 40 answers where a single split cannot', () => {
    // Perfectly separated, 20 each way: a single split checks on 10 of each, short of the 14 a
    // side needs; cross-fitted, each side's 20 answers all check a threshold chosen without them.
    const points = Array.from({ length: 40 }, (_, i) => ({ id: `p${i}`, score: i, up: i >= 20 }));
    expect(chooseLabelRule(points, { targetPrecision: 0.8, alpha: 0.1 })).toMatchObject({
      up: null,
      down: null,
    });
    const rule = crossFitLabelRule(points, o);
    expect(rule).toMatchObject({ heldOut: 40, folds: 5, fit: 40, check: 40, precision: 1 });
    expect(rule.up).not.toBeNull();
    expect(rule.down).not.toBeNull();
    expect(rule.up!.heldOut + rule.down!.heldOut).toBe(rule.checkLabeled);
    expect(rule.up!.lower).toBeGreaterThanOrEqual(0.8);
    expect(applyRule(rule, 39)).toBe(true);
    expect(applyRule(rule, 0)).toBe(false);
    // chooseLabelRule with folds is the same rule.
    expect(chooseLabelRule(points, o)).toEqual(rule);
  });

  it("is never certified by the answers that chose a fold's threshold: a score that says nothing labels none", () => {
    // Outcomes are coins: thresholds chosen on four folds find lucky runs there, which the fifth does not repeat.
    const rule = crossFitLabelRule(
      heldOut(400, 12, () => 0.5),
      o,
    );
    expect(rule).toMatchObject({ up: null, down: null, precision: null, labeledShare: 0 });
    expect(rule.reasons).toHaveLength(2);
  });

  it('labels where the score is reliable, and its labels on fresh answers are as right as promised', () => {
    const rule = crossFitLabelRule(heldOut(300, 13, logistic), o);
    expect(rule.up).not.toBeNull();
    expect(rule.down).not.toBeNull();
    expect(rule.checkLabeled).toBeGreaterThan(150); // a single split would check on 150 at most
    const fresh = heldOut(20_000, 98, logistic)
      .map((p) => ({ p, label: applyRule(rule, p.score) }))
      .filter((x) => x.label !== null);
    expect(fresh.filter((x) => x.label === x.p.up).length / fresh.length).toBeGreaterThan(0.8);
  });

  it('keeps its promise: with a score whose precision is below target everywhere, it rarely claims the target', () => {
    const capped = (s: number) => Math.min(0.75, Math.max(0.25, logistic(s)));
    let claims = 0;
    for (let seed = 0; seed < 200; seed++) {
      const rule = crossFitLabelRule(heldOut(300, 300 + seed, capped), o);
      if (rule.up || rule.down) claims++;
    }
    expect(claims / 200).toBeLessThanOrEqual(0.1);
  });
});
