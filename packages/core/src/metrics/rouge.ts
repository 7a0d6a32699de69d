/**
 * ROUGE-N, ROUGE-L and ROUGE-Lsum exactly as Google's rouge-score 0.1.2 computes them (its
 * default tokenizer: lowercase, every run of characters outside [a-z0-9] is a separator, optional
 * Porter stemming of tokens longer than 3 characters). Scores are 0..1.
 */
import { porterStem } from './porter-stemmer.js';
import { countKeys } from './python-text.js';

export interface RougeScore {
  precision: number;
  recall: number;
  fmeasure: number;
}

export type RougeType = `rouge${number}` | 'rougeL' | 'rougeLsum';

export interface RougeOptions {
  /** Which scores to compute (default rouge1, rouge2, rougeL). */
  types?: readonly RougeType[];
  /** Porter-stem tokens longer than 3 characters (rouge-score's `use_stemmer`). */
  useStemmer?: boolean;
}

const DEFAULT_TYPES: readonly RougeType[] = ['rouge1', 'rouge2', 'rougeL'];
const ZERO: RougeScore = { precision: 0, recall: 0, fmeasure: 0 };

/** rouge-score's default tokenizer. */
export function rougeTokenize(text: string, useStemmer = false): string[] {
  const tokens = text.toLowerCase().split(/[^a-z0-9]+/);
  const stemmed = useStemmer ? tokens.map((t) => (t.length > 3 ? porterStem(t) : t)) : tokens;
  return stemmed.filter((t) => /^[a-z0-9]+$/.test(t));
}

function fmeasure(precision: number, recall: number): number {
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

function ngrams(tokens: string[], n: number): Map<string, number> {
  const keys: string[] = [];
  for (let i = 0; i + n <= tokens.length; i++) keys.push(tokens.slice(i, i + n).join(' '));
  return countKeys(keys);
}

function scoreNgrams(target: Map<string, number>, prediction: Map<string, number>): RougeScore {
  let overlap = 0;
  let targetCount = 0;
  let predictionCount = 0;
  for (const [k, n] of target) {
    overlap += Math.min(n, prediction.get(k) ?? 0);
    targetCount += n;
  }
  for (const n of prediction.values()) predictionCount += n;
  const precision = overlap / Math.max(predictionCount, 1);
  const recall = overlap / Math.max(targetCount, 1);
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** The dynamic-programming table of LCS lengths; row i, column j covers ref[:i] and can[:j]. */
function lcsTable(ref: string[], can: string[]): number[][] {
  const table = Array.from({ length: ref.length + 1 }, () => new Array<number>(can.length + 1).fill(0));
  for (let i = 1; i <= ref.length; i++) {
    const row = table[i]!;
    const prev = table[i - 1]!;
    for (let j = 1; j <= can.length; j++) {
      row[j] = ref[i - 1] === can[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, row[j - 1]!);
    }
  }
  return table;
}

function scoreLcs(target: string[], prediction: string[]): RougeScore {
  if (target.length === 0 || prediction.length === 0) return ZERO;
  const lcs = lcsTable(target, prediction)[target.length]![prediction.length]!;
  const precision = lcs / prediction.length;
  const recall = lcs / target.length;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** Indices into `ref` of one longest common subsequence (rouge-score's backtrack, same tie order). */
function lcsIndices(ref: string[], can: string[]): number[] {
  const t = lcsTable(ref, can);
  const out: number[] = [];
  let i = ref.length;
  let j = can.length;
  while (i > 0 && j > 0) {
    if (ref[i - 1] === can[j - 1]) {
      out.unshift(i - 1);
      i--;
      j--;
    } else if (t[i]![j - 1]! > t[i - 1]![j]!) {
      j--;
    } else {
      i--;
    }
  }
  return out;
}

/** Summary-level LCS (ROUGE paper section 3.2), counting each token at most as often as it occurs. */
function scoreSummaryLcs(refSents: string[][], canSents: string[][]): RougeScore {
  if (refSents.length === 0 || canSents.length === 0) return ZERO;
  const m = refSents.reduce((s, x) => s + x.length, 0);
  const n = canSents.reduce((s, x) => s + x.length, 0);
  if (m === 0 || n === 0) return ZERO;
  const refCounts = countKeys(refSents.flat());
  const canCounts = countKeys(canSents.flat());
  let hits = 0;
  for (const r of refSents) {
    const union = new Set<number>();
    for (const c of canSents) for (const idx of lcsIndices(r, c)) union.add(idx);
    for (const idx of [...union].sort((a, b) => a - b)) {
      const token = r[idx]!;
      if ((canCounts.get(token) ?? 0) > 0 && (refCounts.get(token) ?? 0) > 0) {
        hits++;
        canCounts.set(token, canCounts.get(token)! - 1);
        refCounts.set(token, refCounts.get(token)! - 1);
      }
    }
  }
  const recall = hits / m;
  const precision = hits / n;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** Sentences for ROUGE-Lsum: rouge-score splits on newlines and drops empty lines. */
function summarySentences(text: string, useStemmer: boolean): string[][] {
  return text
    .split('\n')
    .filter((s) => s.length > 0)
    .map((s) => rougeTokenize(s, useStemmer));
}

function scoreOne(
  type: RougeType,
  target: string,
  prediction: string,
  tokens: { target: string[]; prediction: string[] },
  useStemmer: boolean,
): RougeScore {
  if (type === 'rougeL') return scoreLcs(tokens.target, tokens.prediction);
  if (type === 'rougeLsum') {
    return scoreSummaryLcs(summarySentences(target, useStemmer), summarySentences(prediction, useStemmer));
  }
  const match = /^rouge([0-9])$/.exec(type);
  const n = match ? Number(match[1]) : 0;
  if (n <= 0) throw new Error(`invalid ROUGE type: ${type}`);
  return scoreNgrams(ngrams(tokens.target, n), ngrams(tokens.prediction, n));
}

/**
 * ROUGE scores of a prediction against one reference. Argument order is prediction first, like
 * our BLEU and chrF; rouge-score's `score(target, prediction)` takes them the other way round.
 */
export function rouge(
  prediction: string,
  reference: string,
  options: RougeOptions = {},
): Partial<Record<RougeType, RougeScore>> {
  const types = options.types ?? DEFAULT_TYPES;
  const useStemmer = options.useStemmer ?? false;
  const tokens = {
    target: rougeTokenize(reference, useStemmer),
    prediction: rougeTokenize(prediction, useStemmer),
  };
  const out: Partial<Record<RougeType, RougeScore>> = {};
  for (const type of types) out[type] = scoreOne(type, reference, prediction, tokens, useStemmer);
  return out;
}

/**
 * ROUGE against several references: per type, the score of the reference with the highest
 * F-measure (the first on ties), as rouge-score's `score_multi`.
 */
export function rougeMulti(
  prediction: string,
  references: readonly string[],
  options: RougeOptions = {},
): Partial<Record<RougeType, RougeScore>> {
  if (references.length === 0) throw new Error('ROUGE needs at least one reference');
  const perReference = references.map((r) => rouge(prediction, r, options));
  const out: Partial<Record<RougeType, RougeScore>> = {};
  for (const type of options.types ?? DEFAULT_TYPES) {
    let best = perReference[0]![type]!;
    for (const scores of perReference) if (scores[type]!.fmeasure > best.fmeasure) best = scores[type]!;
    out[type] = best;
  }
  return out;
}
