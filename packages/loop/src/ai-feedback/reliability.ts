import { betaQuantile } from '@ratchet/core';

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

/** A held-out answer with its id: the id decides, by a fixed hash, which half it falls in. */
export interface KeyedPoint extends HeldOutPoint {
  id: string;
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
  /** Error of the claim "precision >= target", over both sides (alpha / 2 each). */
  alpha: number;
  /** Share of the held-out answers kept apart to check the thresholds on (the rest choose them). */
  checkShare?: number;
  /**
   * Cross-fitting: the held-out answers fall in this many folds, each labelled by thresholds
   * chosen on the other folds, so every held-out answer checks a rule it did not choose
   * (crossFitLabelRule). 1: one split, `checkShare` of them checking (chooseLabelRule's halves).
   */
  folds?: number;
}

/** One side's threshold (up: label up at or above it; down: label down at or below it). */
export interface SideRule {
  threshold: number;
  /** Fit-half answers on this side of the threshold, and how many of them people agree with. */
  fit: { n: number; correct: number };
  /** Check-half answers on this side of the threshold, how many people agree with, their share. */
  heldOut: number;
  correct: number;
  precision: number;
  /** One-sided exact (Clopper-Pearson) lower confidence bound of the check precision, at 1 - alpha / 2. */
  lower: number;
}

export interface LabelRule {
  up: SideRule | null;
  down: SideRule | null;
  /** Held-out answers, and how they were split: `fit` choose the thresholds, `check` certify them. */
  heldOut: number;
  /** Cross-fitting folds (every answer both chooses and checks, never the same rule); 1: one split. */
  folds: number;
  fit: number;
  check: number;
  /** The rule's precision on the check answers it labels (both sides), with its exact lower bound. */
  precision: number | null;
  lower: number | null;
  /** Check answers the rule labels, and their share of the check answers. */
  checkLabeled: number;
  labeledShare: number;
  /** Check answers a side must label to certify the target even if every one is right. */
  minCheck: number;
  /** Why a side (or both) labels nothing. */
  reasons: string[];
}

/** The label a rule gives a score: up, down, or none (too close to call). */
export function applyRule(rule: Pick<LabelRule, 'up' | 'down'>, score: number): boolean | null {
  if (rule.up && score >= rule.up.threshold) return true;
  if (rule.down && score <= rule.down.threshold) return false;
  return null;
}

/**
 * Clopper-Pearson's one-sided lower bound at 1 - `alpha` for `correct` of `n`: exact (the
 * binomial tail itself, no normal approximation), so it keeps its confidence at any n, which
 * Wilson's bound does not guarantee for the handful of answers a low rating rate leaves.
 */
export function exactLowerBound(correct: number, n: number, alpha: number): number {
  if (n === 0 || correct === 0) return 0;
  return betaQuantile(alpha, correct, n - correct + 1);
}

/** The fewest answers, all right, whose exact lower bound reaches `target`: alpha^(1/n) >= target. */
export function fewestToCertify(target: number, alpha: number): number {
  if (target <= 0) return 1;
  if (target >= 1) return Number.POSITIVE_INFINITY;
  return Math.max(1, Math.ceil(Math.log(alpha) / Math.log(target) - 1e-12));
}

/** FNV-1a: a fixed hash of an id, so an answer's half never depends on the run or the order. */
function hash(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * Splits the held-out answers into a fit half (chooses the thresholds) and a check half
 * (certifies them and measures their precision), `checkShare` of each outcome in check, by the
 * hash of the id: the precision reported never comes from answers that chose the threshold.
 */
export function splitHeldOut<P extends KeyedPoint>(
  points: readonly P[],
  checkShare: number,
): { fit: P[]; check: P[] } {
  const fit: P[] = [];
  const check: P[] = [];
  for (const up of [true, false]) {
    const stratum = points
      .filter((p) => p.up === up)
      .sort((a, b) => hash(a.id) - hash(b.id) || (a.id < b.id ? -1 : 1));
    stratum.forEach((p, k) => {
      (Math.floor((k + 1) * checkShare) > Math.floor(k * checkShare) ? check : fit).push(p);
    });
  }
  return { fit, check };
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
const covers = (side: 'up' | 'down', threshold: number) => (p: HeldOutPoint) =>
  side === 'up' ? p.score >= threshold : p.score <= threshold;

/**
 * A side's rule with what checking it found: `correct` of `checked` answers it labelled were
 * people's call too, and the exact lower bound on its precision from them.
 */
function checkedRule(
  chosen: { threshold: number; n: number; correct: number },
  checked: number,
  correct: number,
  alpha: number,
): SideRule {
  return {
    threshold: chosen.threshold,
    fit: { n: chosen.n, correct: chosen.correct },
    heldOut: checked,
    correct,
    precision: checked ? correct / checked : 0,
    lower: exactLowerBound(correct, checked, alpha),
  };
}

/**
 * One side's threshold, chosen on the fit half: the most permissive one whose fit precision,
 * were the check half to show the same at its size (the fit coverage scaled to it), would pass
 * the exact test. The fit half may choose freely (no confidence is claimed from it). Only fit
 * answers where the fit half's calibrated P(liked) leans this side's way are candidates.
 */
function chooseThreshold(
  fit: readonly HeldOutPoint[],
  side: 'up' | 'down',
  checkSize: number,
  o: { targetPrecision: number },
  alpha: number,
): { threshold: number; n: number; correct: number } | { reason: string } {
  const pUp = isotonicFit(fit);
  const candidates = fit
    .filter((p) => (side === 'up' ? pUp(p.score) > 0.5 : pUp(p.score) < 0.5))
    .sort((a, b) => (side === 'up' ? b.score - a.score : a.score - b.score));
  const word = side === 'up' ? 'liked' : 'disliked';
  if (candidates.length === 0)
    return { reason: `${side}: on no fit answer does the score make "${word}" the likelier outcome` };
  let best: { threshold: number; n: number; correct: number } | null = null;
  let closest = { precision: 0, n: 0 };
  for (const p of candidates) {
    const covered = fit.filter(covers(side, p.score));
    const correct = covered.filter((q) => q.up === (side === 'up')).length;
    const m = Math.round((covered.length * checkSize) / fit.length);
    if (exactLowerBound(Math.round((correct / covered.length) * m), m, alpha) >= o.targetPrecision)
      best = { threshold: p.score, n: covered.length, correct };
    else if (!best && correct / covered.length > closest.precision)
      closest = { precision: correct / covered.length, n: covered.length };
  }
  return (
    best ?? {
      reason: `${side}: no threshold's fit precision (at best ${pct(closest.precision)} of ${closest.n}) would show ${pct(o.targetPrecision)} on the ${checkSize} check answers`,
    }
  );
}

/**
 * The labelling rule for a labeller from its held-out scores. The held-out answers are split
 * (`splitHeldOut`): the fit half chooses each side's threshold, the check half certifies it
 * with one exact test per side at alpha / 2 (one test on answers that did not choose it: no
 * correction for the thresholds tried) and gives the precision to report. A side is kept only
 * if its check precision's lower bound reaches `targetPrecision`.
 */
export function chooseLabelRule(points: readonly KeyedPoint[], o: ReliabilityOptions): LabelRule {
  if ((o.folds ?? 1) > 1) return crossFitLabelRule(points, { ...o, folds: o.folds! });
  const { fit, check } = splitHeldOut(points, o.checkShare ?? 0.5);
  return ruleFromHalves(fit, check, o);
}

/** chooseLabelRule on halves already split: `fit` chooses the thresholds, `check` certifies them. */
export function ruleFromHalves(
  fit: readonly HeldOutPoint[],
  check: readonly HeldOutPoint[],
  o: ReliabilityOptions,
): LabelRule {
  const heldOut = fit.length + check.length;
  const alpha = o.alpha / 2;
  const minCheck = fewestToCertify(o.targetPrecision, alpha);
  const reasons: string[] = [];
  const side = (s: 'up' | 'down'): SideRule | null => {
    if (check.length < minCheck) {
      reasons.push(
        `${s}: ${heldOut} held-out answers leave ${check.length} to check on; showing ${pct(o.targetPrecision)} precision at ${1 - alpha} confidence needs at least ${minCheck} past the threshold even if all agree`,
      );
      return null;
    }
    const chosen = chooseThreshold(fit, s, check.length, o, alpha);
    if ('reason' in chosen) {
      reasons.push(chosen.reason);
      return null;
    }
    const covered = check.filter(covers(s, chosen.threshold));
    const correct = covered.filter((p) => p.up === (s === 'up')).length;
    const rule = checkedRule(chosen, covered.length, correct, alpha);
    if (rule.lower >= o.targetPrecision) return rule;
    reasons.push(
      `${s}: past the threshold the fit half chose (${pct(chosen.correct / chosen.n)} of ${chosen.n} right), the ${covered.length} check answers were ${pct(rule.precision)} right (lower bound ${pct(rule.lower)} < ${pct(o.targetPrecision)})`,
    );
    return null;
  };
  const rule = { up: side('up'), down: side('down') };
  // Up and down thresholds come from opposite sides of the fit half's monotone P(liked), so no
  // score is past both: each labelled check answer counts once.
  const labeled = check.map((p) => ({ p, label: applyRule(rule, p.score) })).filter((x) => x.label !== null);
  const correct = labeled.filter((x) => x.label === x.p.up).length;
  return {
    ...rule,
    heldOut,
    folds: 1,
    fit: fit.length,
    check: check.length,
    precision: labeled.length ? correct / labeled.length : null,
    lower: labeled.length ? exactLowerBound(correct, labeled.length, o.alpha) : null,
    checkLabeled: labeled.length,
    labeledShare: check.length ? labeled.length / check.length : 0,
    minCheck,
    reasons,
  };
}

/** Orders points by the fixed hash of their id (ties by id): the same order whatever the input's. */
const byHash = (a: KeyedPoint, b: KeyedPoint) => hash(a.id) - hash(b.id) || (a.id < b.id ? -1 : 1);

/**
 * Deals the held-out answers into `k` folds, each outcome dealt round-robin in the hash order of
 * the ids: every fold gets its share of liked and disliked answers (within one of each), and an
 * answer's fold never depends on the run or on the other answers' order.
 */
export function foldsOf<P extends KeyedPoint>(points: readonly P[], k: number): P[][] {
  const folds = Array.from({ length: k }, (): P[] => []);
  let dealt = 0;
  for (const up of [true, false])
    for (const p of points.filter((q) => q.up === up).sort(byHash)) folds[dealt++ % k]!.push(p);
  return folds;
}

/**
 * The labelling rule by cross-fitting. The held-out answers are dealt into `folds` folds
 * (foldsOf); each fold is labelled by the thresholds chosen (chooseThreshold) on the other folds,
 * so every held-out answer checks a rule it played no part in choosing, and the check counts of
 * all folds are pooled: `folds` times the check answers of a single split's check part, which is
 * what a low rating rate lacks. Each side is certified by one exact (Clopper-Pearson) test at
 * alpha / 2 on its pooled counts. What it certifies is the threshold-choosing procedure, run on
 * (folds - 1) / folds of the answers; the rule applied to unrated answers is the same procedure
 * run on all of them (the usual cross-fitting argument: one more fold's worth of answers only
 * steadies the choice). A side whose pooled lower bound misses `targetPrecision` labels nothing.
 */
export function crossFitLabelRule(
  points: readonly KeyedPoint[],
  o: ReliabilityOptions & { folds: number },
): LabelRule {
  const n = points.length;
  const alpha = o.alpha / 2;
  const minCheck = fewestToCertify(o.targetPrecision, alpha);
  const folds = foldsOf(points, o.folds);
  const reasons: string[] = [];
  // Each fold's labels, from the thresholds the other folds chose.
  const outOfFold = folds.flatMap((fold, k) => {
    const rest = folds.filter((_, j) => j !== k).flat();
    const foldRule = { up: null as number | null, down: null as number | null };
    for (const s of ['up', 'down'] as const) {
      const chosen = rest.length ? chooseThreshold(rest, s, n, o, alpha) : { reason: '' };
      if (!('reason' in chosen)) foldRule[s] = chosen.threshold;
    }
    return fold.map((p) => ({
      p,
      label:
        foldRule.up !== null && p.score >= foldRule.up
          ? true
          : foldRule.down !== null && p.score <= foldRule.down
            ? false
            : null,
    }));
  });
  const side = (s: 'up' | 'down'): SideRule | null => {
    if (n < minCheck) {
      reasons.push(
        `${s}: ${n} held-out answers; showing ${pct(o.targetPrecision)} precision at ${1 - alpha} confidence needs at least ${minCheck} past the threshold even if all agree`,
      );
      return null;
    }
    const chosen = chooseThreshold(points, s, n, o, alpha);
    if ('reason' in chosen) {
      reasons.push(chosen.reason);
      return null;
    }
    const labelled = outOfFold.filter((x) => x.label === (s === 'up'));
    const correct = labelled.filter((x) => x.p.up === (s === 'up')).length;
    const rule = checkedRule(chosen, labelled.length, correct, alpha);
    if (rule.lower >= o.targetPrecision) return rule;
    reasons.push(
      `${s}: the thresholds chosen on the other folds labelled ${labelled.length} held-out answers, ${pct(rule.precision)} right (lower bound ${pct(rule.lower)} < ${pct(o.targetPrecision)})`,
    );
    return null;
  };
  const rule = { up: side('up'), down: side('down') };
  // The certified precision is that of the sides kept, on the answers their out-of-fold rules labelled.
  const labeled = outOfFold.filter((x) => (x.label === true && rule.up) || (x.label === false && rule.down));
  const correct = labeled.filter((x) => x.label === x.p.up).length;
  return {
    ...rule,
    heldOut: n,
    folds: o.folds,
    fit: n,
    check: n,
    precision: labeled.length ? correct / labeled.length : null,
    lower: labeled.length ? exactLowerBound(correct, labeled.length, o.alpha) : null,
    checkLabeled: labeled.length,
    labeledShare: n ? labeled.length / n : 0,
    minCheck,
    reasons,
  };
}
