import { z } from 'zod';
import { normalQuantile, thumbsRewardInterval } from './distributions.js';
import { type ConsensusStatistics, consensusStatistics, flagReason } from './flagging.js';
import {
  fitModel,
  type Hyperparameters,
  initialState,
  type ModelOptions,
  type ModelState,
  type PreparedRatings,
  prepareRatings,
  type RatingColumns,
} from './model.js';

const Probability = z.number().gt(0).lt(1);

/**
 * Bounds on the model's settings. Ratings are normalized to [-1, 1], so a prior mean or spread
 * beyond 1e6 means nothing, and values near 1e308 or 1e-320 overflow or underflow the fit into
 * NaN/Infinity, which no database column takes: such settings are a 400, not a failed write.
 */
const PRIOR_LIMIT = 1e6;
const Spread = z.number().min(1e-6).max(PRIOR_LIMIT);

/**
 * Options of calibrateRaters. Defaults assume ratings normalized to [-1, 1] (see normalize/);
 * the thresholds in rating units (constantMaxSd, constantMinConsensusSd) scale with other ranges.
 */
export const CalibrationOptions = z.strictObject({
  maxIterations: z.number().int().positive().max(10_000).default(200),
  /** Converged when no item's posterior mean moves more than this in one iteration. */
  tolerance: z.number().min(1e-12).max(1).default(1e-4),
  /** Fit a scale per rater (harsh/lenient raters who also use more or less of the range). */
  fitScale: z.boolean().default(true),
  /** Pseudo-ratings of pooled noise added to each rater's noise estimate (shrinkage). */
  noisePriorStrength: z.number().nonnegative().max(PRIOR_LIMIT).default(5),
  minNoiseSd: z.number().min(1e-6).max(1000).default(0.01),
  /** Two-sided level of the item intervals. */
  intervalLevel: Probability.default(0.95),
  /** Fixed priors instead of empirical Bayes estimates. */
  priors: z
    .strictObject({
      itemMean: z.number().min(-PRIOR_LIMIT).max(PRIOR_LIMIT).optional(),
      itemSd: Spread.optional(),
      biasSd: Spread.optional(),
      scaleSd: Spread.optional(),
    })
    .prefault({}),
  flagging: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** exclude: flagged raters no longer move item scores; downweight: they count `downweightFactor`. */
      action: z.enum(['exclude', 'downweight']).default('exclude'),
      downweightFactor: z.number().min(0).max(1).default(0.1),
      minRatings: z.number().int().min(4).default(10),
      significance: Probability.default(0.01),
      minConsensusCorrelation: z.number().min(-1).max(1).default(0),
      constantMaxSd: z.number().nonnegative().max(PRIOR_LIMIT).default(0.02),
      constantMinConsensusSd: z.number().nonnegative().max(PRIOR_LIMIT).default(0.1),
      maxNoiseRatio: z.number().positive().max(PRIOR_LIMIT).default(6),
      /** Flag, refit without the flagged raters, flag again with the cleaner consensus: at most this often. */
      maxRounds: z.number().int().min(1).max(100).default(3),
    })
    .prefault({}),
});
export type CalibrationOptionsInput = z.input<typeof CalibrationOptions>;
export type CalibrationOptions = z.output<typeof CalibrationOptions>;

/** Calibration result in columns (indices as in the input columns). */
export interface CalibrationColumns {
  raters: {
    n: Int32Array;
    bias: Float64Array;
    scale: Float64Array;
    noiseSd: Float64Array;
    /** Share of the rater's rating variance that is item quality: s^2 var(q) / (s^2 var(q) + noise). */
    reliability: Float64Array;
    /** Correlation with the leave-one-out consensus (NaN when undefined). */
    consensusCorrelation: Float64Array;
    /** Weight on item scores after flagging: 1, the down-weight factor, or 0. */
    influence: Float64Array;
    flagged: Uint8Array;
    flagReason: (string | null)[];
  };
  items: {
    n: Int32Array;
    rawMean: Float64Array;
    /** Posterior mean of quality, in the units of the average (unbiased, unit-scale) rater. */
    reward: Float64Array;
    sd: Float64Array;
    lower: Float64Array;
    upper: Float64Array;
    /** Wilson interval on [-1, 1] for items rated by thumbs only (NaN otherwise). */
    wilsonLower: Float64Array;
    wilsonUpper: Float64Array;
  };
  hyperparameters: Hyperparameters;
  /** Iterations summed over all fits. */
  iterations: number;
  /** Whether the last fit converged. */
  converged: boolean;
  /** Fits run: a screening fit when flagging, the full fit, and a refit per round that flagged someone. */
  rounds: number;
}

/**
 * Fits the rater model on columns (see model.ts), flags untrustworthy raters, refits without them
 * and reports both. `isThumbs[k]` = 1 marks a thumbs rating (for the Wilson intervals).
 */
export function calibrateRatingColumns(
  columns: RatingColumns,
  optionsInput: CalibrationOptionsInput = {},
): CalibrationColumns {
  const options = CalibrationOptions.parse(optionsInput);
  return calibratePrepared(prepareRatings(columns), options).result;
}

/** A full fit of prepared ratings, with the state it ended in (what a recalibration snapshot keeps). */
export function calibratePrepared(
  data: PreparedRatings,
  options: CalibrationOptions,
): { result: CalibrationColumns; state: ModelState; flags: Flags; stats: ConsensusStatistics } {
  const modelOptions = { ...options, ...options.priors };
  const { flagging } = options;
  const state = initialState(data, modelOptions);
  const flags: Flags = {
    flagged: new Uint8Array(data.raterCount),
    reasons: new Array(data.raterCount).fill(null),
  };
  let iterations = 0;
  let rounds = 0;
  const fit = (fitOptions: ModelOptions) => {
    rounds++;
    const result = fitModel(data, state, fitOptions);
    iterations += result.iterations;
    return result;
  };
  let flagRounds = 0;
  if (flagging.enabled) {
    // Screening fit: bias only, loose tolerance. Without scales there is no slow trade-off between
    // scale and quality to settle (which inverted raters drag out), and an inverted rater cannot
    // hide behind a negative scale; the consensus is good enough to flag the gross cases.
    fit({ ...modelOptions, fitScale: false, tolerance: Math.max(modelOptions.tolerance, 1e-3) });
    flagRounds++;
    flagNewRaters(data, state, consensusStatistics(data, state), flagging, flags);
  }
  // Fit, flag with the cleaner consensus, refit without the newly flagged, until none is new.
  let last: { converged: boolean };
  let stats: ConsensusStatistics;
  for (;;) {
    last = fit(modelOptions);
    stats = consensusStatistics(data, state);
    if (!flagging.enabled || flagRounds >= flagging.maxRounds) break;
    flagRounds++;
    if (flagNewRaters(data, state, stats, flagging, flags) === 0) break;
  }
  const result: CalibrationColumns = {
    raters: raterColumns(data, state, stats.correlation, flags),
    items: itemColumns(data, state, options.intervalLevel),
    hyperparameters: { ...state.hyper },
    iterations,
    converged: last.converged,
    rounds,
  };
  return { result, state, flags, stats };
}

export interface Flags {
  flagged: Uint8Array;
  reasons: (string | null)[];
}

/** Flags raters not flagged before; their influence drops at once. Returns how many are new. */
export function flagNewRaters(
  data: PreparedRatings,
  state: ModelState,
  stats: ConsensusStatistics,
  flagging: CalibrationOptions['flagging'],
  flags: Flags,
): number {
  let newlyFlagged = 0;
  for (let r = 0; r < data.raterCount; r++) {
    if (flags.flagged[r]) continue;
    const reason = flagReason(r, data, state, stats, flagging);
    if (reason === null) continue;
    flags.flagged[r] = 1;
    flags.reasons[r] = reason;
    state.influence[r] = flagging.action === 'exclude' ? 0 : flagging.downweightFactor;
    newlyFlagged++;
  }
  return newlyFlagged;
}

export function raterColumns(
  data: PreparedRatings,
  state: ModelState,
  correlation: Float64Array,
  flags: Flags,
): CalibrationColumns['raters'] {
  const R = data.raterCount;
  const noiseSd = new Float64Array(R);
  const reliability = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    noiseSd[r] = Math.sqrt(state.noiseVar[r]!);
    // A negative scale carries no usable signal under this policy (we never flip a rater).
    const signal = Math.max(0, state.scale[r]!) ** 2 * state.hyper.itemVar;
    reliability[r] = signal / (signal + state.noiseVar[r]!);
  }
  return {
    n: data.raterCountOf,
    bias: state.bias,
    scale: state.scale,
    noiseSd,
    reliability,
    consensusCorrelation: correlation,
    influence: state.influence,
    flagged: flags.flagged,
    flagReason: flags.reasons,
  };
}

/**
 * The variance behind an item's reported interval. The fit's own posterior variance treats each
 * rater's bias and scale as known; with a few dozen ratings per rater they are estimates, and an
 * interval that ignores that covered the truth only ~89% of the time at a nominal 95% (measured
 * on synthetic raters). Each rating's noise is therefore widened by the rater's bias and scale
 * posterior variances (the scale's times the item's squared quality) before the precisions add up.
 */
function intervalVariance(data: PreparedRatings, state: ModelState, i: number): number {
  const m = state.itemPostMean[i]!;
  let precision = 0;
  for (let k = data.itemStart[i]!; k < data.itemStart[i + 1]!; k++) {
    const r = data.rater[k]!;
    const influence = state.influence[r]!;
    if (influence === 0) continue;
    const w = data.weight === null ? 1 : data.weight[k]!;
    const scale = state.scale[r]!;
    const noise = state.noiseVar[r]! / w + state.biasPostVar[r]! + m * m * state.scalePostVar[r]!;
    precision += (influence * scale * scale) / noise;
  }
  return 1 / (1 / state.hyper.itemVar + precision);
}

export function itemColumns(
  data: PreparedRatings,
  state: ModelState,
  level: number,
): CalibrationColumns['items'] {
  const I = data.itemCount;
  const items: CalibrationColumns['items'] = {
    n: new Int32Array(I),
    rawMean: new Float64Array(I),
    reward: state.itemPostMean,
    sd: new Float64Array(I),
    lower: new Float64Array(I),
    upper: new Float64Array(I),
    wilsonLower: new Float64Array(I),
    wilsonUpper: new Float64Array(I),
  };
  const interval = { level, z: normalQuantile(1 - (1 - level) / 2) };
  for (let i = 0; i < I; i++) fillItemColumns(data, state, items, i, interval);
  return items;
}

/**
 * Item i's entries of the item columns at the current state (all but the reward, which is the
 * state's posterior mean); an incremental recalibration refills only the items it moved.
 * `interval.z` is the normal quantile of the two-sided `interval.level`.
 */
export function fillItemColumns(
  data: PreparedRatings,
  state: ModelState,
  items: CalibrationColumns['items'],
  i: number,
  interval: { level: number; z: number },
): void {
  const { z } = interval;
  const start = data.itemStart[i]!;
  const end = data.itemStart[i + 1]!;
  items.n[i] = end - start;
  let sum = 0;
  for (let k = start; k < end; k++) sum += data.value[k]!;
  items.rawMean[i] = end > start ? sum / (end - start) : Number.NaN;
  const sd = Math.sqrt(intervalVariance(data, state, i));
  items.sd[i] = sd;
  items.lower[i] = state.itemPostMean[i]! - z * sd;
  items.upper[i] = state.itemPostMean[i]! + z * sd;
  thumbsInterval(data, state, items, i, interval.level);
}

/** The Wilson interval of an item whose counted ratings (from raters with influence) are all thumbs; NaN otherwise. */
function thumbsInterval(
  data: PreparedRatings,
  state: ModelState,
  items: CalibrationColumns['items'],
  i: number,
  level: number,
): void {
  items.wilsonLower[i] = Number.NaN;
  items.wilsonUpper[i] = Number.NaN;
  if (data.isThumbs === null) return;
  let ups = 0;
  let thumbs = 0;
  for (let k = data.itemStart[i]!; k < data.itemStart[i + 1]!; k++) {
    if (state.influence[data.rater[k]!] === 0) continue;
    if (!data.isThumbs[k]) return;
    thumbs++;
    if (data.value[k]! > 0) ups++;
  }
  if (thumbs === 0) return;
  const wilson = thumbsRewardInterval(ups, thumbs, level);
  items.wilsonLower[i] = wilson.lower;
  items.wilsonUpper[i] = wilson.upper;
}
