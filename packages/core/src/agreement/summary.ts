import { criterionReward, scaleToReward } from '../normalize/scales.js';
import type { ScoreConfig } from '../schemas/score-config.js';
import { cohenKappa } from './kappa.js';
import { krippendorffAlphaFromUnits, type MeasurementLevel } from './krippendorff.js';
import { isMissing, type RatingValue } from './values.js';

/** One rater's value for one unit (an interaction), in long format. */
export interface UnitRating {
  unitId: string;
  raterId: string;
  value: number | string;
}

export interface ReliabilityMatrix {
  raters: string[];
  units: string[];
  /** raters x units, null where a rater did not rate a unit. */
  data: RatingValue[][];
}

/** Long-format ratings as a raters x units matrix (a later rating of the same pair wins). */
export function reliabilityMatrix(ratings: readonly UnitRating[]): ReliabilityMatrix {
  const raterIndex = new Map<string, number>();
  const unitIndex = new Map<string, number>();
  for (const r of ratings) {
    if (!raterIndex.has(r.raterId)) raterIndex.set(r.raterId, raterIndex.size);
    if (!unitIndex.has(r.unitId)) unitIndex.set(r.unitId, unitIndex.size);
  }
  const data = Array.from({ length: raterIndex.size }, () =>
    new Array<RatingValue>(unitIndex.size).fill(null),
  );
  for (const r of ratings) data[raterIndex.get(r.raterId)!]![unitIndex.get(r.unitId)!] = r.value;
  return { raters: [...raterIndex.keys()], units: [...unitIndex.keys()], data };
}

export interface PairwiseKappa {
  raterA: string;
  raterB: string;
  /** Units both rated. */
  n: number;
  kappa: number;
}

/**
 * Cohen's kappa for every pair of raters over the units both rated (pairs with fewer than
 * `minShared` shared units are left out): shows which raters disagree with whom.
 */
export function pairwiseCohenKappa(
  matrix: ReliabilityMatrix,
  options: {
    weights?: 'linear' | 'quadratic' | null;
    labels?: readonly (number | string)[];
    minShared?: number;
  } = {},
): PairwiseKappa[] {
  const minShared = options.minShared ?? 2;
  const out: PairwiseKappa[] = [];
  for (let a = 0; a < matrix.raters.length; a++) {
    for (let b = a + 1; b < matrix.raters.length; b++) {
      const rowA = matrix.data[a]!;
      const rowB = matrix.data[b]!;
      let n = 0;
      for (let u = 0; u < rowA.length; u++) if (!isMissing(rowA[u]) && !isMissing(rowB[u])) n++;
      if (n < minShared) continue;
      const kappa = cohenKappa(rowA, rowB, {
        weights: options.weights ?? null,
        ...(options.labels ? { labels: options.labels } : {}),
      });
      out.push({ raterA: matrix.raters[a]!, raterB: matrix.raters[b]!, n, kappa });
    }
  }
  return out;
}

export interface AgreementSummary {
  level: MeasurementLevel;
  alpha: number;
  raters: number;
  units: number;
  /** Units with values from at least two raters: the ones alpha is computed on. */
  pairableUnits: number;
}

/** A criterion's rating, as CriterionRating rows from `criteria` feedback. */
export interface CriterionRating extends UnitRating {
  criterion: string;
}

/** Alpha and counts from ratings grouped by unit (the last rating of a rater on a unit counts). */
function summarize(
  ratings: readonly UnitRating[],
  level: MeasurementLevel,
  valueDomain?: readonly (number | string)[],
) {
  const byUnit = new Map<string, Map<string, RatingValue>>();
  const raters = new Set<string>();
  for (const r of ratings) {
    raters.add(r.raterId);
    let unit = byUnit.get(r.unitId);
    if (!unit) {
      unit = new Map();
      byUnit.set(r.unitId, unit);
    }
    unit.set(r.raterId, r.value);
  }
  const units = [...byUnit.values()].map((u) => [...u.values()]);
  const pairableUnits = units.filter((u) => u.filter((v) => !isMissing(v)).length >= 2).length;
  const alpha = krippendorffAlphaFromUnits(units, { level, ...(valueDomain ? { valueDomain } : {}) });
  return { level, alpha, raters: raters.size, units: units.length, pairableUnits };
}

/**
 * The level a criterion is measured at: interval for numeric scales, ordinal for categorical ones
 * (categories are ordered worst to best); without a config, interval for numbers, nominal else.
 */
function criterionLevel(
  config: ScoreConfig | undefined,
  values: readonly (number | string)[],
): MeasurementLevel {
  if (config) return config.dataType === 'categorical' ? 'ordinal' : 'interval';
  return values.every((v) => typeof v === 'number') ? 'interval' : 'nominal';
}

/**
 * Krippendorff's alpha per criterion and overall. Overall pools every (unit, criterion) as one
 * unit with values mapped to [-1, 1] on the criterion's scale (see normalize/), so criteria on
 * different scales can be combined; without a config a numeric criterion is mapped on the range
 * of its observed values, and a categorical one without a config is left out of the pool.
 */
export function agreementByCriterion(
  ratings: readonly CriterionRating[],
  options: {
    scoreConfigs?: ReadonlyMap<string, ScoreConfig>;
    levels?: Readonly<Record<string, MeasurementLevel>>;
  } = {},
): { criteria: Record<string, AgreementSummary>; overall: AgreementSummary | null } {
  const byCriterion = new Map<string, CriterionRating[]>();
  for (const r of ratings) {
    const list = byCriterion.get(r.criterion) ?? [];
    list.push(r);
    byCriterion.set(r.criterion, list);
  }
  const criteria: Record<string, AgreementSummary> = {};
  const pooled: UnitRating[] = [];
  for (const [name, list] of byCriterion) {
    const config = options.scoreConfigs?.get(name);
    const level =
      options.levels?.[name] ??
      criterionLevel(
        config,
        list.map((r) => r.value),
      );
    const domain = config?.dataType === 'categorical' ? (config.categories ?? undefined) : undefined;
    criteria[name] = summarize(list, level, domain);
    pooled.push(...normalizedForPooling(name, list, config));
  }
  const overall = pooled.length > 0 ? summarize(pooled, 'interval') : null;
  return { criteria, overall };
}

function normalizedForPooling(
  name: string,
  list: readonly CriterionRating[],
  config: ScoreConfig | undefined,
): UnitRating[] {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const r of list) {
    if (typeof r.value !== 'number') continue;
    if (r.value < min) min = r.value;
    if (r.value > max) max = r.value;
  }
  const out: UnitRating[] = [];
  for (const r of list) {
    let reward: number | null = null;
    if (config) reward = criterionReward(r.value, config);
    else if (typeof r.value === 'number' && max > min) reward = scaleToReward(r.value, min, max);
    if (reward !== null) out.push({ unitId: `${r.unitId}\u0000${name}`, raterId: r.raterId, value: reward });
  }
  return out;
}
