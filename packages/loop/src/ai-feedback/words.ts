/**
 * A word model of what people like, fitted on the few dozen answers a low rating rate leaves:
 * logistic regression on which words and word pairs an answer contains, with an L2 penalty (the
 * words outnumber the answers). Pure functions; `labelWithRatingsModel` (label.ts) scores with it.
 */

/** The lower-cased words and adjacent word pairs of a text, each once. */
export function wordFeatures(text: string): string[] {
  const words = text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
  const out = new Set(words);
  for (let i = 1; i < words.length; i++) out.add(`${words[i - 1]} ${words[i]}`);
  return [...out];
}

export interface WordModelOptions {
  /** L2 penalty on the weights (per example): larger keeps rarer words from deciding alone. */
  l2: number;
  /** Full-batch gradient steps. */
  iterations: number;
}

/**
 * Fits P(liked | words) = sigmoid(b + sum of the weights of its features), each feature scaled by
 * 1 / sqrt(features in the answer) so long answers do not dominate, by gradient descent with
 * per-weight step sizes (Adagrad). Returns the log-odds for any text; a feature never seen
 * counts 0. Deterministic: same examples, same model.
 */
export function fitWordModel(
  examples: readonly { text: string; up: boolean }[],
  o: WordModelOptions,
): (text: string) => number {
  const index = new Map<string, number>();
  const docs = examples.map((e) => {
    const f = wordFeatures(e.text);
    for (const w of f) if (!index.has(w)) index.set(w, index.size);
    return { ids: f.map((w) => index.get(w)!), x: 1 / Math.sqrt(Math.max(1, f.length)), y: e.up ? 1 : 0 };
  });
  const w = new Float64Array(index.size);
  const g2 = new Float64Array(index.size);
  const n = Math.max(1, docs.length);
  const up = docs.filter((d) => d.y === 1).length;
  // The intercept starts at the base rate's log-odds (smoothed) and stays there: the words explain the rest.
  const bias = Math.log((up + 0.5) / (docs.length - up + 0.5));
  const grad = new Float64Array(index.size);
  for (let it = 0; it < o.iterations; it++) {
    grad.fill(0);
    for (const d of docs) {
      let z = bias;
      for (const i of d.ids) z += w[i]! * d.x;
      const err = 1 / (1 + Math.exp(-z)) - d.y;
      for (const i of d.ids) grad[i]! += (err * d.x) / n;
    }
    for (let i = 0; i < w.length; i++) {
      const gi = grad[i]! + (o.l2 * w[i]!) / n;
      g2[i]! += gi * gi;
      w[i]! -= (0.5 * gi) / (Math.sqrt(g2[i]!) + 1e-8);
    }
  }
  return (text) => {
    const f = wordFeatures(text);
    const x = 1 / Math.sqrt(Math.max(1, f.length));
    let z = bias;
    for (const word of f) {
      const i = index.get(word);
      if (i !== undefined) z += w[i]! * x;
    }
    return z;
  };
}
