import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../random.js';
import { calibrateRatingColumns } from './calibrate.js';
import {
  type CalibrationResult,
  calibrateRaters,
  type RaterRating,
  ratingsFromRewards,
} from './calibrate-raters.js';
import {
  chiSquareUpperTail,
  correlationUpperBound,
  normalCdf,
  normalQuantile,
  thumbsRewardInterval,
  wilsonInterval,
} from './distributions.js';
import {
  pearson,
  rmse,
  type SyntheticOptions,
  type SyntheticRatings,
  signAgreement,
  syntheticRatings,
} from './test-utils/synthetic.js';

/** The synthetic columns as the objects callers pass, with ids that say what they are. */
function asRatings(s: SyntheticRatings): RaterRating[] {
  const { item, rater, value, isThumbs } = s.columns;
  return Array.from(item, (i, k) => ({
    itemId: `item-${i}`,
    raterId: `rater-${rater[k]}`,
    value: value[k]!,
    kind: isThumbs[k] ? 'thumbs' : 'stars',
  }));
}

/** Results back in the synthetic truth's index order. */
function byIndex(result: CalibrationResult, s: SyntheticRatings) {
  const items = new Map(result.items.map((x) => [Number(x.itemId.slice(5)), x]));
  const raters = new Map(result.raters.map((x) => [Number(x.raterId.slice(6)), x]));
  const itemAt = (i: number) => items.get(i)!;
  const raterAt = (r: number) => raters.get(r)!;
  return {
    reward: Float64Array.from(s.quality, (_, i) => itemAt(i).reward),
    rawMean: Float64Array.from(s.quality, (_, i) => itemAt(i).rawMean),
    bias: Float64Array.from(s.bias, (_, r) => raterAt(r).bias),
    flagged: Uint8Array.from(s.bias, (_, r) => (raterAt(r).flagged ? 1 : 0)),
    raterAt,
    itemAt,
  };
}

function run(options: SyntheticOptions) {
  const s = syntheticRatings(options);
  const started = performance.now();
  const result = calibrateRaters(asRatings(s));
  const ms = performance.now() - started;
  return { s, result, ms, at: byIndex(result, s) };
}

describe('distributions', () => {
  it('matches scipy on normal and chi-square values', () => {
    // scipy.stats: norm.ppf(0.975), norm.ppf(0.001), norm.cdf(1.3), norm.cdf(-2.5), chi2.sf(60, 40)
    expect(normalQuantile(0.975)).toBeCloseTo(1.959963984540054, 7);
    expect(normalQuantile(0.001)).toBeCloseTo(-3.090232306167813, 7);
    expect(normalCdf(1.3)).toBeCloseTo(0.9031995154143897, 6);
    expect(normalCdf(-2.5)).toBeCloseTo(0.006209665325776132, 7);
    expect(chiSquareUpperTail(60, 40)).toBeCloseTo(0.02187346844139091, 3);
    expect(correlationUpperBound(-0.5, 40, 0.01)).toBeLessThan(0);
    expect(correlationUpperBound(-0.1, 40, 0.01)).toBeGreaterThan(0);
  });

  it('gives Wilson score intervals like the textbook formula', () => {
    const w = wilsonInterval(8, 10);
    expect(w.lower).toBeCloseTo(0.4901624715366418, 7);
    expect(w.upper).toBeCloseTo(0.9433178485456248, 7);
    const none = wilsonInterval(0, 5);
    expect(none.lower).toBe(0);
    expect(none.upper).toBeCloseTo(0.43448246478317476, 7);
    expect(wilsonInterval(3, 3, 0.9).lower).toBeCloseTo(0.5258044258424872, 7);
    expect(wilsonInterval(0, 0)).toEqual({ lower: 0, upper: 1, center: 0.5 });
    const reward = thumbsRewardInterval(8, 10);
    expect(reward.lower).toBeCloseTo(2 * 0.4901624715366418 - 1, 7);
  });
});

describe('calibrateRaters on synthetic raters with known biases', () => {
  it('recovers rater biases and beats the raw mean on item quality', () => {
    const { s, result, ms, at } = run({
      seed: 1,
      items: 3000,
      raters: 200,
      ratingsPerItem: 5,
      output: 'stars',
    });
    const biasCorrelation = pearson(at.bias, s.bias);
    const calibratedRmse = rmse(at.reward, s.quality);
    const rawRmse = rmse(at.rawMean, s.quality);
    console.log(
      `known biases (15k stars ratings): bias r = ${biasCorrelation.toFixed(4)}, item RMSE calibrated ` +
        `${calibratedRmse.toFixed(4)} vs raw mean ${rawRmse.toFixed(4)}, ${result.iterations} iterations, ${ms.toFixed(0)} ms`,
    );
    expect(result.converged).toBe(true);
    expect(biasCorrelation).toBeGreaterThan(0.9);
    expect(calibratedRmse).toBeLessThan(0.85 * rawRmse);
    expect(result.raters.filter((r) => r.flagged)).toHaveLength(0);
  });

  it('covers the true quality with its 95% intervals about 95% of the time where ratings are not clipped', () => {
    const { s, at } = run({ seed: 2, items: 2000, raters: 100, ratingsPerItem: 4, output: 'continuous' });
    // Ratings are clamped to [-1, 1]. For items of extreme quality most ratings sit on the bound,
    // which the Gaussian model reads as milder than the truth: there the intervals are too narrow
    // (measured: ~60% coverage for |quality| > 0.75, 13% of the items at this spread). The claim is
    // made, and checked, for the rest.
    let covered = 0;
    let inside = 0;
    let coveredAll = 0;
    for (let i = 0; i < s.quality.length; i++) {
      const item = at.itemAt(i);
      const q = s.quality[i]!;
      const hit = item.lower <= q && q <= item.upper;
      if (hit) coveredAll++;
      if (Math.abs(q) < 0.75) {
        inside++;
        if (hit) covered++;
      }
    }
    const coverage = covered / inside;
    console.log(
      `interval coverage: ${coverage.toFixed(3)} on ${inside} items with |quality| < 0.75, ` +
        `${(coveredAll / s.quality.length).toFixed(3)} on all`,
    );
    expect(coverage).toBeGreaterThan(0.92);
    expect(coverage).toBeLessThan(0.98);
  });
});

describe('calibrateRaters with 20% adversarial raters', () => {
  it('flags >= 90% of them with <= 5% false flags; calibrated labels beat raw labels', () => {
    const { s, result, ms, at } = run({
      seed: 5,
      items: 3000,
      raters: 200,
      ratingsPerItem: 3,
      adversarialShare: 0.2,
      output: 'stars',
    });
    let adversaries = 0;
    let caught = 0;
    let honest = 0;
    let falseFlags = 0;
    for (let r = 0; r < s.adversarial.length; r++) {
      if (s.adversarial[r]) {
        adversaries++;
        caught += at.flagged[r]!;
      } else {
        honest++;
        falseFlags += at.flagged[r]!;
      }
    }
    const recall = caught / adversaries;
    const falseFlagRate = falseFlags / honest;
    const calibratedAccuracy = signAgreement(at.reward, s.quality);
    const rawAccuracy = signAgreement(at.rawMean, s.quality);
    console.log(
      `adversaries: caught ${caught}/${adversaries} (${(100 * recall).toFixed(1)}%), false flags ` +
        `${falseFlags}/${honest} (${(100 * falseFlagRate).toFixed(1)}%); good/bad label accuracy calibrated ` +
        `${calibratedAccuracy.toFixed(4)} vs raw mean ${rawAccuracy.toFixed(4)}; RMSE ${rmse(at.reward, s.quality).toFixed(4)} ` +
        `vs ${rmse(at.rawMean, s.quality).toFixed(4)}; ${ms.toFixed(0)} ms`,
    );
    expect(adversaries).toBeGreaterThan(30);
    expect(recall).toBeGreaterThanOrEqual(0.9);
    expect(falseFlagRate).toBeLessThanOrEqual(0.05);
    expect(calibratedAccuracy - rawAccuracy).toBeGreaterThan(0.1);
    const flagged = result.raters.find((r) => r.flagged)!;
    expect(flagged.reason).toMatch(/disagrees with the leave-one-out consensus/);
    expect(flagged.weight).toBe(0);
    // Excluded raters are described on their own data: an inverted rater has a negative scale.
    const adversary = at.raterAt(s.adversarial.indexOf(1));
    if (adversary.flagged) expect(adversary.scale).toBeLessThan(0);
    expect(adversary.reliability).toBeLessThan(0.2);
  });

  it('does the same for thumbs, and flags constant raters', () => {
    const { s, at, result } = run({
      seed: 6,
      items: 3000,
      raters: 200,
      ratingsPerItem: 5,
      adversarialShare: 0.2,
      constantShare: 0.05,
      output: 'thumbs',
    });
    let adversaries = 0;
    let caught = 0;
    let constants = 0;
    let constantsCaught = 0;
    for (let r = 0; r < s.adversarial.length; r++) {
      if (s.adversarial[r]) {
        adversaries++;
        caught += at.flagged[r]!;
      }
      if (s.constant[r]) {
        constants++;
        constantsCaught += at.flagged[r]!;
        expect(at.raterAt(r).reason).toMatch(/^constant rater/);
      }
    }
    const calibratedAccuracy = signAgreement(at.reward, s.quality);
    const rawAccuracy = signAgreement(at.rawMean, s.quality);
    console.log(
      `thumbs: adversaries caught ${caught}/${adversaries}, constant raters caught ${constantsCaught}/${constants}, ` +
        `label accuracy calibrated ${calibratedAccuracy.toFixed(4)} vs raw ${rawAccuracy.toFixed(4)}`,
    );
    expect(caught / adversaries).toBeGreaterThanOrEqual(0.9);
    expect(constantsCaught).toBe(constants);
    expect(calibratedAccuracy - rawAccuracy).toBeGreaterThan(0.1);
    // Every item here is thumbs-only: each gets a Wilson interval on the reward scale.
    const item = result.items[0]!;
    expect(item.wilson).not.toBeNull();
    expect(item.wilson!.lower).toBeGreaterThanOrEqual(-1);
    expect(item.wilson!.upper).toBeLessThanOrEqual(1);
  });

  it('flags a rater whose noise is far beyond the others', () => {
    const s = syntheticRatings({
      seed: 13,
      items: 1500,
      raters: 50,
      ratingsPerItem: 3,
      output: 'continuous',
    });
    const rng = new SeededRandom(14);
    const ratings = asRatings(s).map((r) =>
      r.raterId === 'rater-7' ? { ...r, value: rng.uniform() < 0.5 ? -1 : 1 } : r,
    );
    const result = calibrateRaters(ratings);
    const noisy = result.raters.find((r) => r.raterId === 'rater-7')!;
    expect(noisy.flagged).toBe(true);
    expect(noisy.reason).toMatch(/^noise far beyond the others/);
    expect(result.raters.filter((r) => r.flagged)).toHaveLength(1);
  });

  it('down-weights instead of excluding when configured', () => {
    const s = syntheticRatings({
      seed: 9,
      items: 1500,
      raters: 60,
      ratingsPerItem: 3,
      adversarialShare: 0.2,
    });
    const result = calibrateRaters(asRatings(s), {
      flagging: { action: 'downweight', downweightFactor: 0.25 },
    });
    const flagged = result.raters.filter((r) => r.flagged);
    expect(flagged.length).toBeGreaterThan(0);
    for (const r of flagged) expect(r.weight).toBe(0.25);
    const off = calibrateRaters(asRatings(s), { flagging: { enabled: false } });
    expect(off.raters.some((r) => r.flagged)).toBe(false);
  });
});

describe('calibrateRaters on small hand-made cases', () => {
  it('shrinks items and raters with few ratings toward the population', () => {
    const rng = new SeededRandom(3);
    const ratings: RaterRating[] = [];
    for (let i = 0; i < 200; i++) {
      const quality = rng.normal(0, 0.5);
      for (let r = 0; r < 5; r++) {
        ratings.push({ itemId: `i${i}`, raterId: `r${r}`, value: quality + rng.normal(0, 0.2) });
      }
    }
    // A newcomer who rated twice, both times far above the others.
    ratings.push(
      { itemId: 'i0', raterId: 'newcomer', value: 1 },
      { itemId: 'i1', raterId: 'newcomer', value: 1 },
    );
    // An item rated once, very high.
    ratings.push({ itemId: 'lonely', raterId: 'r0', value: 1 });
    const result = calibrateRaters(ratings);
    const newcomer = result.raters.find((r) => r.raterId === 'newcomer')!;
    const lonely = result.items.find((x) => x.itemId === 'lonely')!;
    expect(newcomer.n).toBe(2);
    expect(Math.abs(newcomer.bias)).toBeLessThan(0.5);
    expect(newcomer.flagged).toBe(false);
    expect(lonely.reward).toBeLessThan(1);
    expect(lonely.reward).toBeGreaterThan(0);
    const wellRated = result.items.find((x) => x.itemId === 'i5')!;
    expect(lonely.sd).toBeGreaterThan(wellRated.sd);
    expect(lonely.lower).toBeCloseTo(lonely.reward - 1.959963984540054 * lonely.sd, 6);
  });

  it('gives Wilson intervals only to thumbs-only items, and handles empty input', () => {
    const result = calibrateRaters([
      { itemId: 'a', raterId: 'x', value: 1, kind: 'thumbs' },
      { itemId: 'a', raterId: 'y', value: 1, kind: 'thumbs' },
      { itemId: 'a', raterId: 'z', value: -1, kind: 'thumbs' },
      { itemId: 'b', raterId: 'x', value: 1, kind: 'thumbs' },
      { itemId: 'b', raterId: 'y', value: 0.5, kind: 'stars' },
    ]);
    const a = result.items.find((x) => x.itemId === 'a')!;
    expect(a.wilson!.lower).toBeCloseTo(2 * wilsonInterval(2, 3).lower - 1, 12);
    expect(result.items.find((x) => x.itemId === 'b')!.wilson).toBeNull();
    const empty = calibrateRaters([]);
    expect(empty.items).toEqual([]);
    expect(empty.raters).toEqual([]);
  });

  it('builds ratings from normalized rewards and validates options and values', () => {
    const ratings = ratingsFromRewards([
      { feedbackId: 'f', interactionId: 'i', raterId: 'r', kind: 'implicit', reward: 0.5, weight: 0.5 },
    ]);
    expect(ratings).toEqual([{ itemId: 'i', raterId: 'r', value: 0.5, kind: 'implicit', weight: 0.5 }]);
    expect(calibrateRaters(ratings).items[0]!.n).toBe(1);
    expect(() => calibrateRaters(ratings, { flagging: { significance: 2 } })).toThrow();
    expect(() => calibrateRaters([{ itemId: 'i', raterId: 'r', value: Number.NaN }])).toThrow(/non-finite/);
  });

  it('treats a rating of weight 2 exactly like the same rating given twice', () => {
    const s = syntheticRatings({ seed: 12, items: 400, raters: 30, ratingsPerItem: 3 });
    const { item, rater, value } = s.columns;
    const doubled = (k: number) => k % 2 === 0;
    const weight = Float64Array.from(item, (_, k) => (doubled(k) ? 2 : 1));
    const repeat = (column: ArrayLike<number>) =>
      Array.from(column).flatMap((x, k) => (doubled(k) ? [x, x] : [x]));
    const options = { flagging: { enabled: false } };
    const weighted = calibrateRatingColumns({ ...s.columns, weight }, options);
    const repeated = calibrateRatingColumns(
      {
        item: Int32Array.from(repeat(item)),
        rater: Int32Array.from(repeat(rater)),
        value: Float64Array.from(repeat(value)),
        itemCount: s.columns.itemCount,
        raterCount: s.columns.raterCount,
      },
      options,
    );
    for (let i = 0; i < 400; i++) expect(weighted.items.reward[i]).toBeCloseTo(repeated.items.reward[i]!, 9);
    for (let r = 0; r < 30; r++) expect(weighted.raters.bias[r]).toBeCloseTo(repeated.raters.bias[r]!, 9);
  });

  it('rejects columns that do not fit together', () => {
    const columns = { item: Int32Array.of(0, 1), rater: Int32Array.of(0, 0), value: Float64Array.of(1, -1) };
    expect(() => calibrateRatingColumns({ ...columns, itemCount: 1, raterCount: 1 })).toThrow(/item index 1/);
    expect(() =>
      calibrateRatingColumns({ ...columns, rater: Int32Array.of(0), itemCount: 2, raterCount: 1 }),
    ).toThrow(/same length/);
  });
});

describe('calibrateRaters when almost every item is rated once', () => {
  it('keeps the sign of each rating instead of shrinking every item onto the mean', () => {
    // Sparse real traffic: 300 answers, one thumb each from 40 raters; 20% of answers are good.
    const rng = new SeededRandom(4);
    const ratings = Array.from({ length: 300 }, (_, i) => ({
      itemId: `i${i}`,
      raterId: `r${rng.int(40)}`,
      value: i % 5 === 0 ? 1 : -1,
      kind: 'thumbs',
    }));
    const result = calibrateRaters(ratings);
    const reward = new Map(result.items.map((it) => [it.itemId, it.reward]));
    const mean = (pred: (i: number) => boolean) => {
      const xs = ratings
        .map((_, i) => i)
        .filter(pred)
        .map((i) => reward.get(`i${i}`)!);
      return xs.reduce((a, b) => a + b, 0) / xs.length;
    };
    const up = mean((i) => i % 5 === 0);
    const down = mean((i) => i % 5 !== 0);
    console.log(`single ratings: mean reward of up items ${up.toFixed(3)}, of down items ${down.toFixed(3)}`);
    expect(up - down).toBeGreaterThan(0.5);
    // Not above 0: at the fit's fixed point one thumb from a rater of ~7 ratings lifts an item
    // from the prior mean (-0.65, 80% of the thumbs are down) to about 0 (-0.03; a fit that stopped
    // early along the slow scale-prior direction happened to leave it at +0.10). Collapsed onto the
    // mean it would stay near -0.65.
    expect(up).toBeGreaterThan(result.hyperparameters.itemMean + 0.5);
  });
});
