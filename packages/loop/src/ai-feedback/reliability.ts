import { wilsonInterval } from '@ratchet/core';

/**
 * When an AI labeller (a reward model, an LLM judge) may label an unrated answer: its scores on
 * answers people rated that it never trained on (the held-out set) decide. Pure functions; the
 * labellers in label.ts score the answers and write the labels.
 */

/** One held-out answer: the labeller's score, and whether people liked it (calibrated reward > 0). */
export interface HeldOutPoint {
  score: number;
  up: boolean;
}

/**
 * Isotonic regression of P(people like it) on the score (pool adjacent violators): the
 * non-decreasing step function closest in squared error to the held-out outcomes. It makes no
 * assumption on the shape of the score (a logistic fit would), which matters for reward models
 * whose scores are confidently wrong at one end. Returns P(up) for any score: the block it falls
 * in, the first block below the lowest held-out score, the last above the highest.
 */
export function isotonicFit(points: readonly HeldOutPoint[]): (score: number) => number {
  if (points.length === 0) return () => 0.5;
  const sorted = [...points].sort((a, b) => a.score - b.score);
  const blocks: { from: number; sum: number; n: number }[] = [];
  for (const p of sorted) {
    blocks.push({ from: p.score, sum: p.up ? 1 : 0, n: 1 });
    // Merge backwards while the previous block's mean is above this one's.
    while (blocks.length > 1) {
      const last = blocks[blocks.length - 1]!;
      const prev = blocks[blocks.length - 2]!;
      // Equal scores must share a block: a step between them would be a split of one x.
      if (prev.sum / prev.n < last.sum / last.n && prev.from !== last.from) break;
      prev.sum += last.sum;
      prev.n += last.n;
      blocks.pop();
    }
  }
  return (score) => {
    let i = 0;
    while (i + 1 < blocks.length && blocks[i + 1]!.from <= score) i++;
    return blocks[i]!.sum / blocks[i]!.n;
  };
}

export interface ReliabilityOptions {
  /** The share of labels that must be right (people agree), at confidence 1 - alpha. */
  targetPrecision: number;
  /** Family-wise error of the claim "precision >= target" over both sides and every threshold tried. */
  alpha: number;
}

/** One side's threshold (up: label up at or above it; down: label down at or below it). */
export interface SideRule {
  threshold: number;
  /** Held-out answers on this side of the threshold, and how many of them people agree with. */
  heldOut: number;
  correct: number;
  precision: number;
  /** One-sided lower confidence bound of the precision (Wilson, at 1 - alpha / 2). */
  lower: number;
}

export interface LabelRule {
  up: SideRule | null;
  down: SideRule | null;
  heldOut: number;
  /** The rule's precision on the held-out answers it labels (both sides), with its lower bound. */
  precision: number | null;
  lower: number | null;
  /** Share of the held-out answers the rule labels. */
  labeledShare: number;
  /** Why a side (or both) labels nothing. */
  reasons: string[];
}

/** The label a rule gives a score: up, down, or none (too close to call). */
export function applyRule(rule: Pick<LabelRule, 'up' | 'down'>, score: number): boolean | null {
  if (rule.up && score >= rule.up.threshold) return true;
  if (rule.down && score <= rule.down.threshold) return false;
  return null;
}

/** Wilson's one-sided lower bound at 1 - `alpha` (its two-sided interval at 1 - 2 alpha). */
const lowerBound = (correct: number, n: number, alpha: number) =>
  wilsonInterval(correct, n, 1 - 2 * alpha).lower;

/**
 * The most permissive threshold on one side whose precision reaches the target with confidence.
 * Thresholds are tried from the most confident answers outwards (a fixed sequence: the top n0,
 * then n0 + step, ...) and the search stops at the first that fails; testing in a fixed order and
 * stopping at the first failure keeps the chance of accepting any threshold whose true
 * precision is below the target at alpha, without dividing alpha by the number of thresholds.
 * n0 is the fewest answers whose lower bound could reach the target if all were right.
 */
function sideRule(
  points: readonly HeldOutPoint[],
  side: 'up' | 'down',
  o: ReliabilityOptions,
  alpha: number,
): { rule: SideRule | null; reason?: string } {
  const sorted = [...points].sort((a, b) => (side === 'up' ? b.score - a.score : a.score - b.score));
  if (sorted.length === 0)
    return {
      rule: null,
      reason: `${side}: on no held-out answer does the score make "${side === 'up' ? 'liked' : 'disliked'}" the likelier outcome`,
    };
  let n0 = 1;
  while (n0 <= sorted.length && lowerBound(n0, n0, alpha) < o.targetPrecision) n0++;
  if (n0 > sorted.length)
    return {
      rule: null,
      reason: `${side}: ${sorted.length} held-out answers cannot show ${o.targetPrecision} precision at ${1 - alpha} confidence even if all agreed`,
    };
  const step = Math.max(1, Math.ceil(sorted.length / 20));
  let best: SideRule | null = null;
  let failed: SideRule | null = null;
  for (let n = n0; n <= sorted.length; n += step) {
    const threshold = sorted[n - 1]!.score;
    // Ties with the threshold are on its side too: the rule cannot tell them apart.
    const covered = sorted.filter((p) => (side === 'up' ? p.score >= threshold : p.score <= threshold));
    const correct = covered.filter((p) => p.up === (side === 'up')).length;
    const rule: SideRule = {
      threshold,
      heldOut: covered.length,
      correct,
      precision: correct / covered.length,
      lower: lowerBound(correct, covered.length, alpha),
    };
    if (rule.lower < o.targetPrecision) {
      failed = rule;
      break;
    }
    best = rule;
  }
  if (best) return { rule: best };
  const f = failed!;
  return {
    rule: null,
    reason: `${side}: the ${f.heldOut} most confident held-out answers were ${pct(f.precision)} right (lower bound ${pct(f.lower)} < ${pct(o.targetPrecision)})`,
  };
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

/**
 * The labelling rule for a labeller from its held-out scores: on each side the most permissive
 * threshold whose precision reaches `targetPrecision` with confidence (alpha split between the
 * sides), or none. Its precision on the held-out answers it labels is the number to report.
 */
export function chooseLabelRule(points: readonly HeldOutPoint[], o: ReliabilityOptions): LabelRule {
  // Each side's thresholds stay where the calibrated P(liked) leans its way: the two labelled
  // regions never overlap, so the rule's precision is at least the lower of the sides'.
  const pUp = isotonicFit(points);
  const up = sideRule(
    points.filter((p) => pUp(p.score) > 0.5),
    'up',
    o,
    o.alpha / 2,
  );
  const down = sideRule(
    points.filter((p) => pUp(p.score) < 0.5),
    'down',
    o,
    o.alpha / 2,
  );
  const rule = { up: up.rule, down: down.rule };
  const labeled = points.map((p) => ({ p, label: applyRule(rule, p.score) })).filter((x) => x.label !== null);
  const correct = labeled.filter((x) => x.label === x.p.up).length;
  return {
    ...rule,
    heldOut: points.length,
    precision: labeled.length ? correct / labeled.length : null,
    lower: labeled.length ? lowerBound(correct, labeled.length, o.alpha) : null,
    labeledShare: points.length ? labeled.length / points.length : 0,
    reasons: [up.reason, down.reason].filter((r): r is string => r !== undefined),
  };
}
