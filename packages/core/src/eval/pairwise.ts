/**
 * Pairwise comparison of a candidate against a baseline (the production model): per-item
 * verdicts from a judge or a reward model, and the win rate with an interval.
 */
import { betaQuantile } from '../experiments/special.js';

export type PairVerdict = 'candidate' | 'baseline' | 'tie';
/** What a judge says about one presentation: the answer shown first (A), second (B), or a tie. */
export type PositionVerdict = 'A' | 'B' | 'tie';

/**
 * One item judged twice, candidate first and then baseline first: a model wins only when it wins
 * in both orders, so a judge that favours a position turns its preference into a tie instead of
 * a win. An unparseable order (null) counts as a tie.
 */
export function combineOrders(
  candidateFirst: PositionVerdict | null,
  baselineFirst: PositionVerdict | null,
): PairVerdict {
  const first = candidateFirst === 'A' ? 'candidate' : candidateFirst === 'B' ? 'baseline' : 'tie';
  const second = baselineFirst === 'B' ? 'candidate' : baselineFirst === 'A' ? 'baseline' : 'tie';
  if (first === second) return first;
  // One order says tie and the other a winner: a half-hearted preference, kept as a tie.
  return 'tie';
}

/** Verdict from reward-model scores; differences within `tieMargin` are ties. */
export function rewardVerdict(candidate: number, baseline: number, tieMargin = 0): PairVerdict {
  if (Math.abs(candidate - baseline) <= tieMargin) return 'tie';
  return candidate > baseline ? 'candidate' : 'baseline';
}

export interface WinRate {
  n: number;
  wins: number;
  losses: number;
  ties: number;
  /** (wins + ties / 2) / n; NaN when n = 0. */
  rate: number;
  /** Equal-tailed Jeffreys interval of the rate (ties count half a win). */
  lower: number;
  upper: number;
  level: number;
}

/**
 * The candidate's win rate with ties as half a win, and a Jeffreys interval (Beta(s + 1/2,
 * n - s + 1/2) quantiles): well calibrated at small n and never outside [0, 1], unlike the Wald
 * interval, which matters because a gate reads the lower bound.
 */
export function winRate(verdicts: readonly PairVerdict[], level = 0.95): WinRate {
  let wins = 0;
  let losses = 0;
  let ties = 0;
  for (const v of verdicts) {
    if (v === 'candidate') wins++;
    else if (v === 'baseline') losses++;
    else ties++;
  }
  const n = verdicts.length;
  if (n === 0) return { n, wins, losses, ties, rate: Number.NaN, lower: 0, upper: 1, level };
  const s = wins + ties / 2;
  const tail = (1 - level) / 2;
  return {
    n,
    wins,
    losses,
    ties,
    rate: s / n,
    lower: s === 0 ? 0 : betaQuantile(tail, s + 0.5, n - s + 0.5),
    upper: s === n ? 1 : betaQuantile(1 - tail, s + 0.5, n - s + 0.5),
    level,
  };
}

/** A paired comparison's decisive items (ties dropped) and the interval of the candidate's share. */
export interface SignInterval {
  /** Items one model won: wins + losses. */
  decisive: number;
  /** wins / decisive; NaN when nothing was decisive. */
  share: number;
  lower: number;
  upper: number;
  level: number;
}

/**
 * The sign test's view of paired verdicts: among items where one model won, the candidate's share,
 * with an equal-tailed Jeffreys interval. "Better" (share > 1/2) is the same hypothesis as a win
 * rate with ties as half a win above 1/2, but ties carry no information about which model is
 * better, and counting them as half-successes of a binomial overstates the variance: the sign
 * test decides with the same error rate on fewer items. This is what the gates decide on.
 */
export function signInterval(wins: number, losses: number, level = 0.95): SignInterval {
  const decisive = wins + losses;
  if (decisive === 0) return { decisive, share: Number.NaN, lower: 0, upper: 1, level };
  const tail = (1 - level) / 2;
  return {
    decisive,
    share: wins / decisive,
    lower: wins === 0 ? 0 : betaQuantile(tail, wins + 0.5, losses + 0.5),
    upper: losses === 0 ? 1 : betaQuantile(1 - tail, wins + 0.5, losses + 0.5),
    level,
  };
}
