/**
 * Python's string semantics where the reference packages (sacrebleu, rouge-score, the SQuAD
 * script) depend on them, so that our metrics equal theirs: `str.split()` and `str.rstrip()` treat
 * a different set of characters as whitespace than JavaScript's `\s` (Python adds \x1c-\x1f and
 * \x85; JavaScript adds \ufeff), and Python indexes strings by code point, not UTF-16 unit.
 */

/** The characters for which Python's `str.isspace()` is true. */
const PY_SPACE =
  '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPACE_RUN = new RegExp(`[${PY_SPACE}]+`, 'u');
const PY_TRAILING_SPACE = new RegExp(`[${PY_SPACE}]+$`, 'u');

/** Python's `s.split()`: runs of whitespace separate, no empty strings. */
export function pySplit(text: string): string[] {
  return text.split(PY_SPACE_RUN).filter((t) => t.length > 0);
}

/** Python's `s.rstrip()`. */
export function pyRstrip(text: string): string {
  return text.replace(PY_TRAILING_SPACE, '');
}

/** The code points of a string (Python's view of its characters). */
export function codePoints(text: string): string[] {
  return Array.from(text);
}

/** Counts of each key, in first-seen order (like Python's Counter). */
export function countKeys(keys: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
  return counts;
}

/** Sum over keys of min(a[k], b[k]): the clipped overlap of two multisets (Counter `&`). */
export function overlapCount(a: Map<string, number>, b: Map<string, number>): number {
  let total = 0;
  for (const [k, n] of a) {
    const m = b.get(k);
    if (m !== undefined) total += Math.min(n, m);
  }
  return total;
}

export function sumValues(counts: Map<string, number>): number {
  let total = 0;
  for (const n of counts.values()) total += n;
  return total;
}
