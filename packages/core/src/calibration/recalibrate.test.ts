import { describe, expect, it } from 'vitest';
import { type CalibrationColumns, calibrateRatingColumns } from './calibrate.js';
import {
  calibrateWithSnapshot,
  type PreviousCalibration,
  recalibrateRatingColumns,
  recalibrateSnapshot,
} from './recalibrate.js';
import { laterRatingsScenario, subsetRatings } from './test-utils/synthetic.js';

function previousOf(result: CalibrationColumns, incrementalRuns = 0): PreviousCalibration {
  const r = result.raters;
  return {
    raters: {
      known: Uint8Array.from(r.n, (n) => (n > 0 ? 1 : 0)),
      bias: r.bias,
      scale: r.scale,
      noiseSd: r.noiseSd,
      flagged: r.flagged,
      flagReason: r.flagReason,
    },
    hyperparameters: result.hyperparameters,
    incrementalRuns,
  };
}

/** 1% of the ratings arrive after the previous run, on random items (the hard case: spread out). */
function scenario(seed: number, items: number, raters: number, adversarialShare = 0.1) {
  return laterRatingsScenario({
    seed,
    items,
    raters,
    ratingsPerItem: 3,
    adversarialShare,
    constantShare: adversarialShare / 5,
    output: 'stars',
  });
}

/** Raters flagged by one result and not the other. */
function disputedRaters(a: CalibrationColumns, b: CalibrationColumns): Uint8Array {
  return Uint8Array.from(a.raters.flagged, (f, r) => (f !== b.raters.flagged[r] ? 1 : 0));
}

function maxRewardDifference(a: CalibrationColumns, b: CalibrationColumns): number {
  let max = 0;
  for (let i = 0; i < a.items.reward.length; i++)
    max = Math.max(max, Math.abs(a.items.reward[i]! - b.items.reward[i]!));
  return max;
}

function itemsOver(a: CalibrationColumns, b: CalibrationColumns, threshold: number): number {
  let over = 0;
  for (let i = 0; i < a.items.reward.length; i++)
    if (Math.abs(a.items.reward[i]! - b.items.reward[i]!) > threshold) over++;
  return over;
}

const count = (mask: Uint8Array) => mask.reduce((n, x) => n + x, 0);

function compare(seed: number, adversarialShare: number) {
  const s = scenario(seed, 60_000, 12_000, adversarialShare);
  const previous = calibrateWithSnapshot(s.before);
  const fullRefit = calibrateRatingColumns(s.all);
  const incremental = recalibrateSnapshot(previous.snapshot, s.later).result;
  const fromStored = recalibrateRatingColumns(s.all, previousOf(previous.result), s.touched);
  // The full refit's own instability: verdicts it changed on raters whose ratings did not change.
  const untouchedFlips = disputedRaters(previous.result, fullRefit).filter(
    (d, r) => d === 1 && !s.touched.raters[r],
  ).length;
  console.log(
    `${adversarialShare * 100}% adversarial, ${s.all.item.length} ratings, 1% new: ${incremental.touchedItems} items / ` +
      `${incremental.touchedRaters} raters touched, ${incremental.updatedItems} items / ${incremental.updatedRaters} raters ` +
      `re-solved locally; ${count(disputedRaters(incremental, fullRefit))} verdicts differ of ` +
      `${count(fullRefit.raters.flagged)} flagged (the full refit itself changed ${untouchedFlips} on raters with unchanged ` +
      `ratings); max reward difference ${maxRewardDifference(incremental, fullRefit).toFixed(4)} (from stored raters ` +
      `${maxRewardDifference(fromStored, fullRefit).toFixed(4)}), drift ${incremental.drift.toFixed(4)}`,
  );
  return { s, previous, fullRefit, incremental, fromStored, untouchedFlips };
}

describe('incremental recalibration', () => {
  it('after 1% new ratings flags the same raters and gives every reward within 0.01 of a full refit', () => {
    const c = compare(5, 0);
    for (const result of [c.incremental, c.fromStored]) {
      expect(result.mode).toBe('incremental');
      expect(count(disputedRaters(result, c.fullRefit))).toBe(0);
      expect(maxRewardDifference(result, c.fullRefit)).toBeLessThan(0.01);
    }
    // It refitted locally: far fewer items re-solved than there are.
    expect(c.incremental.updatedItems).toBeLessThan(0.5 * c.s.all.itemCount);
    // Every item whose reward moved is reported for rewriting.
    const moved = c.incremental.changedItems;
    const prior = c.previous.result.items.reward;
    for (let i = 0; i < prior.length; i++) {
      if (Math.abs(c.incremental.items.reward[i]! - prior[i]!) > 1e-3) expect(moved[i]).toBe(1);
    }
  }, 120_000);

  it('with 10% adversaries, differs from a full refit only on verdicts at the threshold, where the full refit itself is unstable', () => {
    const c = compare(5, 0.1);
    expect(c.incremental.mode).toBe('incremental');
    expect(count(disputedRaters(c.incremental, c.fullRefit))).toBeLessThanOrEqual(
      Math.max(5, 2 * c.untouchedFlips),
    );
    // Rewards move only around the disputed raters (their items and those items' other raters).
    expect(itemsOver(c.incremental, c.fullRefit, 0.01)).toBeLessThan(0.01 * c.s.all.itemCount);
  }, 120_000);

  it('with 5% adversarial raters flags the same raters and keeps every reward within 0.01 of a full refit, which it would not without its passes over all ratings', () => {
    // 30 ratings per rater: every adversary (inverted or constant) is clearly flaggable, so the
    // verdicts are not at a threshold and the comparison is about the rewards.
    const s = laterRatingsScenario({
      seed: 5,
      items: 20_000,
      raters: 2_000,
      ratingsPerItem: 3,
      adversarialShare: 0.05,
      output: 'continuous',
    });
    const adversaries = s.synthetic.adversarial.reduce((n, a, r) => n + a + s.synthetic.constant[r]!, 0);
    const { snapshot } = calibrateWithSnapshot(s.before);
    const fullRefit = calibrateRatingColumns(s.all);
    const incremental = recalibrateSnapshot(snapshot, s.later).result;
    expect(incremental.mode).toBe('incremental');
    expect(count(fullRefit.raters.flagged)).toBe(adversaries);
    expect(count(disputedRaters(incremental, fullRefit))).toBe(0);
    const difference = maxRewardDifference(incremental, fullRefit);
    expect(difference).toBeLessThan(0.01);
    // The 1% new ratings move almost every item a little (each rater's other items, and their
    // other raters' items): the local sweeps stop below their tolerance, and the passes over all
    // ratings with the priors fixed carry that tail. Without them the rewards are off by more.
    const withoutPasses = recalibrateSnapshot(snapshot, s.later, {}, { passes: 0 }).result;
    console.log(
      `5% adversaries: max reward difference to a full refit ${difference.toFixed(4)}, without the passes ` +
        `${maxRewardDifference(withoutPasses, fullRefit).toFixed(4)}`,
    );
    expect(maxRewardDifference(withoutPasses, fullRefit)).toBeGreaterThan(0.01);
  }, 120_000);

  it('keeps within 0.01 of a full refit over successive runs, new items and raters included, until the scheduled full refit', () => {
    const s = scenario(9, 20_000, 4_000, 0);
    // Three batches: positions in the last 3% of items (new items, some new raters) arrive later.
    const items = s.all.itemCount;
    const batchOf = (k: number) => {
      const i = s.all.item[k]!;
      if (i < items * 0.97) return ((k * 2654435761) >>> 0) % 100 < 2 ? 1 + (k % 3) : 0;
      return 1 + Math.floor((i - items * 0.97) / (items * 0.01));
    };
    const upTo = (b: number) => subsetRatings(s.all, (k) => batchOf(k) <= b);
    // Raters and items first seen in a batch take the next indices: count what the prefix uses.
    const sized = <T extends { item: Int32Array; rater: Int32Array; itemCount: number; raterCount: number }>(
      c: T,
    ): T => ({
      ...c,
      itemCount: Math.max(...c.item) + 1,
      raterCount: Math.max(...c.rater) + 1,
    });
    let { snapshot } = calibrateWithSnapshot(sized(upTo(0)));
    for (let b = 1; b <= 3; b++) {
      const all = sized(upTo(b));
      const later = {
        ...subsetRatings(s.all, (k) => batchOf(k) === b),
        itemCount: all.itemCount,
        raterCount: all.raterCount,
      };
      const step = recalibrateSnapshot(snapshot, later, {}, { fullRefitEvery: 2 });
      const full = calibrateRatingColumns(all);
      expect(step.result.mode).toBe(b <= 2 ? 'incremental' : 'full');
      if (b === 3) expect(step.result.reason).toMatch(/scheduled: 2 incremental runs/);
      expect(step.result.items.reward.length).toBe(all.itemCount);
      expect(count(disputedRaters(step.result, full))).toBe(0);
      expect(maxRewardDifference(step.result, full)).toBeLessThan(0.01);
      snapshot = step.snapshot;
    }
  }, 120_000);

  it('leaves the snapshot it started from, and the results it gave, unchanged', () => {
    const s = scenario(10, 3_000, 300);
    const { snapshot } = calibrateWithSnapshot(s.before);
    const first = recalibrateSnapshot(snapshot, s.later).result;
    const rewards = first.items.reward.slice();
    const second = recalibrateSnapshot(snapshot, s.later).result;
    expect(second.items.reward).toEqual(rewards);
    expect(first.items.reward).toEqual(rewards);
  });

  it('runs a full refit without a previous run, on schedule, when too many raters are touched and when the options change', () => {
    const { all, before, later, touched } = scenario(6, 3_000, 300);
    const previousRun = calibrateRatingColumns(before);
    expect(recalibrateRatingColumns(all, null, touched).mode).toBe('full');
    const scheduled = recalibrateRatingColumns(
      all,
      previousOf(previousRun, 10),
      touched,
      {},
      { fullRefitEvery: 10 },
    );
    expect(scheduled.mode).toBe('full');
    expect(scheduled.reason).toMatch(/scheduled/);
    const everyone = { items: touched.items, raters: new Uint8Array(300).fill(1) };
    const crowded = recalibrateRatingColumns(all, previousOf(previousRun), everyone);
    expect(crowded.mode).toBe('full');
    expect(crowded.reason).toMatch(/raters have new ratings/);
    expect(crowded.raters.flagged).toEqual(calibrateRatingColumns(all).raters.flagged);
    const { snapshot } = calibrateWithSnapshot(before);
    const changed = recalibrateSnapshot(snapshot, later, { noisePriorStrength: 2 });
    expect(changed.result.mode).toBe('full');
    expect(changed.result.reason).toMatch(/options changed/);
    // The same fit (ratings within an item in another order: sums differ in the last bits).
    const fresh = calibrateRatingColumns(all, { noisePriorStrength: 2 });
    expect(maxRewardDifference(changed.result, fresh)).toBeLessThan(1e-9);
  });

  it('runs a full refit when the new ratings move the priors (drift)', () => {
    const { all, touched } = scenario(7, 3_000, 300);
    const previousRun = calibrateRatingColumns(all);
    // A previous run whose item spread was a quarter of what the ratings say: the priors drifted.
    const stale = previousOf(previousRun);
    stale.hyperparameters = { ...stale.hyperparameters, itemVar: stale.hyperparameters.itemVar / 4 };
    const result = recalibrateRatingColumns(all, stale, touched, {}, { maxTouchedRaterShare: 1 });
    expect(result.mode).toBe('full');
    expect(result.reason).toMatch(/drift/);
  });

  it('refuses touched masks and added ratings that do not match', () => {
    const { all, before, later, touched } = scenario(8, 300, 30);
    const previousRun = previousOf(calibrateRatingColumns(before));
    const short = { items: touched.items.subarray(1), raters: touched.raters };
    expect(() => recalibrateRatingColumns(all, previousRun, short)).toThrow(RangeError);
    const { snapshot } = calibrateWithSnapshot(before);
    expect(() => recalibrateSnapshot(snapshot, { ...later, itemCount: 299 })).toThrow(/cannot shrink/);
    const outOfRange = { ...later, rater: later.rater.map(() => 30) };
    expect(() => recalibrateSnapshot(snapshot, outOfRange)).toThrow(/rater index 30 out of range/);
    const nonFinite = { ...later, value: later.value.map(() => Number.NaN) };
    expect(() => recalibrateSnapshot(snapshot, nonFinite)).toThrow(/non-finite/);
  });
});
