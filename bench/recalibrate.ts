import {
  type CalibrationColumns,
  calibrateRatingColumns,
  type NewRatings,
  type PreviousCalibration,
  recalibrateRatingColumns,
  SeededRandom,
} from '@ratchet/core';
import { type Bench, loadNote } from './lib/bench.js';
import { round } from './lib/results.js';

interface Ratings {
  item: Int32Array;
  rater: Int32Array;
  value: Float64Array;
  itemCount: number;
  raterCount: number;
}

/**
 * Synthetic 1-5 star ratings (normalized to [-1, 1]): item quality ~ N(0, 0.5), raters with a
 * bias, a scale and noise, `adversarialShare` of them rating the opposite of the truth; three
 * distinct raters per item.
 */
function synthetic(items: number, raters: number, adversarialShare: number, seed: number): Ratings {
  const rng = new SeededRandom(seed);
  const bias = Float64Array.from({ length: raters }, () => rng.normal(0, 0.3));
  const scale = Float64Array.from({ length: raters }, () => Math.exp(rng.normal(0, 0.2)));
  const noise = Float64Array.from({ length: raters }, () => 0.1 + 0.3 * rng.uniform());
  const adversarial = Uint8Array.from({ length: raters }, () => (rng.uniform() < adversarialShare ? 1 : 0));
  const n = items * 3;
  const out: Ratings = {
    item: new Int32Array(n),
    rater: new Int32Array(n),
    value: new Float64Array(n),
    itemCount: items,
    raterCount: raters,
  };
  let k = 0;
  for (let i = 0; i < items; i++) {
    const q = rng.normal(0, 0.5);
    for (const r of rng.sampleDistinct(raters, 3)) {
      const y = adversarial[r]
        ? -q + rng.normal(0, noise[r]!)
        : bias[r]! + scale[r]! * q + rng.normal(0, noise[r]!);
      out.item[k] = i;
      out.rater[k] = r;
      out.value[k] = (Math.round(2 * Math.max(-1, Math.min(1, y)) + 3) - 3) / 2;
      k++;
    }
  }
  return out;
}

/** A fixed pseudo-random 1% of rating positions: the ratings that arrive after the previous run. */
const isNew = (k: number) => ((k * 2654435761) >>> 0) % 100 === 0;

function without(all: Ratings, drop: (k: number) => boolean): Ratings {
  const keep: number[] = [];
  for (let k = 0; k < all.item.length; k++) if (!drop(k)) keep.push(k);
  return {
    item: Int32Array.from(keep, (k) => all.item[k]!),
    rater: Int32Array.from(keep, (k) => all.rater[k]!),
    value: Float64Array.from(keep, (k) => all.value[k]!),
    itemCount: all.itemCount,
    raterCount: all.raterCount,
  };
}

function previousOf(result: CalibrationColumns): PreviousCalibration {
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
    incrementalRuns: 0,
  };
}

function cpuSeconds<T>(f: () => T): { value: T; cpu: number; wall: number } {
  const since = process.cpuUsage();
  const started = performance.now();
  const value = f();
  const used = process.cpuUsage(since);
  return { value, cpu: (used.user + used.system) / 1e6, wall: (performance.now() - started) / 1000 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Full refit and incremental run on the same ratings, alternated `repeats` times; medians of CPU time. */
function measure(items: number, raters: number, adversarialShare: number, repeats: number) {
  const all = synthetic(items, raters, adversarialShare, 17);
  const newRatings: NewRatings = { items: new Uint8Array(items), raters: new Uint8Array(raters) };
  for (let k = 0; k < all.item.length; k++) {
    if (!isNew(k)) continue;
    newRatings.items[all.item[k]!] = 1;
    newRatings.raters[all.rater[k]!] = 1;
  }
  const previous = previousOf(calibrateRatingColumns(without(all, isNew)));
  // Warm both code paths up: the first call of a function runs unoptimized.
  recalibrateRatingColumns(all, previous, newRatings);
  const full: number[] = [];
  const incremental: number[] = [];
  let fullResult: CalibrationColumns | undefined;
  let incrementalResult: ReturnType<typeof recalibrateRatingColumns> | undefined;
  for (let run = 0; run < repeats; run++) {
    const f = cpuSeconds(() => calibrateRatingColumns(all));
    const i = cpuSeconds(() => recalibrateRatingColumns(all, previous, newRatings));
    full.push(f.cpu);
    incremental.push(i.cpu);
    fullResult = f.value;
    incrementalResult = i.value;
  }
  const a = incrementalResult!;
  const b = fullResult!;
  let maxDifference = 0;
  let over = 0;
  for (let i = 0; i < items; i++) {
    const d = Math.abs(a.items.reward[i]! - b.items.reward[i]!);
    maxDifference = Math.max(maxDifference, d);
    if (d > 0.01) over++;
  }
  let disputed = 0;
  let flagged = 0;
  for (let r = 0; r < raters; r++) {
    if (a.raters.flagged[r] !== b.raters.flagged[r]) disputed++;
    flagged += b.raters.flagged[r]!;
  }
  return {
    ratings: all.item.length,
    fullCpu: median(full),
    incrementalCpu: median(incremental),
    maxDifference,
    over,
    disputed,
    flagged,
    mode: a.mode,
    touchedRaters: a.touchedRaters,
  };
}

export const recalibrateBench: Bench = {
  name: 'recalibrate',
  summary: 'incremental recalibration after 1% new ratings vs a full refit (300k ratings, in process)',
  keyMetrics: [
    'recalibrate_speedup_1pct',
    'recalibrate_max_reward_diff',
    'recalibrate_flag_differences_count',
    'recalibrate_adversarial_speedup_ratio',
    'recalibrate_adversarial_flag_differences_count',
  ],
  async run(ctx) {
    const items = ctx.tiny ? 3_000 : 100_000;
    const raters = ctx.tiny ? 300 : 20_000;
    const repeats = ctx.tiny ? 1 : 3;
    const loadBefore = loadNote();
    const clean = measure(items, raters, 0, repeats);
    ctx.log(`honest raters: ${JSON.stringify(clean)}`);
    const adversarial = measure(items, raters, 0.1, repeats);
    ctx.log(`10% adversarial: ${JSON.stringify(adversarial)}`);
    return {
      metrics: {
        recalibrate_speedup_1pct: round(clean.fullCpu / clean.incrementalCpu, 2),
        recalibrate_full_cpu_s: round(clean.fullCpu, 3),
        recalibrate_incremental_cpu_s: round(clean.incrementalCpu, 3),
        recalibrate_max_reward_diff: round(clean.maxDifference, 4),
        recalibrate_flag_differences_count: clean.disputed,
        recalibrate_adversarial_speedup_ratio: round(adversarial.fullCpu / adversarial.incrementalCpu, 2),
        recalibrate_adversarial_max_reward_diff: round(adversarial.maxDifference, 4),
        recalibrate_adversarial_items_over_001_count: adversarial.over,
        recalibrate_adversarial_flag_differences_count: adversarial.disputed,
        recalibrate_adversarial_flagged_count: adversarial.flagged,
        ratings_count: clean.ratings,
      },
      notes:
        `${clean.ratings} synthetic 1-5 star ratings (${items} items x 3, ${raters} raters), 1% of them new on random ` +
        `items; core only, in process (no store); CPU time of one process, median of ${repeats} alternated runs of the ` +
        `full refit and the incremental run (${clean.mode}, ${clean.touchedRaters} raters refitted), both warmed up. ` +
        `Second set of metrics with 10% adversarial raters (${adversarial.mode}): verdicts that differ are at the ` +
        `flagging threshold. The issue's 10M-rating figure is not measured. ${loadBefore} at the start, ${loadNote()} at the end.`,
    };
  },
};
