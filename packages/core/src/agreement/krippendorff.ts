import { RatchetError } from '../errors.js';
import { domainIndex, isMissing, type RatingValue, sortedDistinct } from './values.js';

export type MeasurementLevel = 'nominal' | 'ordinal' | 'interval' | 'ratio';

export interface KrippendorffOptions {
  level: MeasurementLevel;
  /**
   * The possible values, in order for ordinal data. Defaults to the sorted distinct values that
   * occur (as the `krippendorff` package does); required for ordinal strings.
   */
  valueDomain?: readonly (number | string)[];
}

/** One unit's values as (domain index, how many raters gave it). */
interface UnitCounts {
  index: number[];
  count: number[];
}

/**
 * Krippendorff's alpha for a reliability data matrix, raters x units (rows are raters, columns are
 * units; null, undefined or NaN where a rater did not rate a unit). alpha = 1 - D_o / D_e, the
 * observed over the expected disagreement of pairable values (units with at least two values).
 * Equal to the `krippendorff` Python package (same value domain, same metrics).
 *
 * Returns NaN when alpha is undefined: no unit with two values, a single value in the domain, or
 * no expected disagreement at all. Throws on malformed input (ragged rows, values outside
 * `valueDomain`, strings at interval or ratio level).
 */
export function krippendorffAlpha(
  reliabilityData: readonly (readonly RatingValue[])[],
  options: KrippendorffOptions,
): number {
  const unitCount = reliabilityData[0]?.length ?? 0;
  if (reliabilityData.some((row) => row.length !== unitCount)) {
    throw new RatchetError('invalid_request', 'every rater row must have one entry per unit');
  }
  const domain = resolveDomain(reliabilityData.flat(), options);
  const indexOf = domainIndex(domain);
  const units: UnitCounts[] = [];
  for (let u = 0; u < unitCount; u++) {
    const counts = new Map<number, number>();
    for (const row of reliabilityData) {
      const v = row[u];
      if (isMissing(v)) continue;
      const i = indexOf(v);
      counts.set(i, (counts.get(i) ?? 0) + 1);
    }
    units.push({ index: [...counts.keys()], count: [...counts.values()] });
  }
  return alphaFromUnitCounts(units, domain, options.level);
}

/**
 * Krippendorff's alpha from the values each unit received (one list per unit, missing values left
 * out): the sparse form of the reliability matrix. With thousands of raters who each rate a few
 * of many thousands of units the dense matrix is mostly empty; this costs time in the ratings only.
 */
export function krippendorffAlphaFromUnits(
  unitValues: readonly (readonly RatingValue[])[],
  options: KrippendorffOptions,
): number {
  const domain = resolveDomain(unitValues.flat(), options);
  const indexOf = domainIndex(domain);
  const units: UnitCounts[] = unitValues.map((values) => {
    const counts = new Map<number, number>();
    for (const v of values) {
      if (isMissing(v)) continue;
      const i = indexOf(v);
      counts.set(i, (counts.get(i) ?? 0) + 1);
    }
    return { index: [...counts.keys()], count: [...counts.values()] };
  });
  return alphaFromUnitCounts(units, domain, options.level);
}

/**
 * Krippendorff's alpha from value counts, units x values (how many raters gave each value of the
 * domain to each unit), like the package's `value_counts` input. The domain defaults to 0..V-1.
 */
export function krippendorffAlphaFromCounts(
  valueCounts: readonly (readonly number[])[],
  options: KrippendorffOptions,
): number {
  const width = valueCounts[0]?.length ?? 0;
  const domain = options.valueDomain ?? Array.from({ length: width }, (_, i) => i);
  if (domain.length !== width || valueCounts.some((row) => row.length !== width)) {
    throw new RatchetError('invalid_request', 'every unit needs one count per value of the domain');
  }
  checkLevel(domain, options);
  const units = valueCounts.map((row) => {
    const unit: UnitCounts = { index: [], count: [] };
    row.forEach((c, i) => {
      if (!(Number.isInteger(c) && c >= 0))
        throw new RatchetError('invalid_request', 'counts must be whole numbers');
      if (c > 0) {
        unit.index.push(i);
        unit.count.push(c);
      }
    });
    return unit;
  });
  return alphaFromUnitCounts(units, domain, options.level);
}

function resolveDomain(values: readonly RatingValue[], options: KrippendorffOptions): (number | string)[] {
  const domain = options.valueDomain ? [...options.valueDomain] : sortedDistinct(values);
  if (!options.valueDomain && options.level !== 'nominal' && domain.some((v) => typeof v === 'string')) {
    throw new RatchetError(
      'invalid_request',
      `${options.level} alpha on strings needs an ordered valueDomain`,
    );
  }
  checkLevel(domain, options);
  return domain;
}

function checkLevel(domain: readonly (number | string)[], options: KrippendorffOptions): void {
  if (
    (options.level === 'interval' || options.level === 'ratio') &&
    domain.some((v) => typeof v !== 'number')
  ) {
    throw new RatchetError('invalid_request', `${options.level} alpha needs numeric values`);
  }
}

/**
 * The computation on the coincidence structure. Disagreements are summed per unit over pairs of
 * distinct values (O(values per unit squared)), and the expected disagreement over pairs of domain
 * values, except at the nominal and interval levels, whose expected disagreement has a closed form,
 * so that data with many distinct values (continuous rewards) stays linear.
 */
function alphaFromUnitCounts(
  units: readonly UnitCounts[],
  domain: readonly (number | string)[],
  level: MeasurementLevel,
): number {
  if (domain.length <= 1) return Number.NaN;
  const V = domain.length;
  // n_v: pairable values per domain value (units with at least two values).
  const marginal = new Float64Array(V);
  let pairableUnits = 0;
  for (const unit of units) {
    const m = unit.count.reduce((a, b) => a + b, 0);
    if (m < 2) continue;
    pairableUnits++;
    unit.index.forEach((i, j) => {
      marginal[i]! += unit.count[j]!;
    });
  }
  if (pairableUnits === 0) return Number.NaN;
  const n = marginal.reduce((a, b) => a + b, 0);
  const distance = distanceFunction(domain, level, marginal);
  let observed = 0;
  for (const unit of units) {
    const m = unit.count.reduce((a, b) => a + b, 0);
    if (m < 2) continue;
    let sum = 0;
    for (let a = 0; a < unit.index.length; a++) {
      for (let b = 0; b < unit.index.length; b++) {
        if (a !== b) sum += unit.count[a]! * unit.count[b]! * distance(unit.index[a]!, unit.index[b]!);
      }
    }
    observed += sum / (m - 1);
  }
  const expected = expectedDisagreement(domain, level, marginal, n, distance);
  if (expected === 0) return Number.NaN;
  return 1 - observed / expected;
}

/** sum over c != k of n_c n_k d(c, k) / (n - 1): the disagreement of values paired at random. */
function expectedDisagreement(
  domain: readonly (number | string)[],
  level: MeasurementLevel,
  marginal: Float64Array,
  n: number,
  distance: (c: number, k: number) => number,
): number {
  if (level === 'nominal') {
    let squares = 0;
    for (const m of marginal) squares += m * m;
    return (n * n - squares) / (n - 1);
  }
  if (level === 'interval') {
    // sum_ck n_c n_k (v_c - v_k)^2 = 2 n sum n_c v_c^2 - 2 (sum n_c v_c)^2, centred for accuracy.
    let mean = 0;
    domain.forEach((v, c) => {
      mean += marginal[c]! * (v as number);
    });
    mean /= n;
    let s1 = 0;
    let s2 = 0;
    domain.forEach((v, c) => {
      const x = (v as number) - mean;
      s1 += marginal[c]! * x;
      s2 += marginal[c]! * x * x;
    });
    return (2 * n * s2 - 2 * s1 * s1) / (n - 1);
  }
  let sum = 0;
  for (let c = 0; c < domain.length; c++) {
    if (marginal[c] === 0) continue;
    for (let k = 0; k < domain.length; k++) {
      if (k !== c && marginal[k]! > 0) sum += marginal[c]! * marginal[k]! * distance(c, k);
    }
  }
  return sum / (n - 1);
}

/** The squared distance between domain values c and k at a level of measurement. */
function distanceFunction(
  domain: readonly (number | string)[],
  level: MeasurementLevel,
  marginal: Float64Array,
): (c: number, k: number) => number {
  switch (level) {
    case 'nominal':
      return (c, k) => (c === k ? 0 : 1);
    case 'interval':
      return (c, k) => ((domain[c] as number) - (domain[k] as number)) ** 2;
    case 'ratio':
      return (c, k) => {
        const a = domain[c] as number;
        const b = domain[k] as number;
        return a + b === 0 ? 0 : ((a - b) / (a + b)) ** 2;
      };
    case 'ordinal': {
      // Distance between ranks: the pairable values from c to k, minus half of each end.
      const cumulative = new Float64Array(domain.length + 1);
      for (let i = 0; i < domain.length; i++) cumulative[i + 1] = cumulative[i]! + marginal[i]!;
      return (c, k) => {
        const lo = Math.min(c, k);
        const hi = Math.max(c, k);
        return (cumulative[hi + 1]! - cumulative[lo]! - (marginal[lo]! + marginal[hi]!) / 2) ** 2;
      };
    }
  }
}
