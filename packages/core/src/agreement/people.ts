import { krippendorffAlphaFromUnits, type MeasurementLevel } from './krippendorff.js';
import { type PairwiseKappa, pairwiseCohenKappa, reliabilityMatrix, type UnitRating } from './summary.js';
import { isMissing } from './values.js';

/** How one person agrees with the others on the units they share with them. */
export interface PersonAgreement {
  raterId: string;
  /** Units this person rated. */
  units: number;
  /** Their ratings of units someone else also rated: the ones agreement is measured on. */
  sharedUnits: number;
  /** Of their comparisons with another person's rating of the same unit, the share that agree. */
  agreement: number | null;
  /** Mean Cohen's kappa with each person they share at least `minShared` units with. */
  meanKappa: number | null;
}

/** A pair of people: units both rated, the share of them they agreed on, and Cohen's kappa. */
export interface PairAgreement extends Omit<PairwiseKappa, 'kappa'> {
  agreement: number;
  /** Null where kappa is undefined (one category only, or fewer than `minShared` shared units). */
  kappa: number | null;
}

export interface TeamAgreement {
  /** Krippendorff's alpha over every unit rated by two or more people; null when none is. */
  alpha: number | null;
  pairs: PairAgreement[];
  people: PersonAgreement[];
}

const finiteOrNull = (x: number) => (Number.isFinite(x) ? x : null);

/**
 * Agreement in a team where each person is one rater: per pair (observed agreement and Cohen's
 * kappa on the units both rated), per person (how often they agree with whoever else rated the
 * same unit, and their mean kappa), and alpha for the team. What shows which annotator reads the
 * guidelines differently, where a single alpha cannot.
 */
export function agreementByPerson(
  ratings: readonly UnitRating[],
  options: {
    level?: MeasurementLevel;
    weights?: 'linear' | 'quadratic' | null;
    minShared?: number;
  } = {},
): TeamAgreement {
  const matrix = reliabilityMatrix(ratings);
  const minShared = options.minShared ?? 2;
  const kappas = new Map(
    pairwiseCohenKappa(matrix, { weights: options.weights ?? null, minShared }).map((k) => [
      `${k.raterA}\u0000${k.raterB}`,
      k.kappa,
    ]),
  );
  const pairs: PairAgreement[] = [];
  const compared = matrix.raters.map(() => ({ agree: 0, total: 0, shared: 0, kappas: [] as number[] }));
  for (let a = 0; a < matrix.raters.length; a++) {
    for (let b = a + 1; b < matrix.raters.length; b++) {
      const [rowA, rowB] = [matrix.data[a]!, matrix.data[b]!];
      let n = 0;
      let agree = 0;
      rowA.forEach((x, u) => {
        const y = rowB[u];
        if (isMissing(x) || isMissing(y)) return;
        n++;
        if (x === y) agree++;
      });
      if (n === 0) continue;
      const raterA = matrix.raters[a]!;
      const raterB = matrix.raters[b]!;
      const kappa = kappas.get(`${raterA}\u0000${raterB}`);
      pairs.push({ raterA, raterB, n, agreement: agree / n, kappa: finiteOrNull(kappa ?? Number.NaN) });
      for (const side of [compared[a]!, compared[b]!]) {
        side.agree += agree;
        side.total += n;
        if (kappa !== undefined && Number.isFinite(kappa)) side.kappas.push(kappa);
      }
    }
  }
  const rowsPerUnit = matrix.units.map((_, u) => matrix.data.filter((row) => !isMissing(row[u])).length);
  const people = matrix.raters.map((raterId, r): PersonAgreement => {
    const row = matrix.data[r]!;
    const rated = row.flatMap((v, u) => (isMissing(v) ? [] : [u]));
    const c = compared[r]!;
    return {
      raterId,
      units: rated.length,
      sharedUnits: rated.filter((u) => rowsPerUnit[u]! >= 2).length,
      agreement: c.total > 0 ? c.agree / c.total : null,
      meanKappa: c.kappas.length ? c.kappas.reduce((s, k) => s + k, 0) / c.kappas.length : null,
    };
  });
  const pairable = matrix.units
    .map((_, u) => matrix.data.map((row) => row[u] ?? null))
    .filter((values) => values.filter((v) => !isMissing(v)).length >= 2);
  const alpha = pairable.length
    ? finiteOrNull(krippendorffAlphaFromUnits(pairable, { level: options.level ?? 'nominal' }))
    : null;
  return { alpha, pairs, people };
}
