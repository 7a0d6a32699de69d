/**
 * The rater model, on columns of typed arrays so that millions of ratings fit in a few flat
 * buffers and every iteration is one linear pass with no allocation.
 *
 *   rating[k] = bias[r] + scale[r] * quality[i] + noise,   noise ~ N(0, noiseVar[r] / weight[k])
 *   quality[i] ~ N(itemMean, itemVar),  bias[r] ~ N(0, biasVar),  scale[r] ~ N(1, scaleVar)
 *   noiseVar[r] shrunk toward the pooled noise with `noisePriorStrength` pseudo-ratings
 *
 * Fitted by EM-style alternating updates: the exact Gaussian posterior of each item's quality given
 * the raters, then each rater's (bias, scale) posterior mode given the items' posterior moments
 * (a 2x2 ridge regression), then the rater noise, then the prior variances by empirical Bayes,
 * then a parameter-expansion move along the directions the likelihood cannot see (PX-EM); the
 * whole iteration is accelerated by SQUAREM. O(ratings) per iteration.
 * The priors are what shrink raters and items with few ratings toward the population; the bias
 * prior centred on 0 pins the average rater as unbiased, the scale prior at 1 pins quality to the
 * average rater's units.
 */

/** Ratings as parallel columns; ids already mapped to dense indices. */
export interface RatingColumns {
  item: Int32Array;
  rater: Int32Array;
  value: Float64Array;
  /** Evidence weight per rating (1 when absent). */
  weight?: Float64Array | null;
  /** 1 marks a thumbs rating (for the Wilson intervals of thumbs-only items). */
  isThumbs?: Uint8Array | null;
  itemCount: number;
  raterCount: number;
}

export interface ModelOptions {
  maxIterations: number;
  /** Stop when no item's posterior mean moves by more than this in an iteration. */
  tolerance: number;
  fitScale: boolean;
  noisePriorStrength: number;
  minNoiseSd: number;
  /** Fixed prior values; estimated by empirical Bayes when absent. */
  itemMean?: number | undefined;
  itemSd?: number | undefined;
  biasSd?: number | undefined;
  scaleSd?: number | undefined;
}

/** Ratings sorted by item (counting sort), so the item pass reads and writes sequentially. */
export interface PreparedRatings {
  itemCount: number;
  raterCount: number;
  /** Ratings of item i are at positions itemStart[i] .. itemStart[i + 1] - 1. */
  itemStart: Int32Array;
  rater: Int32Array;
  value: Float64Array;
  /** null when every weight is 1 (the hot loop then reads one column less). */
  weight: Float64Array | null;
  /** null when no rating is marked thumbs. */
  isThumbs: Uint8Array | null;
  raterCountOf: Int32Array;
  raterWeight: Float64Array;
  raterSumY: Float64Array;
  raterSumYY: Float64Array;
}

export interface Hyperparameters {
  itemMean: number;
  itemVar: number;
  biasVar: number;
  scaleVar: number;
  noiseVar: number;
}

/** Everything an iteration reads and writes; kept between fits so a refit starts warm. */
export interface ModelState {
  bias: Float64Array;
  scale: Float64Array;
  noiseVar: Float64Array;
  biasPostVar: Float64Array;
  scalePostVar: Float64Array;
  /** Residual sum of squares of each rater at the last update (weighted). */
  rss: Float64Array;
  /** How much a rater moves item estimates: 1, a down-weight factor, or 0 when excluded. */
  influence: Float64Array;
  itemPostMean: Float64Array;
  itemPostVar: Float64Array;
  hyper: Hyperparameters;
}

const VAR_FLOOR = 1e-8;
const EXCLUDED_PRIOR_PRECISION = 1e-6;

/**
 * Per-rater working block, one 64-byte cache line per rater so that the random access of the hot
 * loop touches one line: what the item pass reads (precision gain, gain, gain * bias) and what it
 * accumulates for the rater pass (sums of m, m^2 + v, y * m over the rater's items).
 */
export const BLOCK = 8;
const PRECISION_GAIN = 0;
const GAIN = 1;
const GAIN_BIAS = 2;
export const SUM_M = 3;
export const SUM_MM = 4;
export const SUM_YM = 5;

export function prepareRatings(columns: RatingColumns): PreparedRatings {
  const { item, rater, value, itemCount, raterCount } = columns;
  const n = item.length;
  const weights = columns.weight ?? null;
  if (rater.length !== n || value.length !== n || (weights && weights.length !== n)) {
    throw new RangeError('rating columns must have the same length');
  }
  const itemStart = new Int32Array(itemCount + 1);
  for (let k = 0; k < n; k++) {
    const i = item[k]!;
    if (!(i >= 0 && i < itemCount)) throw new RangeError(`item index ${i} out of range at rating ${k}`);
    itemStart[i + 1]!++;
  }
  for (let i = 0; i < itemCount; i++) itemStart[i + 1]! += itemStart[i]!;
  const cursor = itemStart.slice(0, itemCount);
  const unitWeights = !weights || weights.every((w) => w === 1);
  const sortedRater = new Int32Array(n);
  const sortedValue = new Float64Array(n);
  const sortedWeight = unitWeights ? null : new Float64Array(n);
  const thumbs = columns.isThumbs ?? null;
  const sortedThumbs = thumbs?.some((t) => t === 1) ? new Uint8Array(n) : null;
  const raterCountOf = new Int32Array(raterCount);
  const raterWeight = new Float64Array(raterCount);
  const raterSumY = new Float64Array(raterCount);
  const raterSumYY = new Float64Array(raterCount);
  for (let k = 0; k < n; k++) {
    const r = rater[k]!;
    if (!(r >= 0 && r < raterCount)) throw new RangeError(`rater index ${r} out of range at rating ${k}`);
    const y = value[k]!;
    const w = weights ? weights[k]! : 1;
    if (!Number.isFinite(y) || !(w >= 0 && w < Number.POSITIVE_INFINITY)) {
      throw new RangeError(`rating ${k} has a non-finite value or weight`);
    }
    const at = cursor[item[k]!]!++;
    sortedRater[at] = r;
    sortedValue[at] = y;
    if (sortedWeight) sortedWeight[at] = w;
    if (sortedThumbs) sortedThumbs[at] = thumbs![k]!;
    raterCountOf[r]!++;
    raterWeight[r]! += w;
    raterSumY[r]! += w * y;
    raterSumYY[r]! += w * y * y;
  }
  return {
    itemCount,
    raterCount,
    itemStart,
    rater: sortedRater,
    value: sortedValue,
    weight: sortedWeight,
    isThumbs: sortedThumbs,
    raterCountOf,
    raterWeight,
    raterSumY,
    raterSumYY,
  };
}

/**
 * The ratings rater by rater: each one's item, value and weight (copies, so a rater's own ratings
 * read sequentially, and an insertion elsewhere in the item-sorted columns moves nothing here).
 */
export interface RaterIndex {
  /** Ratings of rater r are entries start[r] .. start[r + 1] - 1. */
  start: Int32Array;
  item: Int32Array;
  value: Float64Array;
  /** null when every weight is 1 (as PreparedRatings.weight). */
  weight: Float64Array | null;
}

export function indexByRater(data: PreparedRatings): RaterIndex {
  const n = data.rater.length;
  const start = new Int32Array(data.raterCount + 1);
  for (let r = 0; r < data.raterCount; r++) start[r + 1] = start[r]! + data.raterCountOf[r]!;
  const cursor = start.slice(0, data.raterCount);
  const item = new Int32Array(n);
  const value = new Float64Array(n);
  const weight = data.weight === null ? null : new Float64Array(n);
  for (let i = 0; i < data.itemCount; i++) {
    for (let k = data.itemStart[i]!; k < data.itemStart[i + 1]!; k++) {
      const at = cursor[data.rater[k]!]!++;
      item[at] = i;
      value[at] = data.value[k]!;
      if (weight) weight[at] = data.weight![k]!;
    }
  }
  return { start, item, value, weight };
}

/** Starting point: unbiased unit-scale raters, priors from the spread of all ratings. */
export function initialState(data: PreparedRatings, options: ModelOptions): ModelState {
  let w = 0;
  let sy = 0;
  let syy = 0;
  for (let r = 0; r < data.raterCount; r++) {
    w += data.raterWeight[r]!;
    sy += data.raterSumY[r]!;
    syy += data.raterSumYY[r]!;
  }
  const mean = w > 0 ? sy / w : 0;
  const variance = Math.max(w > 0 ? syy / w - mean * mean : 1, 1e-4);
  const hyper: Hyperparameters = {
    itemMean: options.itemMean ?? mean,
    itemVar: options.itemSd !== undefined ? options.itemSd ** 2 : variance / 2,
    biasVar: options.biasSd !== undefined ? options.biasSd ** 2 : variance / 4,
    scaleVar: options.scaleSd !== undefined ? options.scaleSd ** 2 : 0.25,
    noiseVar: variance / 2,
  };
  const R = data.raterCount;
  const I = data.itemCount;
  return {
    bias: new Float64Array(R),
    scale: new Float64Array(R).fill(1),
    noiseVar: new Float64Array(R).fill(hyper.noiseVar),
    biasPostVar: new Float64Array(R),
    scalePostVar: new Float64Array(R),
    rss: new Float64Array(R),
    influence: new Float64Array(R).fill(1),
    itemPostMean: new Float64Array(I).fill(hyper.itemMean),
    itemPostVar: new Float64Array(I).fill(hyper.itemVar),
    hyper,
  };
}

/** What a rater contributes to an item's posterior: precision w * g * s and sum w * g * (y - b). */
export function loadRaterBlock(state: ModelState, block: Float64Array): void {
  for (let r = 0, o = 0; r < state.bias.length; r++, o += BLOCK) {
    const gain = (state.influence[r]! * state.scale[r]!) / state.noiseVar[r]!;
    block[o + PRECISION_GAIN] = gain * state.scale[r]!;
    block[o + GAIN] = gain;
    block[o + GAIN_BIAS] = gain * state.bias[r]!;
    block[o + SUM_M] = 0;
    block[o + SUM_MM] = 0;
    block[o + SUM_YM] = 0;
  }
}

export interface ItemPassResult {
  maxChange: number;
  /** Items informed by at least one rater with influence, and their sums of m and m^2 + v. */
  informedItems: number;
  sumMean: number;
  sumSquare: number;
  sumVar: number;
}

/**
 * The hot loop, one pass over the ratings in item order: each item's Gaussian posterior given the
 * raters, and at once (while the item's few ratings are in cache) the item moments every rater
 * needs for their own update.
 */
export function itemPass(data: PreparedRatings, state: ModelState, block: Float64Array): ItemPassResult {
  const { itemStart, rater, value, weight } = data;
  const { itemPostMean, itemPostVar, hyper } = state;
  const priorPrecision = 1 / hyper.itemVar;
  const priorSum = hyper.itemMean * priorPrecision;
  let maxChange = 0;
  let informedItems = 0;
  let sumMean = 0;
  let sumSquare = 0;
  let sumVar = 0;
  let start = itemStart[0]!;
  for (let i = 0; i < data.itemCount; i++) {
    const end = itemStart[i + 1]!;
    let precision = 0;
    let sum = 0;
    if (weight === null) {
      for (let k = start; k < end; k++) {
        const o = rater[k]! << 3;
        precision += block[o]!;
        sum += block[o + 1]! * value[k]! - block[o + 2]!;
      }
    } else {
      for (let k = start; k < end; k++) {
        const o = rater[k]! * BLOCK;
        const w = weight[k]!;
        precision += w * block[o + PRECISION_GAIN]!;
        sum += w * (block[o + GAIN]! * value[k]! - block[o + GAIN_BIAS]!);
      }
    }
    const v = 1 / (priorPrecision + precision);
    const m = (priorSum + sum) * v;
    const change = Math.abs(m - itemPostMean[i]!);
    if (change > maxChange) maxChange = change;
    itemPostMean[i] = m;
    itemPostVar[i] = v;
    const mm = m * m + v;
    if (precision > 0) {
      informedItems++;
      sumMean += m;
      sumSquare += m * m;
      sumVar += v;
    }
    if (weight === null) {
      for (let k = start; k < end; k++) {
        const o = rater[k]! << 3;
        block[o + 3]! += m;
        block[o + 4]! += mm;
        block[o + 5]! += value[k]! * m;
      }
    } else {
      for (let k = start; k < end; k++) {
        const o = rater[k]! * BLOCK;
        const w = weight[k]!;
        block[o + SUM_M]! += w * m;
        block[o + SUM_MM]! += w * mm;
        block[o + SUM_YM]! += w * value[k]! * m;
      }
    }
    start = end;
  }
  return { maxChange, informedItems, sumMean, sumSquare, sumVar };
}

/**
 * One rater's step: the posterior mode of (bias, scale) from the normal equations of
 * sum w (y - b - s q)^2 / noiseVar + b^2 / biasVar + (s - 1)^2 / scaleVar, in expectation over
 * q, then the rater's noise from the expected residuals, shrunk toward the pooled noise. From the
 * rater's sufficient statistics: W, Sy, Syy over their ratings and Sm, Smm, Sym the sums of w m,
 * w (m^2 + v), w y m at their items' posteriors. With `move` false the rater keeps bias, scale
 * and noise and only gets the posterior variances and residuals at those values. Shared by the
 * full fit's rater pass and the incremental recalibration's local updates.
 */
export function updateRater(
  state: ModelState,
  options: ModelOptions,
  r: number,
  W: number,
  Sy: number,
  Syy: number,
  Sm: number,
  Smm: number,
  Sym: number,
  move: boolean,
): void {
  const { bias, scale, noiseVar, biasPostVar, scalePostVar, rss, hyper } = state;
  const inv = 1 / noiseVar[r]!;
  // An excluded rater moves nothing, so no prior is needed to protect the items from them: fit
  // them on their data alone, which describes them honestly (an inverted rater gets scale < 0).
  const excluded = state.influence[r] === 0;
  const biasPrior = excluded ? EXCLUDED_PRIOR_PRECISION : 1 / hyper.biasVar;
  const scalePrior = excluded ? EXCLUDED_PRIOR_PRECISION : 1 / hyper.scaleVar;
  const a00 = W * inv + biasPrior;
  const a01 = Sm * inv;
  const a11 = Smm * inv + scalePrior;
  const det = a00 * a11 - a01 * a01;
  let b = bias[r]!;
  let s = scale[r]!;
  if (move && options.fitScale) {
    const rhsB = Sy * inv;
    const rhsS = Sym * inv + scalePrior;
    b = (rhsB * a11 - rhsS * a01) / det;
    s = (a00 * rhsS - a01 * rhsB) / det;
  } else if (move) {
    b = ((Sy - Sm) * inv) / a00;
  }
  biasPostVar[r] = options.fitScale ? a11 / det : 1 / a00;
  scalePostVar[r] = options.fitScale ? a00 / det : 0;
  const residual = Syy - 2 * b * Sy - 2 * s * Sym + b * b * W + 2 * b * s * Sm + s * s * Smm;
  rss[r] = Math.max(0, residual);
  if (!move) return;
  bias[r] = b;
  scale[r] = s;
  // Without ratings or a prior strength, the pooled noise is the only estimate there is.
  const nu = options.noisePriorStrength;
  const noise = W + nu > 0 ? (rss[r]! + nu * hyper.noiseVar) / (W + nu) : hyper.noiseVar;
  noiseVar[r] = Math.max(options.minNoiseSd ** 2, noise);
}

/** Every rater's step (updateRater) from the moments the item pass left in `block`. */
export function raterPass(
  data: PreparedRatings,
  state: ModelState,
  options: ModelOptions,
  block: Float64Array,
): void {
  const { raterWeight, raterSumY, raterSumYY } = data;
  for (let r = 0, o = 0; r < data.raterCount; r++, o += BLOCK) {
    updateRater(
      state,
      options,
      r,
      raterWeight[r]!,
      raterSumY[r]!,
      raterSumYY[r]!,
      block[o + SUM_M]!,
      block[o + SUM_MM]!,
      block[o + SUM_YM]!,
      true,
    );
  }
}

/**
 * A prior variance by empirical Bayes from n posteriors: sum of squared means `squares`, sum of
 * posterior variances `variances`. MacKay's update, squares / (n - variances / old), has the same
 * fixed point as the EM update (squares + variances) / n but gets there in far fewer iterations
 * when the posteriors are wide (items with few ratings); EM is the fallback when too few are
 * well determined for it to be stable.
 */
function priorVariance(n: number, squares: number, variances: number, old: number): number {
  const wellDetermined = n - variances / old;
  const value = wellDetermined > 0.1 * n ? squares / wellDetermined : (squares + variances) / n;
  return Math.max(VAR_FLOOR, value);
}

/** Empirical Bayes: prior moments from the current posteriors of items and influential raters. */
/** Items with ratings from at least two raters: what separates item variance from noise. */
const MIN_REPLICATED_ITEMS = 20;
const replicatedCache = new WeakMap<PreparedRatings, number>();
function replicatedItems(data: PreparedRatings): number {
  let n = replicatedCache.get(data);
  if (n === undefined) {
    n = 0;
    for (let i = 0; i < data.itemCount; i++) if (data.itemStart[i + 1]! - data.itemStart[i]! >= 2) n++;
    replicatedCache.set(data, n);
  }
  return n;
}

export function updateHyperparameters(
  data: PreparedRatings,
  state: ModelState,
  options: ModelOptions,
  items: ItemPassResult,
  block: Float64Array | null = null,
): void {
  const { hyper } = state;
  const I = items.informedItems;
  if (I > 1) {
    const mean = items.sumMean / I;
    if (options.itemMean === undefined) hyper.itemMean = mean;
    // Item variance is told apart from rater noise only by items rated more than once. With
    // (almost) every item rated once, the two are confounded and the fit drifts to "all noise",
    // shrinking every item onto the mean (measured: item variance 0.011 vs noise 0.56 on thumbs
    // that were 17% up). Then the starting split (half signal, half noise) is kept.
    if (options.itemSd === undefined && replicatedItems(data) >= MIN_REPLICATED_ITEMS) {
      const squares = items.sumSquare - I * mean * mean;
      hyper.itemVar = priorVariance(I, squares, items.sumVar, hyper.itemVar);
    }
  }
  let raters = 0;
  let biasSquares = 0;
  let biasVariances = 0;
  let scaleSquares = 0;
  let scaleVariances = 0;
  let totalRss = 0;
  let totalWeight = 0;
  for (let r = 0; r < data.raterCount; r++) {
    if (state.influence[r] === 0 || data.raterCountOf[r] === 0) continue;
    raters++;
    biasSquares += state.bias[r]! ** 2;
    biasVariances += state.biasPostVar[r]!;
    scaleSquares += (state.scale[r]! - 1) ** 2;
    scaleVariances += state.scalePostVar[r]!;
    totalRss += state.rss[r]!;
    totalWeight += data.raterWeight[r]!;
  }
  if (raters > 1) {
    if (options.biasSd === undefined) {
      hyper.biasVar = priorVariance(raters, biasSquares, biasVariances, hyper.biasVar);
    }
    if (options.scaleSd === undefined && options.fitScale) {
      hyper.scaleVar =
        block === null
          ? priorVariance(raters, scaleSquares, scaleVariances, hyper.scaleVar)
          : solveScaleVariance(data, state, block, hyper.scaleVar);
    }
  }
  if (totalWeight > 0) hyper.noiseVar = Math.max(options.minNoiseSd ** 2, totalRss / totalWeight);
}

/**
 * The score of the scale prior's variance tau (d log marginal likelihood / d log tau, times 2),
 * with the item moments in `block`, each rater's noise and the bias prior held: sum over raters
 * of E[(s - 1)^2] / tau - 1 under the rater's (bias, scale) posterior at tau. Zero at the EM
 * fixed point for tau.
 */
function scaleVarianceScore(
  data: PreparedRatings,
  state: ModelState,
  block: Float64Array,
  tau: number,
): number {
  const biasPrior = 1 / state.hyper.biasVar;
  const scalePrior = 1 / tau;
  let score = 0;
  for (let r = 0, o = 0; r < data.raterCount; r++, o += BLOCK) {
    if (state.influence[r] === 0 || data.raterCountOf[r] === 0) continue;
    const inv = 1 / state.noiseVar[r]!;
    const a00 = data.raterWeight[r]! * inv + biasPrior;
    const a01 = block[o + SUM_M]! * inv;
    const a11 = block[o + SUM_MM]! * inv + scalePrior;
    const det = a00 * a11 - a01 * a01;
    const rhsB = data.raterSumY[r]! * inv;
    const rhsS = block[o + SUM_YM]! * inv + scalePrior;
    const s = (a00 * rhsS - a01 * rhsB) / det;
    score += ((s - 1) ** 2 + a00 / det) * scalePrior - 1;
  }
  return score;
}

/**
 * The scale prior's variance solved to its fixed point given the item moments (ECME: the
 * marginal likelihood maximized in tau directly rather than one EM step). When the raters' scales
 * barely differ beyond their noise, the fixed point is at (or near) 0 and EM's own step crawls
 * toward it, each step smaller than the last (measured: 900 iterations at tolerance 1e-7 and still
 * moving, and a fit at the default tolerance stopped 30x above it, with rewards 0.12 off): every
 * fit then stopped at a different point along that slow direction. Regula falsi (Illinois) on
 * log tau in a bracket around the current value, O(raters) per evaluation; the floor when the
 * score is negative even there.
 */
function solveScaleVariance(
  data: PreparedRatings,
  state: ModelState,
  block: Float64Array,
  current: number,
): number {
  const score = (u: number) => scaleVarianceScore(data, state, block, Math.exp(u));
  const floor = Math.log(VAR_FLOOR);
  const ceiling = Math.log(100);
  let lo = Math.max(floor, Math.log(current) - 1);
  let hi = Math.min(ceiling, Math.log(current) + 1);
  let fLo = score(lo);
  let fHi = score(hi);
  // Not a number only if a rater's statistics are (they are checked finite on the way in): keep the value.
  if (Number.isNaN(fLo) || Number.isNaN(fHi)) return current;
  // Widen the bracket (the score is positive below the root, negative above it).
  while (fLo < 0 && lo > floor) {
    hi = lo;
    fHi = fLo;
    lo = Math.max(floor, lo - 4);
    fLo = score(lo);
  }
  if (fLo <= 0) return VAR_FLOOR;
  while (fHi > 0 && hi < ceiling) {
    lo = hi;
    fLo = fHi;
    hi = Math.min(ceiling, hi + 4);
    fHi = score(hi);
  }
  if (fHi >= 0) return Math.exp(hi);
  let side = 0;
  for (let k = 0; k < 40 && hi - lo > 1e-4; k++) {
    const u = (lo * fHi - hi * fLo) / (fHi - fLo);
    const f = score(u);
    if (f > 0) {
      lo = u;
      fLo = f;
      if (side === 1) fHi /= 2;
      side = 1;
    } else {
      hi = u;
      fHi = f;
      if (side === -1) fLo /= 2;
      side = -1;
    }
  }
  return Math.max(VAR_FLOOR, Math.exp((lo * fHi - hi * fLo) / (fHi - fLo)));
}

/**
 * Parameter expansion (PX-EM, Liu, Rubin & Wu 1998). The likelihood cannot tell "all raters a bit
 * harsher" from "all items a bit worse", nor "scales x c" from "qualities / c": only the priors
 * pin these two directions, and plain EM crawls along them (a few tenths of a percent per
 * iteration). So after each rater update, move straight to the best point along both: qualities
 * rescaled by c = sum s^2 / sum s (the scale prior's optimum) and shifted by
 * d = sum b s / sum s^2 (the bias prior's optimum). Ratings' predictions do not change.
 */
function expandParameters(data: PreparedRatings, state: ModelState, options: ModelOptions): void {
  if (options.itemMean !== undefined || options.itemSd !== undefined) return;
  let sumS = 0;
  let sumSS = 0;
  let sumBS = 0;
  for (let r = 0; r < data.raterCount; r++) {
    if (state.influence[r] === 0 || data.raterCountOf[r] === 0) continue;
    const s = state.scale[r]!;
    sumS += s;
    sumSS += s * s;
    sumBS += state.bias[r]! * s;
  }
  if (!(sumSS > 0)) return;
  const { hyper } = state;
  if (options.fitScale && options.scaleSd === undefined && sumS > 0) {
    const c = sumSS / sumS;
    for (let r = 0; r < data.raterCount; r++) {
      state.scale[r]! /= c;
      state.scalePostVar[r]! /= c * c;
    }
    hyper.itemMean *= c;
    hyper.itemVar *= c * c;
    sumSS /= c * c;
    sumBS /= c;
  }
  if (options.biasSd === undefined) {
    const d = sumBS / sumSS;
    for (let r = 0; r < data.raterCount; r++) state.bias[r]! -= state.scale[r]! * d;
    hyper.itemMean += d;
  }
}

/** One EM iteration, state -> F(state); returns what the item pass saw. */
function emStep(
  data: PreparedRatings,
  state: ModelState,
  options: ModelOptions,
  block: Float64Array,
): ItemPassResult {
  loadRaterBlock(state, block);
  const items = itemPass(data, state, block);
  raterPass(data, state, options, block);
  updateHyperparameters(data, state, options, items, block);
  expandParameters(data, state, options);
  return items;
}

/**
 * The fitted parameters as one vector (rater bias, scale, log noise, then the priors, variances in
 * logs) for SQUAREM extrapolation; item posteriors are not in it, they follow from it.
 */
function packParameters(state: ModelState, out: Float64Array): void {
  const R = state.bias.length;
  out.set(state.bias, 0);
  out.set(state.scale, R);
  for (let r = 0; r < R; r++) out[2 * R + r] = Math.log(state.noiseVar[r]!);
  const h = state.hyper;
  out[3 * R] = h.itemMean;
  out[3 * R + 1] = Math.log(h.itemVar);
  out[3 * R + 2] = Math.log(h.biasVar);
  out[3 * R + 3] = Math.log(h.scaleVar);
  out[3 * R + 4] = Math.log(h.noiseVar);
}

function unpackParameters(vector: Float64Array, state: ModelState, options: ModelOptions): void {
  const R = state.bias.length;
  const minNoiseVar = options.minNoiseSd ** 2;
  for (let r = 0; r < R; r++) {
    state.bias[r] = vector[r]!;
    if (options.fitScale) state.scale[r] = vector[R + r]!;
    state.noiseVar[r] = Math.max(minNoiseVar, Math.exp(vector[2 * R + r]!));
  }
  const h = state.hyper;
  h.itemMean = vector[3 * R]!;
  h.itemVar = Math.max(VAR_FLOOR, Math.exp(vector[3 * R + 1]!));
  h.biasVar = Math.max(VAR_FLOOR, Math.exp(vector[3 * R + 2]!));
  h.scaleVar = Math.max(VAR_FLOOR, Math.exp(vector[3 * R + 3]!));
  h.noiseVar = Math.max(minNoiseVar, Math.exp(vector[3 * R + 4]!));
}

const MAX_STEP_LIMIT = 256;

/**
 * The SQUAREM jump from three successive parameter vectors (theta1 = F(theta0), theta2 =
 * F(theta1)): theta0 - 2 alpha r + alpha^2 v with r = theta1 - theta0, v = theta2 - 2 theta1 +
 * theta0 and alpha = -|r| / |v| capped at -maxStep. Written to `out`; null when the plain steps
 * are as good (alpha would be -1). `baseline` is |theta2 - theta1|^2, to judge the jump by.
 */
function squaremJump(
  theta0: Float64Array,
  theta1: Float64Array,
  theta2: Float64Array,
  maxStep: number,
  out: Float64Array,
): { alpha: number; baseline: number } | null {
  let rr = 0;
  let vv = 0;
  let baseline = 0;
  for (let j = 0; j < theta0.length; j++) {
    const r = theta1[j]! - theta0[j]!;
    const v = theta2[j]! - 2 * theta1[j]! + theta0[j]!;
    rr += r * r;
    vv += v * v;
    baseline += (theta2[j]! - theta1[j]!) ** 2;
  }
  const steepest = -Math.sqrt(rr / vv);
  if (!(steepest < -1)) return null;
  const alpha = Math.max(-maxStep, steepest);
  for (let j = 0; j < theta0.length; j++) {
    const r = theta1[j]! - theta0[j]!;
    const v = theta2[j]! - 2 * theta1[j]! + theta0[j]!;
    out[j] = theta0[j]! - 2 * alpha * r + alpha * alpha * v;
  }
  return { alpha, baseline };
}

/**
 * Runs EM from `state` until item means settle, accelerated by SQUAREM (Varadhan & Roland 2008):
 * two plain steps show the direction the iteration crawls along, one extrapolated jump follows it
 * and a plain step from there stabilizes. With PX-EM this takes a fraction of the passes of plain
 * alternating updates. There is no objective to check, so a jump is judged by its fixed-point
 * residual and undone when it lands much further from a fixed point than the plain steps did.
 */
export function fitModel(
  data: PreparedRatings,
  state: ModelState,
  options: ModelOptions,
): { iterations: number; converged: boolean } {
  const block = new Float64Array(data.raterCount * BLOCK);
  const size = 3 * data.raterCount + 5;
  const [theta0, theta1, theta2, jump] = [0, 1, 2, 3].map(() => new Float64Array(size)) as [
    Float64Array,
    Float64Array,
    Float64Array,
    Float64Array,
  ];
  let maxStep = 4;
  let iterations = 0;
  let converged = false;
  while (iterations < options.maxIterations && !converged) {
    packParameters(state, theta0);
    emStep(data, state, options, block);
    packParameters(state, theta1);
    const second = emStep(data, state, options, block);
    packParameters(state, theta2);
    iterations += 2;
    converged = second.maxChange < options.tolerance;
    if (converged || iterations >= options.maxIterations) break;
    const step = squaremJump(theta0, theta1, theta2, maxStep, jump);
    if (step === null) continue;
    unpackParameters(jump, state, options);
    const stabilized = emStep(data, state, options, block);
    iterations++;
    packParameters(state, theta1);
    let residual = 0;
    for (let j = 0; j < size; j++) residual += (theta1[j]! - jump[j]!) ** 2;
    if (!Number.isFinite(stabilized.maxChange) || !(residual <= 100 * step.baseline)) {
      unpackParameters(theta2, state, options);
      maxStep = Math.max(1, maxStep / 4);
    } else if (step.alpha === -maxStep) {
      maxStep = Math.min(MAX_STEP_LIMIT, maxStep * 4);
    }
  }
  // Leave the item posteriors consistent with the final rater parameters.
  loadRaterBlock(state, block);
  itemPass(data, state, block);
  return { iterations, converged };
}
