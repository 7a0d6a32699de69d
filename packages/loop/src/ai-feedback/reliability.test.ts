import { SeededRandom } from '@ratchet/core';
import { describe, expect, it } from 'vitest';
import { applyRule, chooseLabelRule, type HeldOutPoint, isotonicFit } from './reliability.js';

/** Held-out answers whose chance of being liked is `pLiked(score)`, scores uniform in [-3, 3]. */
function heldOut(n: number, seed: number, pLiked: (score: number) => number): HeldOutPoint[] {
  const rng = new SeededRandom(seed);
  return Array.from({ length: n }, () => {
    const score = -3 + 6 * rng.uniform();
    return { score, up: rng.uniform() < pLiked(score) };
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

describe('the labelling rule chosen on held-out ratings', () => {
  it('labels where a reliable score is past thresholds that reach the target precision', () => {
    const rule = chooseLabelRule(heldOut(600, 2, logistic), { targetPrecision: 0.8, alpha: 0.1 });
    expect(rule.up).not.toBeNull();
    expect(rule.down).not.toBeNull();
    expect(rule.down!.threshold).toBeLessThan(rule.up!.threshold);
    expect(rule.up!.lower).toBeGreaterThanOrEqual(0.8);
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

  it('labels none with a score that says nothing, and says why', () => {
    const rule = chooseLabelRule(
      heldOut(600, 3, () => 0.5),
      { targetPrecision: 0.8, alpha: 0.1 },
    );
    expect(rule).toMatchObject({ up: null, down: null, precision: null, labeledShare: 0 });
    expect(rule.reasons).toHaveLength(2);
    expect(rule.reasons[0]).toMatch(
      /^up: the \d+ most confident held-out answers were .*% right \(lower bound/,
    );
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

  it('needs enough held-out answers to show the target even when all agree', () => {
    // The 4 answers with the higher scores all liked: too few to show 0.8 at 95% confidence.
    const points = Array.from({ length: 8 }, (_, i) => ({ score: i, up: i >= 4 }));
    const rule = chooseLabelRule(points, { targetPrecision: 0.8, alpha: 0.1 });
    expect(rule.up).toBeNull();
    expect(rule.reasons[0]).toMatch(
      /^up: 4 held-out answers cannot show 0.8 precision at 0.95 confidence even if all agreed$/,
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
