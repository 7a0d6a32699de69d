import { z } from 'zod';
import {
  type CalibrationColumns,
  CalibrationOptions,
  type CalibrationOptionsInput,
  calibrateRatingColumns,
  type Flags,
  itemColumns,
  raterColumns,
} from './calibrate.js';
import { type ConsensusStatistics, consensusStatistics, flagReason } from './flagging.js';
import {
  BLOCK,
  type Hyperparameters,
  itemPass,
  loadRaterBlock,
  type ModelOptions,
  type ModelState,
  type PreparedRatings,
  prepareRatings,
  type RatingColumns,
  raterPass,
  SUM_M,
  SUM_MM,
  SUM_YM,
  updateHyperparameters,
} from './model.js';

/** When an incremental recalibration gives way to a full refit. */
export const RecalibrationPolicy = z.strictObject({
  /** A full refit after this many incremental runs in a row, so small approximations never pile up (0: always full). */
  fullRefitEvery: z.number().int().min(0).max(1000).default(10),
  /** Share of raters refitted (see touchedRaters) above which a full refit is about as cheap and exact. */
  maxTouchedRaterShare: z.number().min(0).max(1).default(0.6),
  /**
   * Drift: the largest change the new ratings ask of the global priors (relative, for the
   * variances; in prior sds, for the item mean). The incremental run keeps them fixed, so beyond
   * this the whole population has moved and every rater should be refitted.
   */
  maxDrift: z.number().positive().max(10).default(0.05),
  /**
   * Passes over all ratings after the local sweeps, each updating every item and rater once with
   * the priors fixed: a change spreads one rater-item hop per pass.
   */
  passes: z.number().int().min(0).max(100).default(4),
  /** Sweeps over the touched raters and their items per flagging round (stops early when settled). */
  sweeps: z.number().int().min(1).max(1000).default(30),
});
export type RecalibrationPolicyInput = z.input<typeof RecalibrationPolicy>;
export type RecalibrationPolicy = z.output<typeof RecalibrationPolicy>;

/** The previous run's fit, indexed like the current columns' raters. */
export interface PreviousCalibration {
  raters: {
    /** 0 for raters the previous run did not see: they start at the prior. */
    known: Uint8Array;
    bias: Float64Array;
    scale: Float64Array;
    noiseSd: Float64Array;
    flagged: Uint8Array;
    flagReason: (string | null)[];
  };
  hyperparameters: Hyperparameters;
  /** Incremental runs since the last full refit. */
  incrementalRuns: number;
}

export interface Recalibration extends CalibrationColumns {
  mode: 'full' | 'incremental';
  /** Why a full refit ran (or "incremental"). */
  reason: string;
  touchedItems: number;
  touchedRaters: number;
  /** The drift statistic of an incremental run (NaN for a full refit). */
  drift: number;
  /**
   * Items whose reward or sd moved by more than `REWARD_WRITE_THRESHOLD` from what the previous
   * run's raters give them, or that got new ratings: what a store has to rewrite (every item after a full refit).
   */
  changedItems: Uint8Array;
}

/** A reward (or sd) change below this is not worth a write; rewards are used to a few decimals. */
export const REWARD_WRITE_THRESHOLD = 1e-4;

/** What the ratings since the previous run touched: 1 per item and per rater with a new or changed rating. */
export interface NewRatings {
  items: Uint8Array;
  raters: Uint8Array;
}

/**
 * Calibrates starting from the previous run: only raters with new ratings and the items they
 * rated (plus the items with new ratings) are refitted, for a bounded
 * number of sweeps with the priors held fixed; then `passes` plain EM passes over all ratings
 * spread the change, and a final pass makes every item's posterior consistent and measures drift. Falls back to calibrateRatingColumns when there is no previous run, on the
 * policy's schedule, when too many raters are touched, or when the priors drifted.
 */
export function recalibrateRatingColumns(
  columns: RatingColumns & { isThumbs?: Uint8Array | null },
  previous: PreviousCalibration | null,
  newRatings: NewRatings,
  optionsInput: CalibrationOptionsInput = {},
  policyInput: RecalibrationPolicyInput = {},
): Recalibration {
  const policy = RecalibrationPolicy.parse(policyInput);
  const full = (reason: string, touched = { items: 0, raters: 0 }): Recalibration => ({
    ...calibrateRatingColumns(columns, optionsInput),
    mode: 'full',
    reason,
    touchedItems: touched.items,
    touchedRaters: touched.raters,
    drift: Number.NaN,
    changedItems: new Uint8Array(columns.itemCount).fill(1),
  });
  if (previous === null) return full('no previous calibration');
  if (previous.incrementalRuns >= policy.fullRefitEvery) {
    return full(`scheduled: ${previous.incrementalRuns} incremental runs since the last full refit`);
  }
  const options = CalibrationOptions.parse(optionsInput);
  const modelOptions: ModelOptions = { ...options, ...options.priors };
  const data = prepareRatings(columns);
  const touched = touchedRaters(data, previous, newRatings);
  const ratedRaters = data.raterCountOf.reduce((n, c) => n + (c > 0 ? 1 : 0), 0);
  const counts = { items: touched.itemCount, raters: touched.raterCount };
  if (touched.raterCount > policy.maxTouchedRaterShare * ratedRaters) {
    return full(
      `${touched.raterCount} of ${ratedRaters} raters have new ratings (more than ${policy.maxTouchedRaterShare})`,
      counts,
    );
  }
  const state = warmState(data, previous, options);
  const flags: Flags = {
    flagged: previous.raters.flagged.slice(),
    reasons: previous.raters.flagReason.slice(),
  };
  const active = newRatings.items.slice();
  const block = new Float64Array(data.raterCount * BLOCK);
  let iterations = 0;
  let rounds = 0;
  let stats: ConsensusStatistics;
  let drift: number;
  let converged: boolean;
  let before: { reward: Float64Array; variance: Float64Array } | undefined;
  for (;;) {
    rounds++;
    // Later rounds start from the final pass, whose posteriors and moments are current.
    const around = neighbourhood(data, state, block, touched.raters, active, rounds === 1);
    // The first pass gives every item its posterior under the previous run's raters.
    before ??= { reward: state.itemPostMean.slice(), variance: state.itemPostVar.slice() };
    const swept = sweep(data, state, modelOptions, block, around, touched.raters, policy.sweeps);
    iterations += swept.sweeps;
    converged = swept.converged;
    for (let p = 0; p < policy.passes; p++) {
      loadRaterBlock(state, block);
      itemPass(data, state, block);
      raterPass(data, state, modelOptions, block);
    }
    iterations += policy.passes;
    drift = finalPass(data, state, modelOptions, block);
    stats = consensusStatistics(data, state);
    if (!options.flagging.enabled || rounds >= options.flagging.maxRounds) break;
    const changed = reflag(data, state, stats, options.flagging, flags, touched.raters);
    if (changed.count === 0) break;
    activateItemsOf(data, changed.raters, touched.raters, active);
  }
  if (drift > policy.maxDrift) {
    return full(`drift ${drift.toFixed(3)} in the priors (more than ${policy.maxDrift})`, counts);
  }
  const changedItems = new Uint8Array(data.itemCount);
  for (let i = 0; i < data.itemCount; i++) {
    const moved =
      Math.abs(state.itemPostMean[i]! - before!.reward[i]!) > REWARD_WRITE_THRESHOLD ||
      Math.abs(Math.sqrt(state.itemPostVar[i]!) - Math.sqrt(before!.variance[i]!)) > REWARD_WRITE_THRESHOLD;
    changedItems[i] = newRatings.items[i] || moved ? 1 : 0;
  }
  return {
    changedItems,
    raters: raterColumns(data, state, stats.correlation, flags),
    items: itemColumns(data, state, columns, options.intervalLevel),
    hyperparameters: { ...state.hyper },
    iterations,
    converged,
    rounds,
    mode: 'incremental',
    reason: 'incremental',
    touchedItems: counts.items,
    touchedRaters: counts.raters,
    drift,
  };
}

/**
 * The raters refitted: those whose own data changed (a new rating, or unseen by the previous run)
 * and every other rater of an item with new ratings, whose consensus on that item moved (leaving
 * them out left rewards 0.08 off a full refit on synthetic raters with 15 ratings each).
 */
function touchedRaters(
  data: PreparedRatings,
  previous: PreviousCalibration,
  touched: NewRatings,
): { raters: Uint8Array; raterCount: number; itemCount: number } {
  if (touched.items.length !== data.itemCount || touched.raters.length !== data.raterCount) {
    throw new RangeError('touched items and raters must have one entry per item and rater');
  }
  const raters = touched.raters.slice();
  let itemCount = 0;
  for (let i = 0; i < data.itemCount; i++) {
    if (!touched.items[i]) continue;
    itemCount++;
    for (let k = data.itemStart[i]!; k < data.itemStart[i + 1]!; k++) raters[data.rater[k]!] = 1;
  }
  let raterCount = 0;
  for (let r = 0; r < data.raterCount; r++) {
    if (!previous.raters.known[r] && data.raterCountOf[r]! > 0) raters[r] = 1;
    raterCount += raters[r]!;
  }
  return { raters, raterCount, itemCount };
}

/** The previous run's raters and priors; unseen raters at the prior (unbiased, unit scale, pooled noise). */
function warmState(
  data: PreparedRatings,
  previous: PreviousCalibration,
  options: CalibrationOptions,
): ModelState {
  const R = data.raterCount;
  const I = data.itemCount;
  const hyper = { ...previous.hyperparameters };
  const p = previous.raters;
  const minNoiseVar = options.minNoiseSd ** 2;
  const influenceOf = (flagged: boolean) =>
    !flagged ? 1 : options.flagging.action === 'exclude' ? 0 : options.flagging.downweightFactor;
  const state: ModelState = {
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
  for (let r = 0; r < R; r++) {
    if (!p.known[r]) continue;
    state.bias[r] = p.bias[r]!;
    state.scale[r] = p.scale[r]!;
    state.noiseVar[r] = Math.max(minNoiseVar, p.noiseSd[r]! ** 2);
    state.influence[r] = influenceOf(p.flagged[r] === 1);
  }
  return state;
}

/**
 * The items the sweeps re-solve (those with new ratings, and those of raters whose verdict
 * changed) and the touched raters' ratings on them, rater by rater. A touched rater's ratings on
 * the other items enter through `fixedSums`, their moments at the items' current posteriors:
 * those items move only through this rater, a second-order effect the final pass catches up on.
 * This keeps a sweep proportional to the new ratings, not to the touched raters' histories.
 */
interface Neighbourhood {
  items: Int32Array;
  raterStart: Int32Array;
  position: Int32Array;
  itemOf: Int32Array;
  /** Per rater (3 each): sums of w m, w (m^2 + v), w y m over their ratings on the other items. */
  fixedSums: Float64Array;
}

function neighbourhood(
  data: PreparedRatings,
  state: ModelState,
  block: Float64Array,
  raters: Uint8Array,
  active: Uint8Array,
  pass: boolean,
): Neighbourhood {
  const { itemStart, rater, value, weight } = data;
  // Every item's posterior at the current raters, and every rater's moments over their items.
  if (pass) {
    loadRaterBlock(state, block);
    itemPass(data, state, block);
  }
  let count = 0;
  for (let i = 0; i < data.itemCount; i++) count += active[i]!;
  const items = new Int32Array(count);
  for (let i = 0, j = 0; i < data.itemCount; i++) if (active[i]) items[j++] = i;
  const raterStart = new Int32Array(data.raterCount + 1);
  for (const i of items) {
    for (let k = itemStart[i]!; k < itemStart[i + 1]!; k++)
      if (raters[rater[k]!]) raterStart[rater[k]! + 1]!++;
  }
  for (let r = 0; r < data.raterCount; r++) raterStart[r + 1]! += raterStart[r]!;
  const cursor = raterStart.slice(0, data.raterCount);
  const position = new Int32Array(raterStart[data.raterCount]!);
  const itemOf = new Int32Array(position.length);
  const fixedSums = new Float64Array(data.raterCount * 3);
  for (let r = 0; r < data.raterCount; r++) {
    if (!raters[r]) continue;
    fixedSums[3 * r] = block[r * BLOCK + SUM_M]!;
    fixedSums[3 * r + 1] = block[r * BLOCK + SUM_MM]!;
    fixedSums[3 * r + 2] = block[r * BLOCK + SUM_YM]!;
  }
  for (const i of items) {
    const m = state.itemPostMean[i]!;
    const mm = m * m + state.itemPostVar[i]!;
    for (let k = itemStart[i]!; k < itemStart[i + 1]!; k++) {
      const r = rater[k]!;
      if (!raters[r]) continue;
      const at = cursor[r]!++;
      position[at] = k;
      itemOf[at] = i;
      const w = weight === null ? 1 : weight[k]!;
      fixedSums[3 * r]! -= w * m;
      fixedSums[3 * r + 1]! -= w * mm;
      fixedSums[3 * r + 2]! -= w * value[k]! * m;
    }
  }
  return { items, raterStart, position, itemOf, fixedSums };
}

/** Items of the raters whose verdict changed join the re-solved items (their influence changed). */
function activateItemsOf(
  data: PreparedRatings,
  changed: Uint8Array,
  raters: Uint8Array,
  active: Uint8Array,
): void {
  for (let i = 0; i < data.itemCount; i++) {
    for (let k = data.itemStart[i]!; k < data.itemStart[i + 1]!; k++) {
      if (changed[data.rater[k]!]) active[i] = 1;
    }
  }
  for (let r = 0; r < data.raterCount; r++) if (changed[r]) raters[r] = 1;
}

/**
 * Alternating updates restricted to the neighbourhood: the posteriors of its items given the
 * raters, then the touched raters' (bias, scale, noise); until no item moves more than the
 * tolerance or `maxSweeps` ran. Priors stay fixed (the drift check asks them).
 */
function sweep(
  data: PreparedRatings,
  state: ModelState,
  options: ModelOptions,
  block: Float64Array,
  n: Neighbourhood,
  raters: Uint8Array,
  maxSweeps: number,
): { sweeps: number; converged: boolean } {
  const { itemStart, rater, value, weight } = data;
  const priorPrecision = 1 / state.hyper.itemVar;
  const priorSum = state.hyper.itemMean * priorPrecision;
  // The other raters do not move during the sweeps: their block entries are loaded once.
  loadRaterBlock(state, block);
  for (let s = 1; s <= maxSweeps; s++) {
    if (s > 1) reloadRaters(state, block, raters);
    let maxChange = 0;
    for (let j = 0; j < n.items.length; j++) {
      const i = n.items[j]!;
      let precision = 0;
      let sum = 0;
      for (let k = itemStart[i]!; k < itemStart[i + 1]!; k++) {
        const o = rater[k]! * BLOCK;
        const w = weight === null ? 1 : weight[k]!;
        precision += w * block[o]!;
        sum += w * (block[o + 1]! * value[k]! - block[o + 2]!);
      }
      const v = 1 / (priorPrecision + precision);
      const m = (priorSum + sum) * v;
      const change = Math.abs(m - state.itemPostMean[i]!);
      if (change > maxChange) maxChange = change;
      state.itemPostMean[i] = m;
      state.itemPostVar[i] = v;
    }
    for (let r = 0; r < data.raterCount; r++) {
      if (!raters[r]) continue;
      const o = r * BLOCK;
      let sumM = n.fixedSums[3 * r]!;
      let sumMM = n.fixedSums[3 * r + 1]!;
      let sumYM = n.fixedSums[3 * r + 2]!;
      for (let j = n.raterStart[r]!; j < n.raterStart[r + 1]!; j++) {
        const k = n.position[j]!;
        const i = n.itemOf[j]!;
        const w = weight === null ? 1 : weight[k]!;
        const m = state.itemPostMean[i]!;
        sumM += w * m;
        sumMM += w * (m * m + state.itemPostVar[i]!);
        sumYM += w * value[k]! * m;
      }
      block[o + SUM_M] = sumM;
      block[o + SUM_MM] = sumMM;
      block[o + SUM_YM] = sumYM;
    }
    raterPass(data, state, options, block, raters, true);
    // The first sweep always moves the items (the raters were refitted after it); settle on the rest.
    if (s > 1 && maxChange < options.tolerance) return { sweeps: s, converged: true };
  }
  return { sweeps: maxSweeps, converged: false };
}

/** loadRaterBlock for the marked raters only (what the item posteriors read of them). */
function reloadRaters(state: ModelState, block: Float64Array, raters: Uint8Array): void {
  for (let r = 0; r < raters.length; r++) {
    if (!raters[r]) continue;
    const o = r * BLOCK;
    const gain = (state.influence[r]! * state.scale[r]!) / state.noiseVar[r]!;
    block[o] = gain * state.scale[r]!;
    block[o + 1] = gain;
    block[o + 2] = gain * state.bias[r]!;
  }
}

/**
 * One pass over all ratings: every item's posterior given the final raters, every rater's
 * posterior variances and residuals at their (kept) values, and the priors those posteriors ask
 * for. Returns the drift: the largest relative change of a prior variance, or item-mean shift in
 * prior sds.
 */
function finalPass(
  data: PreparedRatings,
  state: ModelState,
  options: ModelOptions,
  block: Float64Array,
): number {
  loadRaterBlock(state, block);
  const items = itemPass(data, state, block);
  raterPass(data, state, options, block, new Uint8Array(data.raterCount));
  const kept = { ...state.hyper };
  updateHyperparameters(data, state, options, items);
  const asked = { ...state.hyper };
  Object.assign(state.hyper, kept);
  const ratio = (a: number, b: number) => Math.abs(Math.log(a / b));
  return Math.max(
    ratio(asked.itemVar, kept.itemVar),
    ratio(asked.noiseVar, kept.noiseVar),
    ratio(asked.biasVar, kept.biasVar),
    options.fitScale ? ratio(asked.scaleVar, kept.scaleVar) : 0,
    Math.abs(asked.itemMean - kept.itemMean) / Math.sqrt(kept.itemVar),
  );
}

/**
 * Flags the touched raters afresh, in either direction (new ratings can clear a rater as well as
 * condemn one); the others keep their verdict, so a rater whose ratings did not change is not
 * flagged and cleared by turns as the consensus wobbles. Returns the raters whose verdict changed.
 */
function reflag(
  data: PreparedRatings,
  state: ModelState,
  stats: ConsensusStatistics,
  flagging: CalibrationOptions['flagging'],
  flags: Flags,
  touched: Uint8Array,
): { count: number; raters: Uint8Array } {
  const changedRaters = new Uint8Array(data.raterCount);
  let changed = 0;
  for (let r = 0; r < data.raterCount; r++) {
    if (!touched[r]) continue;
    const reason = flagReason(r, data, state, stats, flagging);
    if ((reason !== null) === (flags.flagged[r] === 1)) {
      if (reason !== null) flags.reasons[r] = reason;
      continue;
    }
    changed++;
    changedRaters[r] = 1;
    flags.flagged[r] = reason === null ? 0 : 1;
    flags.reasons[r] = reason;
    state.influence[r] = reason === null ? 1 : flagging.action === 'exclude' ? 0 : flagging.downweightFactor;
  }
  return { count: changed, raters: changedRaters };
}
