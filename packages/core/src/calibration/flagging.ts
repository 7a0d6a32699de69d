import { chiSquareUpperTail, correlationUpperBound } from './distributions.js';
import type { ModelState, PreparedRatings, RaterIndex } from './model.js';

export interface FlaggingOptions {
  /** Raters with fewer ratings are never flagged: too little evidence either way. */
  minRatings: number;
  /** One-sided significance level of the tests. */
  significance: number;
  /** Flag raters whose correlation with the consensus is significantly below this. */
  minConsensusCorrelation: number;
  /** A rater whose ratings have at most this standard deviation is constant... */
  constantMaxSd: number;
  /** ...when the consensus on the same items varies at least this much. */
  constantMinConsensusSd: number;
  /** Flag raters whose residual variance is this many times the pooled noise (and significant). */
  maxNoiseRatio: number;
}

/** How each rater's ratings relate to the leave-one-out consensus on the same items. */
export interface ConsensusStatistics {
  /** Ratings on items that other raters also inform. */
  informative: Int32Array;
  /** Pearson correlation of the rater's ratings with the consensus of the others (NaN if undefined). */
  correlation: Float64Array;
  /** Standard deviation of the rater's ratings, all of them. */
  ratingSd: Float64Array;
  /** Standard deviation of the leave-one-out consensus over the rater's informative ratings. */
  consensusSd: Float64Array;
}

/**
 * For every rating, the consensus of the *other* raters on its item: the item posterior with this
 * rating's contribution removed, O(1) per rating from the stored precision sums. Comparing a rater
 * with a consensus that excludes them keeps a rater from agreeing with themself, which matters on
 * items with only two or three ratings.
 */
export function consensusStatistics(data: PreparedRatings, state: ModelState): ConsensusStatistics {
  const R = data.raterCount;
  const informative = new Int32Array(R);
  const sums = new Float64Array(R * SUMS);
  const { itemStart, rater, value, weight } = data;
  const { bias, scale, hyper } = state;
  const gain = new Float64Array(R);
  for (let r = 0; r < R; r++) gain[r] = (state.influence[r]! * scale[r]!) / state.noiseVar[r]!;
  const priorPrecision = 1 / hyper.itemVar;
  const priorSum = hyper.itemMean * priorPrecision;
  for (let i = 0; i < data.itemCount; i++) {
    const start = itemStart[i]!;
    const end = itemStart[i + 1]!;
    let itemPrecision = 0;
    let itemSum = 0;
    for (let k = start; k < end; k++) {
      const r = rater[k]!;
      const g = (weight === null ? 1 : weight[k]!) * gain[r]!;
      itemPrecision += g * scale[r]!;
      itemSum += g * (value[k]! - bias[r]!);
    }
    for (let k = start; k < end; k++) {
      const r = rater[k]!;
      const g = (weight === null ? 1 : weight[k]!) * gain[r]!;
      const othersPrecision = itemPrecision - g * scale[r]!;
      // Nobody else informs this item: its leave-one-out consensus is just the prior.
      if (othersPrecision <= 1e-9 * itemPrecision + 1e-12) continue;
      const y = value[k]!;
      const c = (priorSum + itemSum - g * (y - bias[r]!)) / (priorPrecision + othersPrecision);
      const o = r * SUMS;
      informative[r]!++;
      sums[o]! += y;
      sums[o + 1]! += y * y;
      sums[o + 2]! += c;
      sums[o + 3]! += c * c;
      sums[o + 4]! += y * c;
    }
  }
  const stats: ConsensusStatistics = {
    informative,
    correlation: new Float64Array(R),
    ratingSd: new Float64Array(R),
    consensusSd: new Float64Array(R),
  };
  for (let r = 0; r < R; r++) finishRater(data, r, sums, r * SUMS, stats);
  return stats;
}

/** Sums per rater over their informative ratings: y, y^2, c, c^2, y c (c the leave-one-out consensus). */
const SUMS = 5;

/** A rater's correlation and sds from their sums (at `o` in `sums`); `stats.informative[r]` already counted. */
function finishRater(
  data: PreparedRatings,
  r: number,
  sums: Float64Array,
  o: number,
  stats: ConsensusStatistics,
): void {
  const n = stats.informative[r]!;
  const varY = n > 0 ? sums[o + 1]! / n - (sums[o]! / n) ** 2 : 0;
  const varC = n > 0 ? sums[o + 3]! / n - (sums[o + 2]! / n) ** 2 : 0;
  const cov = n > 0 ? sums[o + 4]! / n - (sums[o]! / n) * (sums[o + 2]! / n) : 0;
  stats.consensusSd[r] = Math.sqrt(Math.max(0, varC));
  stats.correlation[r] = varY > 1e-12 && varC > 1e-12 ? cov / Math.sqrt(varY * varC) : Number.NaN;
  const w = data.raterWeight[r]!;
  const meanAll = w > 0 ? data.raterSumY[r]! / w : 0;
  stats.ratingSd[r] = w > 0 ? Math.sqrt(Math.max(0, data.raterSumYY[r]! / w - meanAll * meanAll)) : 0;
}

/**
 * consensusStatistics for one rater, written into `stats` at r: the same sums, read through the
 * rater's own ratings instead of a pass over all ratings, so an incremental recalibration
 * re-judges the raters it touched in time proportional to them. Each item's precision and
 * precision-weighted sum come from its posterior (1/v - prior precision, m/v - prior sum: what
 * the item pass summed) instead of re-reading its other ratings, which costs three random reads
 * per rating instead of one per rating of every item the rater rated. The posteriors must be
 * current with the raters (as after a fit or the incremental sweeps).
 */
export function raterConsensusStatistics(
  data: PreparedRatings,
  byRater: RaterIndex,
  state: ModelState,
  r: number,
  stats: ConsensusStatistics,
): void {
  const { itemPostMean, itemPostVar, hyper } = state;
  const priorPrecision = 1 / hyper.itemVar;
  const priorSum = hyper.itemMean * priorPrecision;
  const gain = (state.influence[r]! * state.scale[r]!) / state.noiseVar[r]!;
  const ownPrecision = gain * state.scale[r]!;
  const bias = state.bias[r]!;
  let informative = 0;
  let sy = 0;
  let syy = 0;
  let sc = 0;
  let scc = 0;
  let syc = 0;
  for (let j = byRater.start[r]!; j < byRater.start[r + 1]!; j++) {
    const i = byRater.item[j]!;
    const w = byRater.weight === null ? 1 : byRater.weight[j]!;
    const v = itemPostVar[i]!;
    const itemPrecision = 1 / v - priorPrecision;
    const othersPrecision = itemPrecision - w * ownPrecision;
    if (othersPrecision <= 1e-9 * itemPrecision + 1e-12) continue;
    const y = byRater.value[j]!;
    const itemSum = itemPostMean[i]! / v - priorSum;
    const c = (priorSum + itemSum - w * gain * (y - bias)) / (priorPrecision + othersPrecision);
    informative++;
    sy += y;
    syy += y * y;
    sc += c;
    scc += c * c;
    syc += y * c;
  }
  stats.informative[r] = informative;
  scratch[0] = sy;
  scratch[1] = syy;
  scratch[2] = sc;
  scratch[3] = scc;
  scratch[4] = syc;
  finishRater(data, r, scratch, 0, stats);
}

/** raterConsensusStatistics' sums, reused: an allocation per rater cost more than the sums. */
const scratch = new Float64Array(SUMS);

const fmt = (x: number, digits = 2) => x.toFixed(digits);

/**
 * Why a rater should not be trusted, or null. Three rules, each with an effect size and enough
 * ratings so that an honest but unlucky rater is not flagged:
 * - constant: (almost) the same rating everywhere while the consensus on those items varies;
 * - disagrees: correlation with the leave-one-out consensus significantly below the threshold
 *   (Fisher z bound), e.g. a rater who rates the opposite of everyone else;
 * - noisy: residual variance many times the pooled noise (chi-square test).
 */
export function flagReason(
  r: number,
  data: PreparedRatings,
  state: ModelState,
  stats: ConsensusStatistics,
  options: FlaggingOptions,
): string | null {
  const n = data.raterCountOf[r]!;
  if (n < options.minRatings) return null;
  const sd = stats.ratingSd[r]!;
  const consensusSd = stats.consensusSd[r]!;
  if (
    sd <= options.constantMaxSd &&
    stats.informative[r]! >= 2 &&
    consensusSd >= options.constantMinConsensusSd
  ) {
    return (
      `constant rater: ${n} ratings with sd ${fmt(sd, 3)} while the consensus on the same items ` +
      `varies with sd ${fmt(consensusSd)}`
    );
  }
  const informative = stats.informative[r]!;
  const correlation = stats.correlation[r]!;
  if (informative >= options.minRatings && Number.isFinite(correlation)) {
    const bound = correlationUpperBound(correlation, informative, options.significance);
    if (bound < options.minConsensusCorrelation) {
      const confidence = `${fmt(100 * (1 - options.significance), 1)}%`;
      return (
        `disagrees with the leave-one-out consensus: r = ${fmt(correlation)} over ${informative} ` +
        `shared items, upper ${confidence} bound ${fmt(bound)} < ${options.minConsensusCorrelation}`
      );
    }
  }
  const pooled = state.hyper.noiseVar;
  const weight = data.raterWeight[r]!;
  if (weight > 0 && pooled > 0) {
    const ratio = state.rss[r]! / (weight * pooled);
    const p = chiSquareUpperTail(state.rss[r]! / pooled, n);
    if (ratio > options.maxNoiseRatio && p < options.significance) {
      return `noise far beyond the others: residual variance ${fmt(ratio, 1)}x the pooled noise over ${n} ratings (p = ${p.toExponential(1)})`;
    }
  }
  return null;
}
