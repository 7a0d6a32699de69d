/**
 * Exact match and token F1 with the SQuAD 2.0 evaluation script's normalization: lowercase,
 * strip ASCII punctuation, drop the articles a/an/the, collapse whitespace. Against several
 * references the best score counts, as in the script.
 */
import { countKeys, overlapCount, pySplit } from './python-text.js';

const PUNCTUATION = new Set(Array.from('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'));
// Python's \b is Unicode-aware (\w is exactly letters, numbers and '_'); JavaScript's \b is ASCII
// only, so the word boundary is spelled out.
const ARTICLES = /(?<![\p{L}\p{N}_])(a|an|the)(?![\p{L}\p{N}_])/gu;

/** The SQuAD script's `normalize_answer`. */
export function normalizeAnswer(text: string): string {
  const lower = text.toLowerCase();
  const noPunctuation = Array.from(lower)
    .filter((ch) => !PUNCTUATION.has(ch))
    .join('');
  return pySplit(noPunctuation.replace(ARTICLES, ' ')).join(' ');
}

function answerTokens(text: string): string[] {
  return text ? pySplit(normalizeAnswer(text)) : [];
}

function bestOver(references: readonly string[], score: (reference: string) => number): number {
  if (references.length === 0) throw new Error('needs at least one reference');
  return Math.max(...references.map(score));
}

/** 1 when the normalized prediction equals a normalized reference, else 0. */
export function exactMatch(prediction: string, references: string | readonly string[]): number {
  const refs = typeof references === 'string' ? [references] : references;
  const pred = normalizeAnswer(prediction);
  return bestOver(refs, (r) => (normalizeAnswer(r) === pred ? 1 : 0));
}

function tokenF1Single(prediction: string, reference: string): number {
  const predTokens = answerTokens(prediction);
  const refTokens = answerTokens(reference);
  // Empty on either side: 1 only if both are empty (SQuAD 2.0's no-answer convention).
  if (predTokens.length === 0 || refTokens.length === 0) {
    return predTokens.length === refTokens.length ? 1 : 0;
  }
  const same = overlapCount(countKeys(refTokens), countKeys(predTokens));
  if (same === 0) return 0;
  const precision = same / predTokens.length;
  const recall = same / refTokens.length;
  return (2 * precision * recall) / (precision + recall);
}

/** Token-overlap F1 of the normalized prediction against the best reference. */
export function tokenF1(prediction: string, references: string | readonly string[]): number {
  const refs = typeof references === 'string' ? [references] : references;
  return bestOver(refs, (r) => tokenF1Single(prediction, r));
}
