/**
 * Perplexity from per-token log-probabilities (natural log, as inference servers return them in
 * `logprobs`): exp of the mean negative log-likelihood per token.
 */

function assertLogProbabilities(values: readonly number[]): void {
  for (const v of values) {
    if (!(v <= 0)) throw new Error(`a log-probability must be <= 0 (got ${v})`);
  }
}

/** Perplexity of one sequence; NaN for an empty one. */
export function perplexity(tokenLogProbs: readonly number[]): number {
  return corpusPerplexity([tokenLogProbs]);
}

/**
 * Perplexity of a set of sequences as one corpus: tokens are pooled, so long answers weigh more
 * (the usual definition for held-out text; the mean of per-sequence perplexities is a different,
 * outlier-sensitive number). NaN when there are no tokens.
 */
export function corpusPerplexity(sequences: readonly (readonly number[])[]): number {
  let sum = 0;
  let count = 0;
  for (const seq of sequences) {
    assertLogProbabilities(seq);
    for (const lp of seq) sum += lp;
    count += seq.length;
  }
  return count === 0 ? Number.NaN : Math.exp(-sum / count);
}
