import { RatchetError } from '../errors.js';
import { domainIndex, isMissing, type RatingValue, sortedDistinct } from './values.js';

export interface CohenKappaOptions {
  /** null: unweighted; linear |i - j| or quadratic (i - j)^2 on the category indices. */
  weights?: 'linear' | 'quadratic' | null;
  /** Categories to count, in order; pairs with a value outside are ignored. Default: all seen. */
  labels?: readonly (number | string)[];
  sampleWeight?: readonly number[];
}

/**
 * Cohen's kappa between two raters' labels of the same items, unweighted or with linear or
 * quadratic weights on the category indices; equal to scikit-learn's `cohen_kappa_score`.
 * Items that either rater left missing (null, undefined, NaN) are dropped first. NaN when kappa
 * is undefined (no pair counted, or a single category in common).
 */
export function cohenKappa(
  a: readonly RatingValue[],
  b: readonly RatingValue[],
  options: CohenKappaOptions = {},
): number {
  if (a.length !== b.length) throw new RatchetError('invalid_request', 'both raters need the same items');
  if (options.sampleWeight && options.sampleWeight.length !== a.length) {
    throw new RatchetError('invalid_request', 'sampleWeight needs one weight per item');
  }
  const pairs: [number | string, number | string, number][] = [];
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (isMissing(x) || isMissing(y)) continue;
    pairs.push([x, y, options.sampleWeight?.[i] ?? 1]);
  }
  const labels = options.labels
    ? [...options.labels]
    : sortedDistinct([...pairs.map(([x]) => x), ...pairs.map(([, y]) => y)]);
  const K = labels.length;
  const position = new Map(labels.map((label, i) => [label, i]));
  const confusion = new Float64Array(K * K);
  for (const [x, y, w] of pairs) {
    const i = position.get(x);
    const j = position.get(y);
    if (i !== undefined && j !== undefined) confusion[i * K + j]! += w;
  }
  const rowSums = new Float64Array(K);
  const columnSums = new Float64Array(K);
  let total = 0;
  for (let i = 0; i < K; i++) {
    for (let j = 0; j < K; j++) {
      rowSums[i]! += confusion[i * K + j]!;
      columnSums[j]! += confusion[i * K + j]!;
      total += confusion[i * K + j]!;
    }
  }
  if (total === 0) return Number.NaN;
  const weight = (i: number, j: number) =>
    options.weights === 'linear'
      ? Math.abs(i - j)
      : options.weights === 'quadratic'
        ? (i - j) ** 2
        : i === j
          ? 0
          : 1;
  let observed = 0;
  let expected = 0;
  for (let i = 0; i < K; i++) {
    for (let j = 0; j < K; j++) {
      const w = weight(i, j);
      observed += w * confusion[i * K + j]!;
      expected += (w * rowSums[i]! * columnSums[j]!) / total;
    }
  }
  return expected === 0 ? Number.NaN : 1 - observed / expected;
}

/**
 * Fleiss' kappa from a subjects x categories table of counts (how many raters put each subject in
 * each category); every subject needs the same number of raters, at least two. (Fleiss 1971.)
 */
export function fleissKappa(counts: readonly (readonly number[])[]): number {
  const N = counts.length;
  const K = counts[0]?.length ?? 0;
  if (N === 0 || K === 0)
    throw new RatchetError('invalid_request', 'Fleiss kappa needs at least one subject and category');
  const n = counts[0]!.reduce((s, c) => s + c, 0);
  if (n < 2) throw new RatchetError('invalid_request', 'Fleiss kappa needs at least two raters per subject');
  const categoryTotals = new Float64Array(K);
  let agreement = 0;
  for (const row of counts) {
    if (row.length !== K)
      throw new RatchetError('invalid_request', 'every subject needs one count per category');
    let raters = 0;
    let squares = 0;
    row.forEach((c, j) => {
      if (!(Number.isInteger(c) && c >= 0))
        throw new RatchetError('invalid_request', 'counts must be whole numbers');
      raters += c;
      squares += c * c;
      categoryTotals[j]! += c;
    });
    if (raters !== n) {
      throw new RatchetError(
        'invalid_request',
        `Fleiss kappa needs the same number of raters per subject (${raters} != ${n})`,
      );
    }
    // P_i: the share of agreeing rater pairs on this subject.
    agreement += (squares - n) / (n * (n - 1));
  }
  const observed = agreement / N;
  let chance = 0;
  for (const total of categoryTotals) chance += (total / (N * n)) ** 2;
  return chance === 1 ? Number.NaN : (observed - chance) / (1 - chance);
}

/**
 * The subjects x categories count table of a reliability matrix (raters x units), for Fleiss'
 * kappa. Categories default to the sorted distinct values.
 */
export function fleissTable(
  reliabilityData: readonly (readonly RatingValue[])[],
  categories?: readonly (number | string)[],
): { categories: (number | string)[]; counts: number[][] } {
  const unitCount = reliabilityData[0]?.length ?? 0;
  const domain = categories ? [...categories] : sortedDistinct(reliabilityData.flat());
  const indexOf = domainIndex(domain);
  const counts = Array.from({ length: unitCount }, () => new Array<number>(domain.length).fill(0));
  for (const row of reliabilityData) {
    if (row.length !== unitCount)
      throw new RatchetError('invalid_request', 'every rater row must have one entry per unit');
    row.forEach((v, u) => {
      if (!isMissing(v)) counts[u]![indexOf(v)]!++;
    });
  }
  return { categories: domain, counts };
}
