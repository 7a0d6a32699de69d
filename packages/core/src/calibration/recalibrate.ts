import { z } from 'zod';
import {
  type CalibrationColumns,
  CalibrationOptions,
  type CalibrationOptionsInput,
  calibratePrepared,
  type Flags,
  fillItemColumns,
  itemColumns,
  raterColumns,
} from './calibrate.js';
import { normalQuantile } from './distributions.js';
import {
  type ConsensusStatistics,
  consensusStatistics,
  flagReason,
  raterConsensusStatistics,
} from './flagging.js';
import {
  BLOCK,
  type Hyperparameters,
  indexByRater,
  itemPass,
  loadRaterBlock,
  type ModelOptions,
  type ModelState,
  type PreparedRatings,
  prepareRatings,
  type RaterIndex,
  type RatingColumns,
  raterPass,
  SUM_M,
  SUM_MM,
  SUM_YM,
  updateHyperparameters,
  updateRater,
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
   * The local sweeps spread a change from an item to its raters, and from a rater to the items it
   * would shift, only while it is larger than this (in reward units): what bounds them to the
   * neighbourhood of the new ratings. The passes below carry the smaller changes.
   */
  propagationTolerance: z.number().min(1e-8).max(1).default(1e-2),
  /**
   * Plain EM passes over all ratings after the local sweeps, with the priors fixed: they carry the
   * changes below the tolerance (each small, but on many items) one hop per pass.
   */
  passes: z.number().int().min(0).max(100).default(4),
  /** Sweeps of the local updates per flagging round (each one hop further from the new ratings). */
  sweeps: z.number().int().min(1).max(1000).default(50),
  /**
   * After an incremental run a stored reward is rewritten only when the fit moved it (or its sd or
   * an interval bound) by more than this since it was last written, or its item has new ratings:
   * every stored value stays within this of the latest fit (loop's calibrateProject compares
   * against what it wrote, not against the previous fit, so small moves cannot add up). 1% new
   * ratings nudge every rater a little and so nearly every item by less than this; rewriting them
   * all was most of an incremental run's time. A full refit writes everything.
   */
  rewardTolerance: z.number().min(0).max(0.005).default(1e-3),
});
export type RecalibrationPolicyInput = z.input<typeof RecalibrationPolicy>;
export type RecalibrationPolicy = z.output<typeof RecalibrationPolicy>;

/** The previous run's fit as stored per rater, indexed like the current columns' raters. */
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
  /** Items and raters the local updates re-solved (0 for a full refit). */
  updatedItems: number;
  updatedRaters: number;
  /** The drift statistic of an incremental run (NaN for a full refit). */
  drift: number;
  /**
   * Items whose reward or sd moved by more than `REWARD_WRITE_THRESHOLD`, or that got new
   * ratings: what a store has to rewrite (every item after a full refit).
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
 * Everything a recalibration needs from the previous run, so that the next one costs what the new
 * ratings touch: the ratings sorted by item and indexed by rater, the fitted state (raters, item
 * posteriors, priors), each rater's moments at their items' posteriors, the verdicts, the
 * consensus statistics and the item columns. Never changed once made: a recalibration copies
 * what it changes and returns a new snapshot (so results handed out earlier stay as they were).
 */
export interface CalibrationSnapshot {
  readonly options: CalibrationOptions;
  readonly data: PreparedRatings;
  readonly byRater: RaterIndex;
  readonly state: ModelState;
  /** Per rater (3 each): sums of w m, w (m^2 + v), w y m over their ratings. */
  readonly sums: Float64Array;
  /** Per rater (2 each): upper bounds of their items' posterior variance and |mean| (see raterReach; null: to be recomputed). */
  readonly reach: Float64Array | null;
  readonly flags: Flags;
  readonly stats: ConsensusStatistics;
  readonly items: CalibrationColumns['items'];
  /** Incremental runs since the last full refit. */
  readonly incrementalRuns: number;
}

/** A full fit that also returns the snapshot the next recalibrateSnapshot starts from. */
export function calibrateWithSnapshot(
  columns: RatingColumns,
  optionsInput: CalibrationOptionsInput = {},
): { result: Recalibration; snapshot: CalibrationSnapshot } {
  const options = CalibrationOptions.parse(optionsInput);
  return fullRefit(prepareRatings(columns), options, 'no previous calibration', { items: 0, raters: 0 });
}

function fullRefit(
  data: PreparedRatings,
  options: CalibrationOptions,
  reason: string,
  touched: { items: number; raters: number },
): { result: Recalibration; snapshot: CalibrationSnapshot } {
  const fit = calibratePrepared(data, options);
  const snapshot: CalibrationSnapshot = {
    options,
    data,
    byRater: indexByRater(data),
    state: fit.state,
    sums: raterMoments(data, fit.state),
    reach: raterReach(data, fit.state),
    flags: fit.flags,
    stats: fit.stats,
    items: fit.result.items,
    incrementalRuns: 0,
  };
  const result: Recalibration = {
    ...fit.result,
    mode: 'full',
    reason,
    touchedItems: touched.items,
    touchedRaters: touched.raters,
    updatedItems: 0,
    updatedRaters: 0,
    drift: Number.NaN,
    changedItems: new Uint8Array(data.itemCount).fill(1),
  };
  return { result, snapshot };
}

/**
 * Per rater, the largest posterior variance and |mean| among their items: what bounds how far a
 * move of the rater can shift any of their items, so a rater whose move is too small to shift even
 * the worst of them by the tolerance spreads nothing without reading their items. The local
 * sweeps keep them upper bounds (raised as items move, never lowered until the next pass).
 */
function raterReach(data: PreparedRatings, state: ModelState): Float64Array {
  const reach = new Float64Array(2 * data.raterCount);
  for (let i = 0; i < data.itemCount; i++) {
    const v = state.itemPostVar[i]!;
    const m = Math.abs(state.itemPostMean[i]!);
    for (let k = data.itemStart[i]!; k < data.itemStart[i + 1]!; k++) {
      const o = 2 * data.rater[k]!;
      if (v > reach[o]!) reach[o] = v;
      if (m > reach[o + 1]!) reach[o + 1] = m;
    }
  }
  return reach;
}

/** Each rater's sums of w m, w (m^2 + v), w y m at the current item posteriors (one pass). */
function raterMoments(data: PreparedRatings, state: ModelState): Float64Array {
  const sums = new Float64Array(3 * data.raterCount);
  for (let i = 0; i < data.itemCount; i++) {
    const m = state.itemPostMean[i]!;
    const mm = m * m + state.itemPostVar[i]!;
    for (let k = data.itemStart[i]!; k < data.itemStart[i + 1]!; k++) {
      const o = 3 * data.rater[k]!;
      const w = data.weight === null ? 1 : data.weight[k]!;
      sums[o]! += w * m;
      sums[o + 1]! += w * mm;
      sums[o + 2]! += w * data.value[k]! * m;
    }
  }
  return sums;
}

/**
 * Recalibrates after `added` ratings (item and rater indices continue the snapshot's: new items
 * and raters take the next indices, and `itemCount`/`raterCount` give the new totals). Starts from
 * the snapshot and refits only what the new ratings reach (see refitLocally); a full refit
 * instead when the options changed, on the policy's schedule, when too many raters are touched or
 * when the priors drifted. Ratings changed or deleted since the snapshot are not expressible
 * here: the caller refits fully (calibrateWithSnapshot) in that case.
 */
export function recalibrateSnapshot(
  snapshot: CalibrationSnapshot,
  added: RatingColumns,
  optionsInput: CalibrationOptionsInput = {},
  policyInput: RecalibrationPolicyInput = {},
): { result: Recalibration; snapshot: CalibrationSnapshot } {
  const policy = RecalibrationPolicy.parse(policyInput);
  const options = CalibrationOptions.parse(optionsInput);
  const merged = mergeRatings(snapshot.data, snapshot.byRater, added);
  const data = merged.data;
  const newRatings = { items: new Uint8Array(data.itemCount), raters: new Uint8Array(data.raterCount) };
  for (let k = 0; k < added.item.length; k++) {
    newRatings.items[added.item[k]!] = 1;
    newRatings.raters[added.rater[k]!] = 1;
  }
  const known = (r: number) => r < snapshot.data.raterCount && snapshot.data.raterCountOf[r]! > 0;
  const touched = touchedRaters(data, known, newRatings);
  const counts = { items: touched.itemCount, raters: touched.raterCount };
  const full = (reason: string) => fullRefit(data, options, reason, counts);
  // Both are the zod output of one schema (keys in schema order, plain data), so equal options
  // serialize alike; core stays browser-safe (no node:util).
  if (JSON.stringify(options) !== JSON.stringify(snapshot.options))
    return full('the calibration options changed');
  if (snapshot.incrementalRuns >= policy.fullRefitEvery) {
    return full(`scheduled: ${snapshot.incrementalRuns} incremental runs since the last full refit`);
  }
  const crowded = crowdedReason(data, touched.raterCount, policy);
  if (crowded) return full(crowded);
  const work = extendWork(snapshot, merged, options);
  // The new ratings enter their raters' moments at their items' current posteriors; the first
  // sweep re-solves those items and moves the moments on by the change.
  for (let k = 0; k < added.item.length; k++) {
    const i = added.item[k]!;
    const o = 3 * added.rater[k]!;
    const w = added.weight ? added.weight[k]! : 1;
    const m = work.state.itemPostMean[i]!;
    work.sums[o]! += w * m;
    work.sums[o + 1]! += w * (m * m + work.state.itemPostVar[i]!);
    work.sums[o + 2]! += w * added.value[k]! * m;
  }
  const outcome = refitLocally(work, newRatings, touched.raters, policy);
  if (outcome.drift > policy.maxDrift) {
    return full(`drift ${outcome.drift.toFixed(3)} in the priors (more than ${policy.maxDrift})`);
  }
  const next: CalibrationSnapshot = { ...work, options, incrementalRuns: snapshot.incrementalRuns + 1 };
  return { result: resultOf(work, outcome, counts), snapshot: next };
}

/**
 * Calibrates all of `columns` starting from the previous run's stored raters and priors (what a
 * process without a snapshot has): the ratings are sorted and every item's posterior computed at
 * the previous raters (passes over all ratings), then only what the new ratings reach is refitted
 * as in recalibrateSnapshot. Falls back to a full refit like it.
 */
export function recalibrateRatingColumns(
  columns: RatingColumns,
  previous: PreviousCalibration | null,
  newRatings: NewRatings,
  optionsInput: CalibrationOptionsInput = {},
  policyInput: RecalibrationPolicyInput = {},
): Recalibration {
  return recalibrateColumnsWithSnapshot(columns, previous, newRatings, optionsInput, policyInput).result;
}

/** recalibrateRatingColumns, also returning the snapshot the next recalibrateSnapshot starts from. */
export function recalibrateColumnsWithSnapshot(
  columns: RatingColumns,
  previous: PreviousCalibration | null,
  newRatings: NewRatings,
  optionsInput: CalibrationOptionsInput = {},
  policyInput: RecalibrationPolicyInput = {},
): { result: Recalibration; snapshot: CalibrationSnapshot } {
  const policy = RecalibrationPolicy.parse(policyInput);
  const options = CalibrationOptions.parse(optionsInput);
  const data = prepareRatings(columns);
  if (newRatings.items.length !== data.itemCount || newRatings.raters.length !== data.raterCount) {
    throw new RangeError('touched items and raters must have one entry per item and rater');
  }
  const none = { items: 0, raters: 0 };
  if (previous === null) return fullRefit(data, options, 'no previous calibration', none);
  if (previous.incrementalRuns >= policy.fullRefitEvery) {
    const reason = `scheduled: ${previous.incrementalRuns} incremental runs since the last full refit`;
    return fullRefit(data, options, reason, none);
  }
  const touched = touchedRaters(data, (r) => previous.raters.known[r] === 1, newRatings);
  const counts = { items: touched.itemCount, raters: touched.raterCount };
  const crowded = crowdedReason(data, touched.raterCount, policy);
  if (crowded) return fullRefit(data, options, crowded, counts);
  const work = warmWork(data, previous, options);
  const outcome = refitLocally(work, newRatings, touched.raters, policy);
  if (outcome.drift > policy.maxDrift) {
    const reason = `drift ${outcome.drift.toFixed(3)} in the priors (more than ${policy.maxDrift})`;
    return fullRefit(data, options, reason, counts);
  }
  const snapshot: CalibrationSnapshot = { ...work, options, incrementalRuns: previous.incrementalRuns + 1 };
  return { result: resultOf(work, outcome, counts), snapshot };
}

function crowdedReason(
  data: PreparedRatings,
  touchedCount: number,
  policy: RecalibrationPolicy,
): string | null {
  let rated = 0;
  for (let r = 0; r < data.raterCount; r++) if (data.raterCountOf[r]! > 0) rated++;
  if (touchedCount <= policy.maxTouchedRaterShare * rated) return null;
  return `${touchedCount} of ${rated} raters have new ratings (more than ${policy.maxTouchedRaterShare})`;
}

/**
 * The raters re-judged: those whose own data changed (a new rating, or unseen by the previous run)
 * and every other rater of an item with new ratings, whose consensus on that item moved.
 */
function touchedRaters(
  data: PreparedRatings,
  known: (r: number) => boolean,
  newRatings: NewRatings,
): { raters: Uint8Array; raterCount: number; itemCount: number } {
  const raters = newRatings.raters.slice();
  let itemCount = 0;
  for (let i = 0; i < data.itemCount; i++) {
    if (!newRatings.items[i]) continue;
    itemCount++;
    for (let k = data.itemStart[i]!; k < data.itemStart[i + 1]!; k++) raters[data.rater[k]!] = 1;
  }
  let raterCount = 0;
  for (let r = 0; r < data.raterCount; r++) {
    if (!known(r) && data.raterCountOf[r]! > 0) raters[r] = 1;
    raterCount += raters[r]!;
  }
  return { raters, raterCount, itemCount };
}

/** What the local refit reads and writes: a snapshot's parts, owned by this run. */
interface Work {
  options: CalibrationOptions;
  modelOptions: ModelOptions;
  data: PreparedRatings;
  byRater: RaterIndex;
  state: ModelState;
  sums: Float64Array;
  /** null after the passes moved every item (see raterReach), until a sweep needs it again. */
  reach: Float64Array | null;
  flags: Flags;
  stats: ConsensusStatistics;
  items: CalibrationColumns['items'];
  /** Changes not yet spread (see sweep): per item and per rater. */
  pending: { pendingItem: Float64Array; pendingRater: Float64Array };
}

/** A rater whose move could shift no item by more than this share of the tolerance reads none of them. */
const SKIP_SHARE = 0.25;

/** A flagging round after the first sweeps to the propagation tolerance divided by this (see refitLocally). */
const LATER_ROUND_REFINEMENT = 4;

function modelOptionsOf(options: CalibrationOptions): ModelOptions {
  return { ...options, ...options.priors };
}

function influenceOf(flagged: boolean, flagging: CalibrationOptions['flagging']): number {
  if (!flagged) return 1;
  return flagging.action === 'exclude' ? 0 : flagging.downweightFactor;
}

/** A copy of `from` grown to `length`, the new entries `fill`. */
function grown<T extends Float64Array | Int32Array | Uint8Array>(from: T, length: number, fill: number): T {
  const out = new (from.constructor as new (n: number) => T)(length);
  out.set(from);
  if (length > from.length) out.fill(fill, from.length);
  return out;
}

/** The snapshot's state copied (this run must not change it) and grown to the merged counts. */
function extendWork(
  snapshot: CalibrationSnapshot,
  merged: { data: PreparedRatings; byRater: RaterIndex },
  options: CalibrationOptions,
): Work {
  const { data } = merged;
  const R = data.raterCount;
  const I = data.itemCount;
  const s = snapshot.state;
  const hyper = { ...s.hyper };
  const state: ModelState = {
    bias: grown(s.bias, R, 0),
    scale: grown(s.scale, R, 1),
    noiseVar: grown(s.noiseVar, R, hyper.noiseVar),
    biasPostVar: grown(s.biasPostVar, R, hyper.biasVar),
    scalePostVar: grown(s.scalePostVar, R, hyper.scaleVar),
    rss: grown(s.rss, R, 0),
    influence: grown(s.influence, R, 1),
    itemPostMean: grown(s.itemPostMean, I, hyper.itemMean),
    itemPostVar: grown(s.itemPostVar, I, hyper.itemVar),
    hyper,
  };
  const it = snapshot.items;
  const items: CalibrationColumns['items'] = {
    n: grown(it.n, I, 0),
    rawMean: grown(it.rawMean, I, Number.NaN),
    reward: state.itemPostMean,
    sd: grown(it.sd, I, Math.sqrt(hyper.itemVar)),
    lower: grown(it.lower, I, Number.NaN),
    upper: grown(it.upper, I, Number.NaN),
    wilsonLower: grown(it.wilsonLower, I, Number.NaN),
    wilsonUpper: grown(it.wilsonUpper, I, Number.NaN),
  };
  const st = snapshot.stats;
  return {
    options,
    modelOptions: modelOptionsOf(options),
    data,
    byRater: merged.byRater,
    state,
    sums: grown(snapshot.sums, 3 * R, 0),
    reach: snapshot.reach && grown(snapshot.reach, 2 * R, 0),
    flags: {
      flagged: grown(snapshot.flags.flagged, R, 0),
      reasons: [...snapshot.flags.reasons, ...new Array(R - snapshot.flags.reasons.length).fill(null)],
    },
    stats: {
      informative: grown(st.informative, R, 0),
      correlation: grown(st.correlation, R, Number.NaN),
      ratingSd: grown(st.ratingSd, R, 0),
      consensusSd: grown(st.consensusSd, R, 0),
    },
    items,
    pending: { pendingItem: new Float64Array(I), pendingRater: new Float64Array(R) },
  };
}

/**
 * The previous run's raters and priors on freshly sorted ratings (unseen raters at the prior:
 * unbiased, unit scale, pooled noise), with every item's posterior, every rater's moments and
 * posterior variances, the consensus statistics and the item columns at those raters.
 */
function warmWork(data: PreparedRatings, previous: PreviousCalibration, options: CalibrationOptions): Work {
  const R = data.raterCount;
  const I = data.itemCount;
  const modelOptions = modelOptionsOf(options);
  const hyper = { ...previous.hyperparameters };
  const p = previous.raters;
  const minNoiseVar = options.minNoiseSd ** 2;
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
    state.influence[r] = influenceOf(p.flagged[r] === 1, options.flagging);
  }
  const block = new Float64Array(R * BLOCK);
  loadRaterBlock(state, block);
  itemPass(data, state, block);
  const sums = new Float64Array(3 * R);
  for (let r = 0; r < R; r++) {
    sums[3 * r] = block[r * BLOCK + SUM_M]!;
    sums[3 * r + 1] = block[r * BLOCK + SUM_MM]!;
    sums[3 * r + 2] = block[r * BLOCK + SUM_YM]!;
    updateRater(
      state,
      modelOptions,
      r,
      data.raterWeight[r]!,
      data.raterSumY[r]!,
      data.raterSumYY[r]!,
      sums[3 * r]!,
      sums[3 * r + 1]!,
      sums[3 * r + 2]!,
      false,
    );
  }
  return {
    options,
    modelOptions,
    data,
    byRater: indexByRater(data),
    state,
    sums,
    reach: raterReach(data, state),
    flags: { flagged: p.flagged.slice(), reasons: p.flagReason.slice() },
    stats: consensusStatistics(data, state),
    items: itemColumns(data, state, options.intervalLevel),
    pending: { pendingItem: new Float64Array(I), pendingRater: new Float64Array(R) },
  };
}

interface LocalOutcome {
  changedItems: Uint8Array;
  updatedItems: number;
  updatedRaters: number;
  iterations: number;
  rounds: number;
  converged: boolean;
  drift: number;
}

/** A set of indices with O(1) insert and a list to walk (no pass over all items or raters). */
class Frontier {
  readonly marked: Uint8Array;
  list: Int32Array;
  size = 0;
  constructor(n: number) {
    this.marked = new Uint8Array(n);
    this.list = new Int32Array(Math.min(n, 1024));
  }
  add(x: number): void {
    if (this.marked[x]) return;
    this.marked[x] = 1;
    if (this.size === this.list.length) {
      const bigger = new Int32Array(Math.min(this.marked.length, 2 * this.list.length));
      bigger.set(this.list);
      this.list = bigger;
    }
    this.list[this.size++] = x;
  }
  /** The members, emptying the set. */
  take(): Int32Array {
    const out = this.list.slice(0, this.size);
    for (const x of out) this.marked[x] = 0;
    this.size = 0;
    return out;
  }
}

/**
 * The incremental fit. With the priors held at the previous run's, it solves the same fixed
 * point as the full fit's EM by local updates: an item's posterior given its raters, a rater's
 * (bias, scale, noise) given their items' posteriors (updateRater, from moments kept current as
 * items move). It starts at the items and raters with new ratings and spreads hop by hop only
 * while a change exceeds `propagationTolerance`, so its cost is what the new ratings reach. Then
 * the touched raters are re-judged in either direction (the others keep their verdict), a verdict
 * change spreads the same way, and finally the priors the posteriors ask for give the drift.
 */
function refitLocally(
  work: Work,
  newRatings: NewRatings,
  touched: Uint8Array,
  policy: RecalibrationPolicy,
): LocalOutcome {
  const { data } = work;
  const items = new Frontier(data.itemCount);
  const raters = new Frontier(data.raterCount);
  const changed = new Uint8Array(data.itemCount);
  const everUpdatedItem = new Uint8Array(data.itemCount);
  const everUpdatedRater = new Uint8Array(data.raterCount);
  // Items whose interval is recomputed from their ratings (the others only moved with the passes: see spread).
  const refill = new Uint8Array(data.itemCount);
  for (let i = 0; i < data.itemCount; i++) {
    if (!newRatings.items[i]) continue;
    items.add(i);
    changed[i] = 1;
  }
  for (let r = 0; r < data.raterCount; r++) if (newRatings.raters[r]) raters.add(r);
  const touchedList: number[] = [];
  for (let r = 0; r < data.raterCount; r++) if (touched[r]) touchedList.push(r);
  let iterations = 0;
  let rounds = 0;
  let converged = false;
  for (;;) {
    rounds++;
    // A later round starts from the few raters whose verdict changed: their neighbourhood is
    // small, so it is swept to a finer tolerance instead of passes over all ratings (measured on
    // 3M ratings, 2 rounds: without either, rewards 0.021 off a full refit; at a quarter of the
    // tolerance 0.007, re-solving 0.6% more items; a second set of passes took ~1.1 s there).
    const tolerance = policy.propagationTolerance / (rounds === 1 ? 1 : LATER_ROUND_REFINEMENT);
    const swept = sweep(work, items, raters, changed, everUpdatedItem, everUpdatedRater, policy, tolerance);
    iterations += swept.sweeps;
    converged = swept.converged;
    // The passes carry the first round's tail of small changes everywhere; a later round's
    // verdict changes are a few raters, whose neighbourhood the sweeps cover.
    if (rounds === 1) {
      spread(work, policy.passes, changed, refill);
      iterations += policy.passes;
    }
    for (const r of touchedList) raterConsensusStatistics(data, work.byRater, work.state, r, work.stats);
    if (!work.options.flagging.enabled || rounds >= work.options.flagging.maxRounds) break;
    if (reflag(work, touchedList, items, raters, changed) === 0) break;
  }
  // Interval, raw mean and Wilson interval of every item that moved or whose raters changed verdict.
  const interval = {
    level: work.options.intervalLevel,
    z: normalQuantile(1 - (1 - work.options.intervalLevel) / 2),
  };
  for (let i = 0; i < data.itemCount; i++) {
    if (refill[i] || everUpdatedItem[i]) fillItemColumns(data, work.state, work.items, i, interval);
  }
  const updatedItems = everUpdatedItem.reduce((n, x) => n + x, 0);
  const updatedRaters = everUpdatedRater.reduce((n, x) => n + x, 0);
  return {
    changedItems: changed,
    updatedItems,
    updatedRaters,
    iterations,
    rounds,
    converged,
    drift: drift(work),
  };
}

/**
 * `passes` plain EM passes over all ratings with the priors fixed (every item's posterior, every
 * rater's step): the long tail of small changes the local sweeps left below their tolerance
 * spreads one rater-item hop per pass. A final item pass leaves items consistent with the raters
 * and the raters' moments consistent with the items.
 */
function spread(work: Work, passes: number, changed: Uint8Array, refill: Uint8Array): void {
  if (passes === 0) return;
  const { data, state, items } = work;
  const before = state.itemPostMean.slice();
  const beforeVar = state.itemPostVar.slice();
  const block = new Float64Array(data.raterCount * BLOCK);
  for (let p = 0; p < passes; p++) {
    loadRaterBlock(state, block);
    itemPass(data, state, block);
    raterPass(data, state, work.modelOptions, block);
  }
  loadRaterBlock(state, block);
  itemPass(data, state, block);
  for (let r = 0; r < data.raterCount; r++) {
    work.sums[3 * r] = block[r * BLOCK + SUM_M]!;
    work.sums[3 * r + 1] = block[r * BLOCK + SUM_MM]!;
    work.sums[3 * r + 2] = block[r * BLOCK + SUM_YM]!;
  }
  // An item the passes moved keeps its interval's width (the raters' small moves change it by
  // far less than the reward): the interval moves with the reward, without reading the item's
  // ratings again. One whose posterior sd moved is recomputed. The reach bounds grow by the
  // largest moves, so they stay upper bounds without a pass over the ratings.
  const reach = work.reach;
  let grewMean = 0;
  let grewVar = 0;
  for (let i = 0; i < data.itemCount; i++) {
    const dm = state.itemPostMean[i]! - before[i]!;
    const dv = state.itemPostVar[i]! - beforeVar[i]!;
    if (Math.abs(state.itemPostMean[i]!) - Math.abs(before[i]!) > grewMean) {
      grewMean = Math.abs(state.itemPostMean[i]!) - Math.abs(before[i]!);
    }
    if (dv > grewVar) grewVar = dv;
    if (Math.abs(Math.sqrt(state.itemPostVar[i]!) - Math.sqrt(beforeVar[i]!)) > REWARD_WRITE_THRESHOLD) {
      changed[i] = 1;
      refill[i] = 1;
    } else if (Math.abs(dm) > REWARD_WRITE_THRESHOLD) {
      changed[i] = 1;
      items.lower[i]! += dm;
      items.upper[i]! += dm;
    }
  }
  if (reach !== null) {
    for (let r = 0; r < data.raterCount; r++) {
      reach[2 * r]! += grewVar;
      reach[2 * r + 1]! += grewMean;
    }
  }
}

/**
 * Alternating local updates until nothing is left to spread or `policy.sweeps` ran: the marked
 * items' posteriors (moving their raters' moments by the change; a move beyond the tolerance
 * marks the raters), then the marked raters' parameters (a move beyond the tolerance marks their
 * items).
 */
function sweep(
  work: Work,
  items: Frontier,
  raters: Frontier,
  changed: Uint8Array,
  everUpdatedItem: Uint8Array,
  everUpdatedRater: Uint8Array,
  policy: RecalibrationPolicy,
  tolerance: number,
): { sweeps: number; converged: boolean } {
  work.reach ??= raterReach(work.data, work.state);
  const { data, state, sums, reach, byRater } = work;
  const { itemStart, rater, value, weight } = data;
  const { itemMean, itemVar } = state.hyper;
  const priorPrecision = 1 / itemVar;
  const priorSum = itemMean * priorPrecision;
  // What an item reads of each rater, kept current as raters move (as loadRaterBlock, 3 per rater).
  const gains = new Float64Array(3 * data.raterCount);
  const loadGains = (r: number) => {
    const gain = (state.influence[r]! * state.scale[r]!) / state.noiseVar[r]!;
    gains[3 * r] = gain * state.scale[r]!;
    gains[3 * r + 1] = gain;
    gains[3 * r + 2] = gain * state.bias[r]!;
  };
  for (let r = 0; r < data.raterCount; r++) loadGains(r);
  const { pendingItem, pendingRater } = work.pending;
  const skipBelow = tolerance * SKIP_SHARE;
  for (let s = 1; s <= policy.sweeps; s++) {
    if (items.size === 0 && raters.size === 0) return { sweeps: s - 1, converged: true };
    for (const i of items.take()) {
      everUpdatedItem[i] = 1;
      let precision = 0;
      let sum = 0;
      for (let k = itemStart[i]!; k < itemStart[i + 1]!; k++) {
        const o = 3 * rater[k]!;
        const w = weight === null ? 1 : weight[k]!;
        precision += w * gains[o]!;
        sum += w * (gains[o + 1]! * value[k]! - gains[o + 2]!);
      }
      const v = 1 / (priorPrecision + precision);
      const m = (priorSum + sum) * v;
      const oldM = state.itemPostMean[i]!;
      const oldV = state.itemPostVar[i]!;
      const dm = m - oldM;
      const dmm = m * m + v - (oldM * oldM + oldV);
      if (
        Math.abs(dm) > REWARD_WRITE_THRESHOLD ||
        Math.abs(Math.sqrt(v) - Math.sqrt(oldV)) > REWARD_WRITE_THRESHOLD
      ) {
        changed[i] = 1;
      }
      state.itemPostMean[i] = m;
      state.itemPostVar[i] = v;
      pendingItem[i] = 0;
      const absDm = Math.abs(dm);
      const absM = Math.abs(m);
      for (let k = itemStart[i]!; k < itemStart[i + 1]!; k++) {
        const r = rater[k]!;
        const w = weight === null ? 1 : weight[k]!;
        sums[3 * r]! += w * dm;
        sums[3 * r + 1]! += w * dmm;
        sums[3 * r + 2]! += w * value[k]! * dm;
        if (v > reach[2 * r]!) reach[2 * r] = v;
        if (absM > reach[2 * r + 1]!) reach[2 * r + 1] = absM;
        pendingRater[r]! += w * absDm;
        if (pendingRater[r]! > tolerance) raters.add(r);
      }
    }
    for (const r of raters.take()) {
      everUpdatedRater[r] = 1;
      pendingRater[r] = 0;
      const b = state.bias[r]!;
      const sc = state.scale[r]!;
      const nv = state.noiseVar[r]!;
      updateRater(
        state,
        work.modelOptions,
        r,
        data.raterWeight[r]!,
        data.raterSumY[r]!,
        data.raterSumYY[r]!,
        sums[3 * r]!,
        sums[3 * r + 1]!,
        sums[3 * r + 2]!,
        true,
      );
      loadGains(r);
      const influence = state.influence[r]!;
      if (influence === 0) continue;
      const sNew = state.scale[r]!;
      const db = Math.abs(state.bias[r]! - b);
      const ds = Math.abs(sNew - sc);
      const dNoise = Math.abs(Math.log(state.noiseVar[r]! / nv));
      // Each item hears of the move in proportion to the rater's share of its precision (precision
      // gain times the item's posterior variance): only the items it would shift by more than the
      // tolerance are re-solved.
      const gainPerShift = gains[3 * r]! / Math.max(Math.abs(sNew), 0.05);
      const bNew = state.bias[r]!;
      // The test below at its worst item: the largest posterior variance and |m| among the
      // rater's items (reach) and a residual at most the root of the rater's rss (unit weights).
      // When even that is within the tolerance, no item needs reading (most raters' moves).
      if (byRater.weight === null) {
        const worst = Math.sqrt(state.rss[r]!);
        const bound = gainPerShift * reach[2 * r]! * (db + ds * (reach[2 * r + 1]! + worst) + dNoise * worst);
        if (bound <= skipBelow) continue;
      }
      for (let j = byRater.start[r]!; j < byRater.start[r + 1]!; j++) {
        const i = byRater.item[j]!;
        const share =
          (byRater.weight === null ? 1 : byRater.weight[j]!) * gainPerShift * state.itemPostVar[i]!;
        const m = state.itemPostMean[i]!;
        const residual = Math.abs(byRater.value[j]! - bNew - sNew * m);
        pendingItem[i]! += share * (db + ds * (Math.abs(m) + residual) + dNoise * residual);
        if (pendingItem[i]! > tolerance) items.add(i);
      }
    }
  }
  return { sweeps: policy.sweeps, converged: items.size === 0 && raters.size === 0 };
}

/**
 * Re-judges the touched raters in either direction (new ratings can clear a rater as well as
 * condemn one); the others keep their verdict, so a rater whose ratings did not change is not
 * flagged and cleared by turns as the consensus wobbles. A changed verdict changes the rater's
 * influence: the rater and their items are marked for the next sweeps. Returns how many changed.
 */
function reflag(
  work: Work,
  touched: number[],
  items: Frontier,
  raters: Frontier,
  changed: Uint8Array,
): number {
  const { data, state, stats, flags, byRater } = work;
  const { flagging } = work.options;
  let count = 0;
  for (const r of touched) {
    const reason = flagReason(r, data, state, stats, flagging);
    if ((reason !== null) === (flags.flagged[r] === 1)) {
      if (reason !== null) flags.reasons[r] = reason;
      continue;
    }
    count++;
    flags.flagged[r] = reason === null ? 0 : 1;
    flags.reasons[r] = reason;
    state.influence[r] = influenceOf(reason !== null, flagging);
    raters.add(r);
    for (let j = byRater.start[r]!; j < byRater.start[r + 1]!; j++) {
      items.add(byRater.item[j]!);
      changed[byRater.item[j]!] = 1;
    }
  }
  return count;
}

/**
 * The priors the current posteriors ask for (O(items + raters), no pass over the ratings), as the
 * largest relative change of a prior variance or item-mean shift in prior sds. The state's priors
 * are left as they were.
 */
function drift(work: Work): number {
  const { data, state } = work;
  const kept = { ...state.hyper };
  let informedItems = 0;
  let sumMean = 0;
  let sumSquare = 0;
  let sumVar = 0;
  // An item informed by no rater with influence has exactly the prior variance.
  const uninformed = kept.itemVar * (1 - 1e-12);
  for (let i = 0; i < data.itemCount; i++) {
    const v = state.itemPostVar[i]!;
    if (!(v < uninformed)) continue;
    const m = state.itemPostMean[i]!;
    informedItems++;
    sumMean += m;
    sumSquare += m * m;
    sumVar += v;
  }
  updateHyperparameters(data, state, work.modelOptions, {
    maxChange: 0,
    informedItems,
    sumMean,
    sumSquare,
    sumVar,
  });
  const asked = { ...state.hyper };
  Object.assign(state.hyper, kept);
  const ratio = (a: number, b: number) => Math.abs(Math.log(a / b));
  return Math.max(
    ratio(asked.itemVar, kept.itemVar),
    ratio(asked.noiseVar, kept.noiseVar),
    ratio(asked.biasVar, kept.biasVar),
    work.modelOptions.fitScale ? ratio(asked.scaleVar, kept.scaleVar) : 0,
    Math.abs(asked.itemMean - kept.itemMean) / Math.sqrt(kept.itemVar),
  );
}

function resultOf(
  work: Work,
  outcome: LocalOutcome,
  counts: { items: number; raters: number },
): Recalibration {
  return {
    raters: raterColumns(work.data, work.state, work.stats.correlation, work.flags),
    items: work.items,
    hyperparameters: { ...work.state.hyper },
    iterations: outcome.iterations,
    converged: outcome.converged,
    rounds: outcome.rounds,
    mode: 'incremental',
    reason: 'incremental',
    touchedItems: counts.items,
    touchedRaters: counts.raters,
    updatedItems: outcome.updatedItems,
    updatedRaters: outcome.updatedRaters,
    drift: outcome.drift,
    changedItems: outcome.changedItems,
  };
}

/**
 * The snapshot's item-sorted ratings with `added` inserted at the end of their items' runs, and
 * the rater index to match: copies of contiguous runs (memcpy) plus work proportional to the
 * added ratings, with no re-sort of the old ones.
 */
function mergeRatings(
  old: PreparedRatings,
  oldIndex: RaterIndex,
  added: RatingColumns,
): { data: PreparedRatings; byRater: RaterIndex } {
  const I = added.itemCount;
  const R = added.raterCount;
  const m = added.item.length;
  if (!(I >= old.itemCount && R >= old.raterCount)) {
    throw new RangeError('the added ratings must keep the snapshot items and raters (counts cannot shrink)');
  }
  if (added.rater.length !== m || added.value.length !== m || (added.weight && added.weight.length !== m)) {
    throw new RangeError('rating columns must have the same length');
  }
  for (let k = 0; k < m; k++) {
    const i = added.item[k]!;
    const r = added.rater[k]!;
    if (!(i >= 0 && i < I)) throw new RangeError(`item index ${i} out of range at rating ${k}`);
    if (!(r >= 0 && r < R)) throw new RangeError(`rater index ${r} out of range at rating ${k}`);
    const w = added.weight ? added.weight[k]! : 1;
    if (!Number.isFinite(added.value[k]!) || !(w >= 0 && w < Number.POSITIVE_INFINITY)) {
      throw new RangeError(`rating ${k} has a non-finite value or weight`);
    }
  }
  const order = Int32Array.from({ length: m }, (_, k) => k).sort(
    (a, b) => added.item[a]! - added.item[b]! || a - b,
  );
  const n = old.rater.length + m;
  // itemStart: the old starts shifted by the ratings added to earlier items.
  const addedPer = new Int32Array(I);
  for (let k = 0; k < m; k++) addedPer[added.item[k]!]!++;
  const itemStart = new Int32Array(I + 1);
  for (let i = 0; i < I; i++) {
    const oldCount = i < old.itemCount ? old.itemStart[i + 1]! - old.itemStart[i]! : 0;
    itemStart[i + 1] = itemStart[i]! + oldCount + addedPer[i]!;
  }
  const addedUnit = !added.weight || added.weight.every((w) => w === 1);
  const weight = old.weight === null && addedUnit ? null : new Float64Array(n).fill(1);
  const addedThumbs = added.isThumbs?.some((t) => t === 1) ?? false;
  const isThumbs = old.isThumbs === null && !addedThumbs ? null : new Uint8Array(n);
  const rater = new Int32Array(n);
  const value = new Float64Array(n);
  let from = 0; // next old position to copy
  let to = 0;
  const copyOld = (end: number) => {
    rater.set(old.rater.subarray(from, end), to);
    value.set(old.value.subarray(from, end), to);
    if (weight && old.weight) weight.set(old.weight.subarray(from, end), to);
    if (isThumbs && old.isThumbs) isThumbs.set(old.isThumbs.subarray(from, end), to);
    to += end - from;
    from = end;
  };
  for (let j = 0; j < m; ) {
    const i = added.item[order[j]!]!;
    copyOld(i < old.itemCount ? old.itemStart[i + 1]! : old.rater.length);
    for (; j < m && added.item[order[j]!] === i; j++) {
      const k = order[j]!;
      rater[to] = added.rater[k]!;
      value[to] = added.value[k]!;
      if (weight) weight[to] = added.weight ? added.weight[k]! : 1;
      if (isThumbs) isThumbs[to] = added.isThumbs ? added.isThumbs[k]! : 0;
      to++;
    }
  }
  copyOld(old.rater.length);
  const raterCountOf = grown(old.raterCountOf, R, 0);
  const raterWeight = grown(old.raterWeight, R, 0);
  const raterSumY = grown(old.raterSumY, R, 0);
  const raterSumYY = grown(old.raterSumYY, R, 0);
  for (let k = 0; k < m; k++) {
    const r = added.rater[k]!;
    const w = added.weight ? added.weight[k]! : 1;
    const y = added.value[k]!;
    raterCountOf[r]!++;
    raterWeight[r]! += w;
    raterSumY[r]! += w * y;
    raterSumYY[r]! += w * y * y;
  }
  const data: PreparedRatings = {
    itemCount: I,
    raterCount: R,
    itemStart,
    rater,
    value,
    weight,
    isThumbs,
    raterCountOf,
    raterWeight,
    raterSumY,
    raterSumYY,
  };
  return { data, byRater: mergeIndex(oldIndex, data, added) };
}

/**
 * The rater index of the merged ratings: each rater's old entries (copied as they are), then the
 * added ones. Raters without added ratings keep their entries' order and a common offset, so each
 * run of them between two raters with added ratings is one copy.
 */
function mergeIndex(oldIndex: RaterIndex, data: PreparedRatings, added: RatingColumns): RaterIndex {
  const R = data.raterCount;
  const n = data.rater.length;
  const start = new Int32Array(R + 1);
  for (let r = 0; r < R; r++) start[r + 1] = start[r]! + data.raterCountOf[r]!;
  const item = new Int32Array(n);
  const value = new Float64Array(n);
  const weight = data.weight === null ? null : new Float64Array(n).fill(1);
  const cursor = new Int32Array(R);
  const oldRaters = oldIndex.start.length - 1;
  const addedTo = new Uint8Array(R);
  for (let k = 0; k < added.rater.length; k++) addedTo[added.rater[k]!] = 1;
  const copy = (a: number, b: number, at: number) => {
    if (b <= a) return;
    item.set(oldIndex.item.subarray(a, b), at);
    value.set(oldIndex.value.subarray(a, b), at);
    if (weight && oldIndex.weight) weight.set(oldIndex.weight.subarray(a, b), at);
  };
  for (let r = 0; r < R; ) {
    if (r < oldRaters && !addedTo[r]) {
      let e = r;
      while (e < oldRaters && !addedTo[e]) e++;
      copy(oldIndex.start[r]!, oldIndex.start[e]!, start[r]!);
      r = e;
      continue;
    }
    const a = r < oldRaters ? oldIndex.start[r]! : 0;
    const b = r < oldRaters ? oldIndex.start[r + 1]! : 0;
    copy(a, b, start[r]!);
    cursor[r] = start[r]! + b - a;
    r++;
  }
  for (let k = 0; k < added.item.length; k++) {
    const at = cursor[added.rater[k]!]!++;
    item[at] = added.item[k]!;
    value[at] = added.value[k]!;
    if (weight) weight[at] = added.weight ? added.weight[k]! : 1;
  }
  return { start, item, value, weight };
}
