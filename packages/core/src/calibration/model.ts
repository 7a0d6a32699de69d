/**
 * The rater model, on columns of typed arrays so that millions of ratings fit in a few flat
 * buffers and every iteration is two linear passes with no allocation.
 *
 *   rating[k] = bias[r] + scale[r] * quality[i] + noise,   noise ~ N(0, noiseVar[r] / weight[k])
 *   quality[i] ~ N(itemMean, itemVar),  bias[r] ~ N(0, biasVar),  scale[r] ~ N(1, scaleVar)
 *   noiseVar[r] shrunk toward the pooled noise with `noisePriorStrength` pseudo-ratings
 *
 * Fitted by EM-style alternating updates: the exact Gaussian posterior of each item's quality given
 * the raters, then each rater's (bias, scale) posterior mode given the items' posterior moments
 * (a 2x2 ridge regression), then the rater noise, then the prior variances by empirical Bayes.
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

/** Ratings sorted by item (counting sort), so the item pass writes sequentially. */
export interface PreparedRatings {
  itemCount: number;
  raterCount: number;
  /** Ratings of item i are at positions itemStart[i] .. itemStart[i + 1] - 1. */
  itemStart: Int32Array;
  rater: Int32Array;
  value: Float64Array;
  weight: Float64Array;
  /** Position of each input rating in the sorted order. */
  sortedPosition: Int32Array;
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
  /** Data part of each item's posterior precision and precision-weighted sum (for leave-one-out). */
  itemDataPrecision: Float64Array;
  itemDataSum: Float64Array;
  hyper: Hyperparameters;
}

const VAR_FLOOR = 1e-8;

export function prepareRatings(columns: RatingColumns): PreparedRatings {
  const { item, rater, value, itemCount, raterCount } = columns;
  const n = item.length;
  if (rater.length !== n || value.length !== n || (columns.weight && columns.weight.length !== n)) {
    throw new RangeError('rating columns must have the same length');
  }
  const itemStart = new Int32Array(itemCount + 1);
  for (let k = 0; k < n; k++) {
    const i = item[k]!;
    if (i < 0 || i >= itemCount) throw new RangeError(`item index ${i} out of range at rating ${k}`);
    itemStart[i + 1]!++;
  }
  for (let i = 0; i < itemCount; i++) itemStart[i + 1]! += itemStart[i]!;
  const cursor = itemStart.slice(0, itemCount);
  const sortedRater = new Int32Array(n);
  const sortedValue = new Float64Array(n);
  const sortedWeight = new Float64Array(n);
  const sortedPosition = new Int32Array(n);
  const raterCountOf = new Int32Array(raterCount);
  const raterWeight = new Float64Array(raterCount);
  const raterSumY = new Float64Array(raterCount);
  const raterSumYY = new Float64Array(raterCount);
  for (let k = 0; k < n; k++) {
    const r = rater[k]!;
    if (r < 0 || r >= raterCount) throw new RangeError(`rater index ${r} out of range at rating ${k}`);
    const y = value[k]!;
    const w = columns.weight ? columns.weight[k]! : 1;
    if (!Number.isFinite(y) || !(w >= 0))
      throw new RangeError(`rating ${k} has a non-finite value or weight`);
    const at = cursor[item[k]!]!++;
    sortedRater[at] = r;
    sortedValue[at] = y;
    sortedWeight[at] = w;
    sortedPosition[k] = at;
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
    sortedPosition,
    raterCountOf,
    raterWeight,
    raterSumY,
    raterSumYY,
  };
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
    itemDataPrecision: new Float64Array(I),
    itemDataSum: new Float64Array(I),
    hyper,
  };
}

/**
 * Item pass: the Gaussian posterior of every item's quality given the raters. Returns the largest
 * change of a posterior mean. `gain[r]` = influence * scale / noiseVar, precomputed per rater.
 */
function updateItems(data: PreparedRatings, state: ModelState, gain: Float64Array): number {
  const { itemStart, rater, value, weight } = data;
  const { bias, scale, itemPostMean, itemPostVar, itemDataPrecision, itemDataSum, hyper } = state;
  const priorPrecision = 1 / hyper.itemVar;
  const priorSum = hyper.itemMean * priorPrecision;
  let maxChange = 0;
  for (let i = 0; i < data.itemCount; i++) {
    let precision = 0;
    let sum = 0;
    const end = itemStart[i + 1]!;
    for (let k = itemStart[i]!; k < end; k++) {
      const r = rater[k]!;
      const g = weight[k]! * gain[r]!;
      precision += g * scale[r]!;
      sum += g * (value[k]! - bias[r]!);
    }
    itemDataPrecision[i] = precision;
    itemDataSum[i] = sum;
    const postVar = 1 / (priorPrecision + precision);
    const postMean = (priorSum + sum) * postVar;
    const change = Math.abs(postMean - itemPostMean[i]!);
    if (change > maxChange) maxChange = change;
    itemPostMean[i] = postMean;
    itemPostVar[i] = postVar;
  }
  return maxChange;
}

/** Rater pass, part 1: each rater's sums of item moments over the items they rated. */
function accumulateRaterMoments(
  data: PreparedRatings,
  state: ModelState,
  sumM: Float64Array,
  sumMM: Float64Array,
  sumYM: Float64Array,
): void {
  const { itemStart, rater, value, weight } = data;
  const { itemPostMean, itemPostVar } = state;
  sumM.fill(0);
  sumMM.fill(0);
  sumYM.fill(0);
  for (let i = 0; i < data.itemCount; i++) {
    const m = itemPostMean[i]!;
    const mm = m * m + itemPostVar[i]!;
    const end = itemStart[i + 1]!;
    for (let k = itemStart[i]!; k < end; k++) {
      const r = rater[k]!;
      const w = weight[k]!;
      sumM[r]! += w * m;
      sumMM[r]! += w * mm;
      sumYM[r]! += w * value[k]! * m;
    }
  }
}

/**
 * Rater pass, part 2: the posterior mode of (bias, scale) from the normal equations of
 * sum w (y - b - s q)^2 / noiseVar + b^2 / biasVar + (s - 1)^2 / scaleVar, taken in expectation
 * over q; then the rater's noise from the expected residuals, shrunk toward the pooled noise.
 */
function updateRaters(
  data: PreparedRatings,
  state: ModelState,
  options: ModelOptions,
  sumM: Float64Array,
  sumMM: Float64Array,
  sumYM: Float64Array,
): void {
  const { raterWeight, raterSumY, raterSumYY } = data;
  const { bias, scale, noiseVar, biasPostVar, scalePostVar, rss, hyper } = state;
  const biasPrecision = 1 / hyper.biasVar;
  const scalePrecision = 1 / hyper.scaleVar;
  const minNoiseVar = options.minNoiseSd ** 2;
  const nu = options.noisePriorStrength;
  for (let r = 0; r < data.raterCount; r++) {
    const W = raterWeight[r]!;
    const Sy = raterSumY[r]!;
    const Sm = sumM[r]!;
    const Smm = sumMM[r]!;
    const Sym = sumYM[r]!;
    const inv = 1 / noiseVar[r]!;
    let b: number;
    let s: number;
    if (options.fitScale) {
      const a00 = W * inv + biasPrecision;
      const a01 = Sm * inv;
      const a11 = Smm * inv + scalePrecision;
      const rhsB = Sy * inv;
      const rhsS = Sym * inv + scalePrecision;
      const det = a00 * a11 - a01 * a01;
      b = (rhsB * a11 - rhsS * a01) / det;
      s = (a00 * rhsS - a01 * rhsB) / det;
      biasPostVar[r] = a11 / det;
      scalePostVar[r] = a00 / det;
    } else {
      const a00 = W * inv + biasPrecision;
      b = ((Sy - Sm) * inv) / a00;
      s = 1;
      biasPostVar[r] = 1 / a00;
      scalePostVar[r] = 0;
    }
    bias[r] = b;
    scale[r] = s;
    const residual = raterSumYY[r]! - 2 * b * Sy - 2 * s * Sym + b * b * W + 2 * b * s * Sm + s * s * Smm;
    rss[r] = residual > 0 ? residual : 0;
    noiseVar[r] = Math.max(minNoiseVar, (rss[r]! + nu * hyper.noiseVar) / (W + nu));
  }
}

/** Empirical Bayes: prior moments from the current posteriors of items and influential raters. */
function updateHyperparameters(data: PreparedRatings, state: ModelState, options: ModelOptions): void {
  const { hyper } = state;
  let items = 0;
  let sumM = 0;
  let sumMM = 0;
  for (let i = 0; i < data.itemCount; i++) {
    if (data.itemStart[i + 1] === data.itemStart[i] || state.itemDataPrecision[i] === 0) continue;
    const m = state.itemPostMean[i]!;
    items++;
    sumM += m;
    sumMM += m * m + state.itemPostVar[i]!;
  }
  if (items > 1) {
    const mean = sumM / items;
    if (options.itemMean === undefined) hyper.itemMean = mean;
    if (options.itemSd === undefined) hyper.itemVar = Math.max(VAR_FLOOR, sumMM / items - mean * mean);
  }
  let raters = 0;
  let sumBB = 0;
  let sumSS = 0;
  let totalRss = 0;
  let totalWeight = 0;
  for (let r = 0; r < data.raterCount; r++) {
    if (state.influence[r] === 0 || data.raterCountOf[r] === 0) continue;
    raters++;
    sumBB += state.bias[r]! ** 2 + state.biasPostVar[r]!;
    sumSS += (state.scale[r]! - 1) ** 2 + state.scalePostVar[r]!;
    totalRss += state.rss[r]!;
    totalWeight += data.raterWeight[r]!;
  }
  if (raters > 1) {
    if (options.biasSd === undefined) hyper.biasVar = Math.max(VAR_FLOOR, sumBB / raters);
    if (options.scaleSd === undefined) hyper.scaleVar = Math.max(VAR_FLOOR, sumSS / raters);
  }
  if (totalWeight > 0) hyper.noiseVar = Math.max(options.minNoiseSd ** 2, totalRss / totalWeight);
}

function computeGain(state: ModelState, gain: Float64Array): void {
  for (let r = 0; r < gain.length; r++)
    gain[r] = (state.influence[r]! * state.scale[r]!) / state.noiseVar[r]!;
}

/** Runs alternating updates from `state` until item means settle; returns the work done. */
export function fitModel(
  data: PreparedRatings,
  state: ModelState,
  options: ModelOptions,
): { iterations: number; converged: boolean } {
  const R = data.raterCount;
  const gain = new Float64Array(R);
  const sumM = new Float64Array(R);
  const sumMM = new Float64Array(R);
  const sumYM = new Float64Array(R);
  for (let iteration = 1; iteration <= options.maxIterations; iteration++) {
    computeGain(state, gain);
    const change = updateItems(data, state, gain);
    accumulateRaterMoments(data, state, sumM, sumMM, sumYM);
    updateRaters(data, state, options, sumM, sumMM, sumYM);
    updateHyperparameters(data, state, options);
    if (process.env['TRACE_FIT']) console.log(iteration, change, JSON.stringify(state.hyper));
    if (iteration > 1 && change < options.tolerance) {
      // Leave the item posteriors consistent with the final rater parameters.
      computeGain(state, gain);
      updateItems(data, state, gain);
      return { iterations: iteration, converged: true };
    }
  }
  computeGain(state, gain);
  updateItems(data, state, gain);
  return { iterations: options.maxIterations, converged: false };
}
