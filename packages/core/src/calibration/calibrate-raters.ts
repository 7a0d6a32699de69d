import type { NormalizedReward } from '../normalize/reward.js';
import {
  type CalibrationColumns,
  type CalibrationOptionsInput,
  calibrateRatingColumns,
} from './calibrate.js';
import type { Hyperparameters } from './model.js';

/** One rating of an item (an interaction) by a rater: a normalized reward or a raw scale value. */
export interface RaterRating {
  itemId: string;
  raterId: string;
  value: number;
  /** The feedback kind; `thumbs` ratings give thumbs-only items a Wilson interval. */
  kind?: string;
  /** Evidence weight (1 when absent), e.g. RewardMapping.evidenceWeight. */
  weight?: number;
}

export interface RaterCalibration {
  raterId: string;
  n: number;
  /** Offset the rater adds to every rating, in rating units (lenient > 0, harsh < 0). */
  bias: number;
  /** How strongly the rater's ratings follow quality (1 = the average rater; < 0 = inverted). */
  scale: number;
  noiseSd: number;
  /** Share of the rater's rating variance explained by item quality, in [0, 1]. */
  reliability: number;
  /** Correlation with the consensus of the other raters on the same items; null when undefined. */
  consensusCorrelation: number | null;
  /** How much the rater moves item scores: 1, a down-weight factor, or 0 when excluded. */
  weight: number;
  flagged: boolean;
  reason: string | null;
}

export interface ItemCalibration {
  itemId: string;
  n: number;
  /** Plain mean of the item's ratings, for comparison. */
  rawMean: number;
  /** Calibrated reward: the posterior mean of the item's quality. */
  reward: number;
  /** Posterior standard deviation. */
  sd: number;
  lower: number;
  upper: number;
  /** Wilson score interval on [-1, 1], for items rated by thumbs only. */
  wilson: { lower: number; upper: number } | null;
}

export interface CalibrationResult {
  raters: RaterCalibration[];
  items: ItemCalibration[];
  hyperparameters: Hyperparameters;
  iterations: number;
  converged: boolean;
  rounds: number;
}

/**
 * Dense indices for string ids, in first-seen order. Remembers the last id: ratings usually
 * arrive grouped by interaction (that is how the store reads them), and a string compare is much
 * cheaper than hashing into a map of a million ids.
 */
class IdIndex {
  readonly ids: string[] = [];
  private readonly index = new Map<string, number>();
  private lastId: string | undefined;
  private lastIndex = -1;

  of(id: string): number {
    if (id === this.lastId) return this.lastIndex;
    let index = this.index.get(id);
    if (index === undefined) {
      index = this.ids.length;
      this.index.set(id, index);
      this.ids.push(id);
    }
    this.lastId = id;
    this.lastIndex = index;
    return index;
  }
}

/**
 * Calibrates raters and items from ratings (see model.ts for the model): per rater bias, scale,
 * reliability and flags with reasons; per item the calibrated reward with its uncertainty.
 * For millions of ratings prefer calibrateRatingColumns, which skips the objects.
 */
export function calibrateRaters(
  ratings: readonly RaterRating[],
  options: CalibrationOptionsInput = {},
): CalibrationResult {
  const n = ratings.length;
  const item = new Int32Array(n);
  const rater = new Int32Array(n);
  const value = new Float64Array(n);
  const weight = new Float64Array(n);
  const isThumbs = new Uint8Array(n);
  const items = new IdIndex();
  const raters = new IdIndex();
  for (let k = 0; k < n; k++) {
    const rating = ratings[k]!;
    item[k] = items.of(rating.itemId);
    rater[k] = raters.of(rating.raterId);
    value[k] = rating.value;
    weight[k] = rating.weight ?? 1;
    isThumbs[k] = rating.kind === 'thumbs' ? 1 : 0;
  }
  const columns = {
    item,
    rater,
    value,
    weight,
    isThumbs,
    itemCount: items.ids.length,
    raterCount: raters.ids.length,
  };
  const result = calibrateRatingColumns(columns, options);
  return {
    raters: raters.ids.map((id, r) => raterRecord(id, r, result.raters)),
    items: items.ids.map((id, i) => itemRecord(id, i, result.items)),
    hyperparameters: result.hyperparameters,
    iterations: result.iterations,
    converged: result.converged,
    rounds: result.rounds,
  };
}

function raterRecord(raterId: string, r: number, c: CalibrationColumns['raters']): RaterCalibration {
  const correlation = c.consensusCorrelation[r]!;
  return {
    raterId,
    n: c.n[r]!,
    bias: c.bias[r]!,
    scale: c.scale[r]!,
    noiseSd: c.noiseSd[r]!,
    reliability: c.reliability[r]!,
    consensusCorrelation: Number.isFinite(correlation) ? correlation : null,
    weight: c.influence[r]!,
    flagged: c.flagged[r] === 1,
    reason: c.flagReason[r] ?? null,
  };
}

function itemRecord(itemId: string, i: number, c: CalibrationColumns['items']): ItemCalibration {
  const wilsonLower = c.wilsonLower[i]!;
  return {
    itemId,
    n: c.n[i]!,
    rawMean: c.rawMean[i]!,
    reward: c.reward[i]!,
    sd: c.sd[i]!,
    lower: c.lower[i]!,
    upper: c.upper[i]!,
    wilson: Number.isNaN(wilsonLower) ? null : { lower: wilsonLower, upper: c.wilsonUpper[i]! },
  };
}

/** Calibration input from normalized feedback: the interaction is the item, the kind weight the weight. */
export function ratingsFromRewards(rewards: readonly NormalizedReward[]): RaterRating[] {
  return rewards.map((r) => ({
    itemId: r.interactionId,
    raterId: r.raterId,
    value: r.reward,
    kind: r.kind,
    weight: r.weight,
  }));
}
