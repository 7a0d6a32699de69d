/**
 * BLEU (Papineni et al., 2002) exactly as sacrebleu 2.6 computes it: the 13a tokenizer (mteval-
 * v13a, used by WMT), clipped n-gram counts against the best of several references, the closest
 * reference length for the brevity penalty, and sacrebleu's smoothing methods. Scores are on
 * sacrebleu's 0..100 scale.
 */
import { countKeys, pyRstrip, pySplit } from './python-text.js';

export type BleuSmoothing = 'none' | 'floor' | 'add-k' | 'exp';
export type BleuTokenizer = '13a' | 'none';

export interface BleuOptions {
  /** sacrebleu's default is 'exp' (NIST's geometric halving of zero precisions). */
  smoothMethod?: BleuSmoothing;
  /** For 'floor' (default 0.1) and 'add-k' (default 1). */
  smoothValue?: number;
  lowercase?: boolean;
  tokenize?: BleuTokenizer;
  maxNgramOrder?: number;
  /** Drop n-gram orders that have no hypothesis n-grams (right for single sentences). */
  effectiveOrder?: boolean;
}

export interface BleuScore {
  score: number;
  /** Matched n-grams per order (1..maxNgramOrder). */
  counts: number[];
  /** Hypothesis n-grams per order. */
  totals: number[];
  /** Per-order precisions, in percent (smoothed as configured). */
  precisions: number[];
  brevityPenalty: number;
  hypothesisLength: number;
  referenceLength: number;
}

const SMOOTH_DEFAULTS: Record<BleuSmoothing, number> = { none: 0, floor: 0.1, 'add-k': 1, exp: 0 };

// mteval-v13a's punctuation split, as sacrebleu's TokenizerRegexp writes it: the symbols
// {|}~ [\]^_` space!"#$%& ()*+ :;<=>?@ and /, each isolated by spaces.
const SYMBOLS = /([\x7b-\x7e\x5b-\x60\x20-\x26\x28-\x2b\x3a-\x40\x2f])/gu;
const PERIOD_COMMA_AFTER_NON_DIGIT = /([^0-9])([.,])/gu;
const PERIOD_COMMA_BEFORE_NON_DIGIT = /([.,])([^0-9])/gu;
const DASH_AFTER_DIGIT = /([0-9])(-)/gu;

/** sacrebleu's 13a tokenizer: a segment in, its space-separated tokens out. */
export function tokenize13a(line: string): string {
  let s = line.replaceAll('<skipped>', '').replaceAll('-\n', '').replaceAll('\n', ' ');
  if (s.includes('&')) {
    s = s.replaceAll('&quot;', '"').replaceAll('&amp;', '&').replaceAll('&lt;', '<').replaceAll('&gt;', '>');
  }
  s = ` ${s} `
    .replace(SYMBOLS, ' $1 ')
    .replace(PERIOD_COMMA_AFTER_NON_DIGIT, '$1 $2 ')
    .replace(PERIOD_COMMA_BEFORE_NON_DIGIT, ' $1 $2')
    .replace(DASH_AFTER_DIGIT, '$1 $2 ');
  return pySplit(s).join(' ');
}

interface Resolved {
  smoothMethod: BleuSmoothing;
  smoothValue: number;
  lowercase: boolean;
  tokenize: BleuTokenizer;
  maxOrder: number;
  effectiveOrder: boolean;
}

function resolve(options: BleuOptions, effectiveOrderDefault: boolean): Resolved {
  const smoothMethod = options.smoothMethod ?? 'exp';
  return {
    smoothMethod,
    smoothValue: options.smoothValue ?? SMOOTH_DEFAULTS[smoothMethod],
    lowercase: options.lowercase ?? false,
    tokenize: options.tokenize ?? '13a',
    maxOrder: options.maxNgramOrder ?? 4,
    effectiveOrder: options.effectiveOrder ?? effectiveOrderDefault,
  };
}

function preprocess(segment: string, o: Resolved): string[] {
  const text = pyRstrip(o.lowercase ? segment.toLowerCase() : segment);
  return pySplit(o.tokenize === '13a' ? tokenize13a(text) : text);
}

/** All n-grams of orders 1..maxOrder, keyed by their tokens joined with a space (tokens have none). */
function ngramCounts(tokens: string[], maxOrder: number): Map<string, number> {
  const keys: string[] = [];
  for (let n = 1; n <= maxOrder; n++) {
    for (let i = 0; i + n <= tokens.length; i++) keys.push(tokens.slice(i, i + n).join(' '));
  }
  return countKeys(keys);
}

/** The reference length closest to the hypothesis length; ties go to the shorter reference. */
function closestReferenceLength(hypLength: number, refLengths: number[]): number {
  let bestDiff = -1;
  let best = -1;
  for (const len of refLengths) {
    const diff = Math.abs(hypLength - len);
    if (bestDiff === -1 || diff < bestDiff) {
      bestDiff = diff;
      best = len;
    } else if (diff === bestDiff && len < best) {
      best = len;
    }
  }
  return best;
}

/** [hypLen, refLen, correct_1..N, total_1..N] for one segment, as sacrebleu's sufficient statistics. */
function segmentStatistics(hypothesis: string, references: readonly string[], o: Resolved): number[] {
  if (references.length === 0) throw new Error('BLEU needs at least one reference per hypothesis');
  const refNgrams = new Map<string, number>();
  const refLengths: number[] = [];
  for (const ref of references) {
    const tokens = preprocess(ref, o);
    refLengths.push(tokens.length);
    // Clip against the most frequent occurrence of each n-gram in any one reference.
    for (const [k, n] of ngramCounts(tokens, o.maxOrder))
      refNgrams.set(k, Math.max(refNgrams.get(k) ?? 0, n));
  }
  const hypTokens = preprocess(hypothesis, o);
  const correct = new Array<number>(o.maxOrder).fill(0);
  const total = new Array<number>(o.maxOrder).fill(0);
  for (const [k, n] of ngramCounts(hypTokens, o.maxOrder)) {
    const order = k.split(' ').length - 1;
    total[order]! += n;
    correct[order]! += Math.min(n, refNgrams.get(k) ?? 0);
  }
  return [hypTokens.length, closestReferenceLength(hypTokens.length, refLengths), ...correct, ...total];
}

/** sacrebleu's floored log: log(0) is a very large negative number, not -Infinity. */
function flooredLog(x: number): number {
  return x === 0 ? -9999999999 : Math.log(x);
}

/** BLEU from summed sufficient statistics (sacrebleu's `compute_bleu`). */
function bleuFromStatistics(stats: number[], o: Resolved): BleuScore {
  const N = o.maxOrder;
  const sysLen = stats[0]!;
  const refLen = stats[1]!;
  const correct = stats.slice(2, 2 + N);
  const total = stats.slice(2 + N, 2 + 2 * N);
  let bp = 1;
  if (sysLen < refLen) bp = sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0;
  const precisions = new Array<number>(N).fill(0);
  const result = (score: number): BleuScore => ({
    score,
    counts: correct,
    totals: total,
    precisions,
    brevityPenalty: bp,
    hypothesisLength: sysLen,
    referenceLength: refLen,
  });
  if (!correct.some((c) => c !== 0)) return result(0);
  let smoothMteval = 1;
  let effOrder = N;
  for (let n = 1; n <= N; n++) {
    if (o.smoothMethod === 'add-k' && n > 1) {
      correct[n - 1]! += o.smoothValue;
      total[n - 1]! += o.smoothValue;
    }
    if (total[n - 1] === 0) break;
    if (o.effectiveOrder) effOrder = n;
    if (correct[n - 1] === 0) {
      if (o.smoothMethod === 'exp') {
        smoothMteval *= 2;
        precisions[n - 1] = 100 / (smoothMteval * total[n - 1]!);
      } else if (o.smoothMethod === 'floor') {
        precisions[n - 1] = (100 * o.smoothValue) / total[n - 1]!;
      }
    } else {
      precisions[n - 1] = (100 * correct[n - 1]!) / total[n - 1]!;
    }
  }
  let logSum = 0;
  for (const p of precisions.slice(0, effOrder)) logSum += flooredLog(p);
  return result(bp * Math.exp(logSum / effOrder));
}

/**
 * Corpus BLEU of hypotheses against references, sacrebleu's `corpus_bleu` with its defaults.
 * `references[i]` holds the references of `hypotheses[i]` (one or more; note that sacrebleu takes
 * them the other way round, as reference streams).
 */
export function corpusBleu(
  hypotheses: readonly string[],
  references: readonly (readonly string[])[],
  options: BleuOptions = {},
): BleuScore {
  if (hypotheses.length !== references.length) {
    throw new Error(`corpusBleu: ${hypotheses.length} hypotheses but ${references.length} reference sets`);
  }
  const o = resolve(options, false);
  const sums = new Array<number>(2 + 2 * o.maxOrder).fill(0);
  hypotheses.forEach((hyp, i) => {
    const stats = segmentStatistics(hyp, references[i]!, o);
    for (let k = 0; k < sums.length; k++) sums[k]! += stats[k]!;
  });
  return bleuFromStatistics(sums, o);
}

/** Sentence BLEU, sacrebleu's `sentence_bleu` (exp smoothing and effective order by default). */
export function sentenceBleu(
  hypothesis: string,
  references: readonly string[],
  options: BleuOptions = {},
): BleuScore {
  const o = resolve(options, true);
  return bleuFromStatistics(segmentStatistics(hypothesis, references, o), o);
}
