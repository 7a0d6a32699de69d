import { RatchetError } from '../errors.js';

/** A coded value; null, undefined and NaN mean "this rater did not rate this unit". */
export type RatingValue = number | string | null | undefined;

export const isMissing = (v: RatingValue): v is null | undefined =>
  v === null || v === undefined || (typeof v === 'number' && Number.isNaN(v));

/**
 * The sorted distinct values, as numpy's `np.unique` orders them (numbers ascending, strings by
 * code point), so that "category index" means the same here as in the reference implementations.
 */
export function sortedDistinct(values: Iterable<RatingValue>): (number | string)[] {
  const seen = new Set<number | string>();
  for (const v of values) if (!isMissing(v)) seen.add(v);
  const list = [...seen];
  const numbers = list.filter((v) => typeof v === 'number').length;
  if (numbers !== 0 && numbers !== list.length) {
    throw new RatchetError('invalid_request', 'values mix numbers and strings');
  }
  return numbers > 0 ? (list as number[]).sort((a, b) => a - b) : (list as string[]).sort(compareCodePoints);
}

/**
 * Orders strings by Unicode code point, as Python and numpy do. JavaScript's `<` compares UTF-16
 * code units, which puts a character above U+FFFF (two surrogate units from U+D800) before one in
 * U+E000..U+FFFF; weighted kappa's category indices would then differ from scikit-learn's.
 */
export function compareCodePoints(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    i += x > 0xffff ? 2 : 1;
  }
  return a.length - i - (b.length - i);
}

/** Index of every value of a domain, failing clearly on a value outside it. */
export function domainIndex(domain: readonly (number | string)[]): (v: number | string) => number {
  const index = new Map<number | string, number>(domain.map((v, i) => [v, i]));
  if (index.size !== domain.length) throw new RatchetError('invalid_request', 'value domain has duplicates');
  return (v) => {
    const i = index.get(v);
    if (i === undefined)
      throw new RatchetError('invalid_request', `value ${JSON.stringify(v)} is outside the value domain`);
    return i;
  };
}
