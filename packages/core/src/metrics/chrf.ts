/**
 * chrF and chrF++ (Popović, 2015 and 2017) exactly as sacrebleu 2.6 computes them: character
 * n-grams up to `charOrder` with whitespace removed, optional word n-grams (chrF++ is word order
 * 2), F-beta averaged over the orders that have n-grams on both sides. Scores are 0..100.
 */
import { codePoints, countKeys, pySplit, sumValues } from './python-text.js';

export interface ChrfOptions {
  /** Character n-gram order (sacrebleu: 6). */
  charOrder?: number;
  /** Word n-gram order: 0 for chrF, 2 for chrF++. */
  wordOrder?: number;
  /** Weight of recall over precision (sacrebleu: 2). */
  beta?: number;
  lowercase?: boolean;
  /** Keep whitespace in the character n-grams. */
  whitespace?: boolean;
  /** chrF++.py / NLTK / Moses style epsilon smoothing instead of the effective order. */
  epsSmoothing?: boolean;
}

export interface ChrfScore {
  score: number;
  charOrder: number;
  wordOrder: number;
  beta: number;
}

type Resolved = Required<ChrfOptions>;

function resolve(options: ChrfOptions): Resolved {
  return {
    charOrder: options.charOrder ?? 6,
    wordOrder: options.wordOrder ?? 0,
    beta: options.beta ?? 2,
    lowercase: options.lowercase ?? false,
    whitespace: options.whitespace ?? false,
    epsSmoothing: options.epsSmoothing ?? false,
  };
}

/** The ASCII punctuation (Python's string.punctuation) that chrF++ splits off words. */
const PUNCTUATION = new Set(Array.from('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'));

/**
 * Words with one punctuation mark split off the end, or else the start (sacrebleu's port of the
 * reference chrF++: '(hi)' becomes '(hi' and ')').
 */
function wordsWithPunctuationSplit(sentence: string): string[] {
  const out: string[] = [];
  for (const word of pySplit(sentence)) {
    const chars = codePoints(word);
    if (chars.length === 1) {
      out.push(word);
    } else if (PUNCTUATION.has(chars.at(-1)!)) {
      out.push(chars.slice(0, -1).join(''), chars.at(-1)!);
    } else if (PUNCTUATION.has(chars[0]!)) {
      out.push(chars[0]!, chars.slice(1).join(''));
    } else {
      out.push(word);
    }
  }
  return out;
}

function charNgrams(line: string, order: number, whitespace: boolean): Map<string, number>[] {
  const chars = codePoints(whitespace ? line : pySplit(line).join(''));
  const counters: Map<string, number>[] = [];
  for (let n = 1; n <= order; n++) {
    const keys: string[] = [];
    for (let i = 0; i + n <= chars.length; i++) keys.push(chars.slice(i, i + n).join(''));
    counters.push(countKeys(keys));
  }
  return counters;
}

function wordNgrams(words: string[], n: number): Map<string, number> {
  const keys: string[] = [];
  for (let i = 0; i + n <= words.length; i++) keys.push(words.slice(i, i + n).join(' '));
  return countKeys(keys);
}

/** Character n-gram counters of orders 1..charOrder, then word n-gram counters of 1..wordOrder. */
function allNgrams(sentence: string, o: Resolved): Map<string, number>[] {
  const counters = charNgrams(sentence, o.charOrder, o.whitespace);
  if (o.wordOrder > 0) {
    const words = wordsWithPunctuationSplit(sentence);
    for (let n = 1; n <= o.wordOrder; n++) counters.push(wordNgrams(words, n));
  }
  return counters;
}

/** [hyp, ref, match] counts of one order; hypothesis n-grams count only when the reference has any. */
function matchStatistics(hyp: Map<string, number>, ref: Map<string, number>): [number, number, number] {
  let match = 0;
  let hypCount = 0;
  for (const [k, n] of hyp) {
    hypCount += n;
    const r = ref.get(k);
    if (r !== undefined) match += Math.min(n, r);
  }
  return [ref.size > 0 ? hypCount : 0, sumValues(ref), match];
}

/** sacrebleu's `_compute_f_score` over the flattened [hyp, ref, match] triples. */
function fScore(stats: number[], o: Resolved): number {
  const eps = 1e-16;
  const order = o.charOrder + o.wordOrder;
  const factor = o.beta ** 2;
  let score = 0;
  let effectiveOrder = 0;
  let avgPrec = 0;
  let avgRec = 0;
  for (let i = 0; i < order; i++) {
    const nHyp = stats[3 * i]!;
    const nRef = stats[3 * i + 1]!;
    const nMatch = stats[3 * i + 2]!;
    const prec = nHyp > 0 ? nMatch / nHyp : eps;
    const rec = nRef > 0 ? nMatch / nRef : eps;
    const denom = factor * prec + rec;
    score += denom > 0 ? ((1 + factor) * prec * rec) / denom : eps;
    if (nHyp > 0 && nRef > 0) {
      avgPrec += prec;
      avgRec += rec;
      effectiveOrder++;
    }
  }
  if (o.epsSmoothing) return (100 * score) / order;
  if (effectiveOrder === 0) {
    avgPrec = 0;
    avgRec = 0;
  } else {
    avgPrec /= effectiveOrder;
    avgRec /= effectiveOrder;
  }
  if (avgPrec + avgRec === 0) return 0;
  const f = ((1 + factor) * avgPrec * avgRec) / (factor * avgPrec + avgRec);
  return 100 * f;
}

/** The statistics of the reference with the best sentence-level F score (first one on ties). */
function segmentStatistics(hypothesis: string, references: readonly string[], o: Resolved): number[] {
  if (references.length === 0) throw new Error('chrF needs at least one reference per hypothesis');
  const prep = (s: string) => (o.lowercase ? s.toLowerCase() : s);
  const hyp = allNgrams(prep(hypothesis), o);
  let best: number[] = [];
  let bestF = -1;
  for (const ref of references) {
    const refNgrams = allNgrams(prep(ref), o);
    const stats = hyp.flatMap((h, i) => matchStatistics(h, refNgrams[i]!));
    const f = fScore(stats, o);
    if (f > bestF) {
      bestF = f;
      best = stats;
    }
  }
  return best;
}

function result(score: number, o: Resolved): ChrfScore {
  return { score, charOrder: o.charOrder, wordOrder: o.wordOrder, beta: o.beta };
}

/** Sentence chrF (sacrebleu's `sentence_chrf`); pass `{ wordOrder: 2 }` for chrF++. */
export function sentenceChrf(
  hypothesis: string,
  references: readonly string[],
  options: ChrfOptions = {},
): ChrfScore {
  const o = resolve(options);
  return result(fScore(segmentStatistics(hypothesis, references, o), o), o);
}

/**
 * Corpus chrF (sacrebleu's `corpus_chrf`): statistics summed over segments, then one F score.
 * `references[i]` holds the references of `hypotheses[i]`.
 */
export function corpusChrf(
  hypotheses: readonly string[],
  references: readonly (readonly string[])[],
  options: ChrfOptions = {},
): ChrfScore {
  if (hypotheses.length !== references.length) {
    throw new Error(`corpusChrf: ${hypotheses.length} hypotheses but ${references.length} reference sets`);
  }
  const o = resolve(options);
  const sums = new Array<number>(3 * (o.charOrder + o.wordOrder)).fill(0);
  hypotheses.forEach((hyp, i) => {
    const stats = segmentStatistics(hyp, references[i]!, o);
    for (let k = 0; k < sums.length; k++) sums[k]! += stats[k]!;
  });
  return result(fScore(sums, o), o);
}
