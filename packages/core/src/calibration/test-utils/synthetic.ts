import { SeededRandom } from '../../random.js';
import type { RatingColumns } from '../model.js';

export interface SyntheticOptions {
  seed: number;
  items: number;
  raters: number;
  ratingsPerItem: number;
  qualitySd?: number;
  biasSd?: number;
  /** Sd of log(scale). */
  logScaleSd?: number;
  noiseSdMin?: number;
  noiseSdMax?: number;
  /** Share of raters who rate the opposite of the truth. */
  adversarialShare?: number;
  /** Share of raters who always give the same rating. */
  constantShare?: number;
  /** continuous: clamped to [-1, 1]; stars: rounded onto 1..5 and normalized; thumbs: the sign. */
  output?: 'continuous' | 'stars' | 'thumbs';
}

export interface SyntheticRatings {
  columns: RatingColumns & { isThumbs: Uint8Array };
  quality: Float64Array;
  bias: Float64Array;
  scale: Float64Array;
  noiseSd: Float64Array;
  adversarial: Uint8Array;
  constant: Uint8Array;
}

function discretize(y: number, output: SyntheticOptions['output']): number {
  const clamped = Math.max(-1, Math.min(1, y));
  if (output === 'stars') return (Math.round(2 * clamped + 3) - 3) / 2; // 1..5 stars -> [-1, 1]
  if (output === 'thumbs') return y >= 0 ? 1 : -1;
  return clamped;
}

/**
 * Ratings from known truth: rating = bias + scale * quality + noise for honest raters, the negated
 * quality for adversarial ones, a fixed value for constant ones. Each item gets `ratingsPerItem`
 * distinct raters drawn uniformly.
 */
export function syntheticRatings(o: SyntheticOptions): SyntheticRatings {
  const rng = new SeededRandom(o.seed);
  const output = o.output ?? 'continuous';
  const quality = Float64Array.from({ length: o.items }, () => rng.normal(0, o.qualitySd ?? 0.5));
  const bias = Float64Array.from({ length: o.raters }, () => rng.normal(0, o.biasSd ?? 0.3));
  const scale = Float64Array.from({ length: o.raters }, () => Math.exp(rng.normal(0, o.logScaleSd ?? 0.2)));
  const lo = o.noiseSdMin ?? 0.1;
  const hi = o.noiseSdMax ?? 0.4;
  const noiseSd = Float64Array.from({ length: o.raters }, () => lo + (hi - lo) * rng.uniform());
  const adversarial = new Uint8Array(o.raters);
  const constant = new Uint8Array(o.raters);
  for (let r = 0; r < o.raters; r++) {
    const u = rng.uniform();
    if (u < (o.adversarialShare ?? 0)) adversarial[r] = 1;
    else if (u < (o.adversarialShare ?? 0) + (o.constantShare ?? 0)) constant[r] = 1;
  }
  const n = o.items * o.ratingsPerItem;
  const item = new Int32Array(n);
  const rater = new Int32Array(n);
  const value = new Float64Array(n);
  let k = 0;
  for (let i = 0; i < o.items; i++) {
    for (const r of rng.sampleDistinct(o.raters, o.ratingsPerItem)) {
      const q = quality[i]!;
      let y: number;
      if (adversarial[r]) y = -q + rng.normal(0, noiseSd[r]!);
      else if (constant[r]) y = 1;
      else y = bias[r]! + scale[r]! * q + rng.normal(0, noiseSd[r]!);
      item[k] = i;
      rater[k] = r;
      value[k] = discretize(y, output);
      k++;
    }
  }
  const isThumbs = new Uint8Array(n).fill(output === 'thumbs' ? 1 : 0);
  return {
    columns: { item, rater, value, isThumbs, itemCount: o.items, raterCount: o.raters },
    quality,
    bias,
    scale,
    noiseSd,
    adversarial,
    constant,
  };
}

export function pearson(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  include?: (i: number) => boolean,
): number {
  let n = 0;
  let sa = 0;
  let sb = 0;
  let saa = 0;
  let sbb = 0;
  let sab = 0;
  for (let i = 0; i < a.length; i++) {
    if (include && !include(i)) continue;
    const x = a[i]!;
    const y = b[i]!;
    n++;
    sa += x;
    sb += y;
    saa += x * x;
    sbb += y * y;
    sab += x * y;
  }
  const cov = sab / n - (sa / n) * (sb / n);
  return cov / Math.sqrt((saa / n - (sa / n) ** 2) * (sbb / n - (sb / n) ** 2));
}

export function rmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s / a.length);
}

/** Share of items whose estimate has the same sign as the truth (good/bad label accuracy). */
export function signAgreement(estimate: ArrayLike<number>, truth: ArrayLike<number>): number {
  let same = 0;
  for (let i = 0; i < truth.length; i++) if (estimate[i]! >= 0 === truth[i]! >= 0) same++;
  return same / truth.length;
}

type Columns = RatingColumns & { isThumbs: Uint8Array };

/** The ratings at the positions `keep` accepts, with the same item and rater indices. */
export function subsetRatings(columns: Columns, keep: (k: number) => boolean): Columns {
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

/**
 * Synthetic ratings of which a fixed pseudo-random 1% of positions (a multiplicative hash of the
 * position, so on random items: the hard case, spread out) arrive after the previous run: all of
 * them, the ones before, the later ones, and the items and raters the later ones touch.
 */
export function laterRatingsScenario(o: SyntheticOptions) {
  const synthetic = syntheticRatings(o);
  const all = synthetic.columns;
  const isLater = (k: number) => ((k * 2654435761) >>> 0) % 100 === 0;
  const touched = { items: new Uint8Array(all.itemCount), raters: new Uint8Array(all.raterCount) };
  for (let k = 0; k < all.item.length; k++) {
    if (!isLater(k)) continue;
    touched.items[all.item[k]!] = 1;
    touched.raters[all.rater[k]!] = 1;
  }
  return {
    synthetic,
    all,
    before: subsetRatings(all, (k) => !isLater(k)),
    later: subsetRatings(all, isLater),
    touched,
  };
}
