import { describe, expect, it } from 'vitest';
import { type CalibrationColumns, calibrateRatingColumns } from './calibrate.js';
import { type PreviousCalibration, recalibrateRatingColumns } from './recalibrate.js';
import { syntheticRatings } from './test-utils/synthetic.js';

/** The ratings at `keep` positions, with the same item and rater indices. */
function subset<T extends { item: Int32Array; rater: Int32Array; value: Float64Array; isThumbs: Uint8Array }>(
  columns: T & { itemCount: number; raterCount: number },
  keep: (k: number) => boolean,
) {
  const positions: number[] = [];
  for (let k = 0; k < columns.item.length; k++) if (keep(k)) positions.push(k);
  return {
    item: Int32Array.from(positions, (k) => columns.item[k]!),
    rater: Int32Array.from(positions, (k) => columns.rater[k]!),
    value: Float64Array.from(positions, (k) => columns.value[k]!),
    isThumbs: Uint8Array.from(positions, (k) => columns.isThumbs[k]!),
    itemCount: columns.itemCount,
    raterCount: columns.raterCount,
  };
}

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
  const s = syntheticRatings({
    seed,
    items,
    raters,
    ratingsPerItem: 3,
    adversarialShare,
    constantShare: adversarialShare / 5,
    output: 'stars',
  });
  // A fixed pseudo-random 1% of positions, from a multiplicative hash of the position.
  const isNew = (k: number) => ((k * 2654435761) >>> 0) % 100 === 0;
  const before = subset(s.columns, (k) => !isNew(k));
  const touched = { items: new Uint8Array(items), raters: new Uint8Array(raters) };
  for (let k = 0; k < s.columns.item.length; k++) {
    if (!isNew(k)) continue;
    touched.items[s.columns.item[k]!] = 1;
    touched.raters[s.columns.rater[k]!] = 1;
  }
  return { all: s.columns, before, touched };
}

/** Raters flagged by one result and not the other. */
function disputedRaters(a: CalibrationColumns, b: CalibrationColumns): Uint8Array {
  return Uint8Array.from(a.raters.flagged, (f, r) => (f !== b.raters.flagged[r] ? 1 : 0));
}

/** The largest reward difference, over all items and over items no disputed rater rated. */
function rewardDifferences(
  a: CalibrationColumns,
  b: CalibrationColumns,
  columns: { item: Int32Array; rater: Int32Array; itemCount: number },
  disputed: Uint8Array,
): { all: number; undisputed: number; disputedItems: number } {
  const touchedByDispute = new Uint8Array(columns.itemCount);
  for (let k = 0; k < columns.item.length; k++)
    if (disputed[columns.rater[k]!]) touchedByDispute[columns.item[k]!] = 1;
  let all = 0;
  let undisputed = 0;
  let disputedItems = 0;
  for (let i = 0; i < columns.itemCount; i++) {
    const d = Math.abs(a.items.reward[i]! - b.items.reward[i]!);
    all = Math.max(all, d);
    if (touchedByDispute[i]) disputedItems++;
    else undisputed = Math.max(undisputed, d);
  }
  return { all, undisputed, disputedItems };
}

function count(mask: Uint8Array): number {
  return mask.reduce((n, x) => n + x, 0);
}

const cpuMs = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
};

function compare(seed: number, adversarialShare: number) {
  const { all, before, touched } = scenario(seed, 60_000, 12_000, adversarialShare);
  const previousRun = calibrateRatingColumns(before);
  let since = process.cpuUsage();
  const fullRefit = calibrateRatingColumns(all);
  const fullCpu = cpuMs(since);
  // Timed warm, like the full refit (whose code the previous run warmed up): a first call runs unoptimized.
  recalibrateRatingColumns(all, previousOf(previousRun), touched);
  since = process.cpuUsage();
  const incremental = recalibrateRatingColumns(all, previousOf(previousRun), touched);
  const incrementalCpu = cpuMs(since);
  const disputed = disputedRaters(incremental, fullRefit);
  const differences = rewardDifferences(incremental, fullRefit, all, disputed);
  let over = 0;
  for (let i = 0; i < all.itemCount; i++) {
    if (Math.abs(incremental.items.reward[i]! - fullRefit.items.reward[i]!) > 0.01) over++;
  }
  // The full refit's own instability: verdicts it changed on raters whose ratings did not change.
  const untouchedFlips = disputedRaters(previousRun, fullRefit).filter(
    (d, r) => d === 1 && !touched.raters[r],
  ).length;
  console.log(
    `${adversarialShare * 100}% adversarial, ${all.item.length} ratings, 1% new: ${incremental.touchedItems} items / ` +
      `${incremental.touchedRaters} raters touched; CPU full ${fullCpu.toFixed(0)} ms, incremental ` +
      `${incrementalCpu.toFixed(0)} ms (x${(fullCpu / incrementalCpu).toFixed(1)}); ${count(disputed)} verdicts differ ` +
      `of ${count(fullRefit.raters.flagged)} flagged (the full refit itself changed ${untouchedFlips} on raters with ` +
      `unchanged ratings); max reward difference ${differences.all.toFixed(4)}, ${over} items over 0.01, ` +
      `${differences.undisputed.toFixed(4)} on the ${all.itemCount - differences.disputedItems} items no disputed rater ` +
      `rated; drift ${incremental.drift.toFixed(4)}, ${incremental.rounds} rounds, ${incremental.iterations} sweeps and passes`,
  );
  return { incremental, fullRefit, disputed, differences, over, untouchedFlips, itemCount: all.itemCount };
}

describe('incremental recalibration', () => {
  it('after 1% new ratings flags the same raters and gives every reward within 0.01 of a full refit', () => {
    const c = compare(5, 0);
    expect(c.incremental.mode).toBe('incremental');
    expect(count(c.disputed)).toBe(0);
    expect(c.differences.all).toBeLessThan(0.01);
  }, 60_000);

  it('with 10% adversaries, differs from a full refit only on verdicts at the threshold, where the full refit itself is unstable', () => {
    const c = compare(5, 0.1);
    expect(c.incremental.mode).toBe('incremental');
    expect(count(c.disputed)).toBeLessThanOrEqual(Math.max(5, 2 * c.untouchedFlips));
    // Rewards move only around the disputed raters (their items and those items' other raters).
    expect(c.over).toBeLessThan(0.01 * c.itemCount);
  }, 60_000);

  it('runs a full refit without a previous run, on schedule, and when too many raters are touched', () => {
    const { all, before, touched } = scenario(6, 3_000, 300);
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

  it('refuses touched masks that do not match the ratings', () => {
    const { all, before, touched } = scenario(8, 300, 30);
    const previousRun = previousOf(calibrateRatingColumns(before));
    const short = { items: touched.items.subarray(1), raters: touched.raters };
    expect(() => recalibrateRatingColumns(all, previousRun, short)).toThrow(RangeError);
  });
});
