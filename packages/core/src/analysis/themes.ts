import { mulberry32 } from '../random.js';

/**
 * Themes in free-text feedback (negative comments, corrections): TF-IDF vectors, spherical
 * k-means with seeded k-means++ starts, each theme named by its heaviest terms and shown with
 * the comments nearest its centre. Deterministic for a given seed.
 */

const stopWords = new Set(
  `a about above after again against all am an and any are as at be because been before being below between both but by
  can could did do does doing down during each few for from further had has have having he her here hers herself him himself his how
  i if in into is it its itself just me more most my myself no nor not now of off on once only or other our ours ourselves out over own
  same she should so some such than that the their theirs them themselves then there these they this those through to too under until
  up very was we were what when where which while who whom why will with would you your yours yourself yourselves also get got really
  please thanks thank ok okay one even still much many way`.split(/\s+/),
);

/**
 * A token without its leading and trailing apostrophes. (The regex `/^'+|'+$/g` did this in time
 * quadratic in a run of apostrophes inside a token: 9 s on 50k of them.)
 */
function trimQuotes(t: string): string {
  let start = 0;
  let end = t.length;
  while (start < end && t[start] === "'") start++;
  while (end > start && t[end - 1] === "'") end--;
  return t.slice(start, end);
}

export function tokenize(text: string): string[] {
  return text
    .toLowerCase()
    .normalize('NFKC')
    .split(/[^\p{L}\p{N}']+/u)
    .map(trimQuotes)
    .map((t) => (t.length > 3 && t.endsWith('s') && !t.endsWith('ss') ? t.slice(0, -1) : t))
    .filter((t) => t.length > 2 && !stopWords.has(t) && !/^\d+$/.test(t));
}

export interface ThemeInput {
  id: string;
  text: string;
}

export interface Theme {
  /** The theme's heaviest terms, e.g. "wrong, refund, policy". */
  label: string;
  terms: string[];
  count: number;
  share: number;
  /** Comments nearest the theme's centre. */
  examples: ThemeInput[];
  ids: string[];
}

type SparseVector = Map<number, number>;

function dot(a: SparseVector, dense: Float64Array): number {
  let s = 0;
  for (const [k, v] of a) s += v * dense[k]!;
  return s;
}

/** L2-normalized TF-IDF vectors over the vocabulary of terms seen in at least `minDf` texts. */
function vectorize(texts: readonly string[], minDf: number): { vectors: SparseVector[]; vocab: string[] } {
  const tokens = texts.map(tokenize);
  const df = new Map<string, number>();
  for (const ts of tokens) for (const t of new Set(ts)) df.set(t, (df.get(t) ?? 0) + 1);
  const vocab = [...df.entries()]
    .filter(([, n]) => n >= minDf)
    .map(([t]) => t)
    .sort();
  const index = new Map(vocab.map((t, i) => [t, i]));
  const n = texts.length;
  const vectors = tokens.map((ts) => {
    const v: SparseVector = new Map();
    for (const t of ts) {
      const i = index.get(t);
      if (i !== undefined) v.set(i, (v.get(i) ?? 0) + 1);
    }
    let norm = 0;
    for (const [i, tf] of v) {
      const w = (1 + Math.log(tf)) * Math.log((1 + n) / (1 + df.get(vocab[i]!)!) + 1);
      v.set(i, w);
      norm += w * w;
    }
    norm = Math.sqrt(norm) || 1;
    for (const [i, w] of v) v.set(i, w / norm);
    return v;
  });
  return { vectors, vocab };
}

function centroid(members: SparseVector[], dims: number): Float64Array {
  const c = new Float64Array(dims);
  for (const m of members) for (const [k, v] of m) c[k]! += v;
  let norm = 0;
  for (const x of c) norm += x * x;
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < dims; i++) c[i]! /= norm;
  return c;
}

export interface ThemeOptions {
  /** Number of themes; by default about sqrt(n / 2), at most 10. */
  k?: number;
  seed?: number;
  examplesPerTheme?: number;
  termsPerTheme?: number;
}

export function findThemes(inputs: readonly ThemeInput[], options: ThemeOptions = {}): Theme[] {
  const usable = inputs.filter((i) => tokenize(i.text).length > 0);
  if (usable.length === 0) return [];
  const { vectors, vocab } = vectorize(
    usable.map((i) => i.text),
    usable.length >= 20 ? 2 : 1,
  );
  const dims = vocab.length;
  const k = Math.max(
    1,
    Math.min(options.k ?? Math.min(10, Math.round(Math.sqrt(usable.length / 2))), usable.length),
  );
  const rand = mulberry32(options.seed ?? 1);

  // k-means++ seeding on cosine distance.
  const centres: Float64Array[] = [centroid([vectors[Math.floor(rand() * vectors.length)]!], dims)];
  while (centres.length < k) {
    const d = vectors.map((v) => Math.max(0, 1 - Math.max(...centres.map((c) => dot(v, c)))) ** 2);
    const total = d.reduce((a, b) => a + b, 0);
    if (total === 0) break;
    let r = rand() * total;
    let pick = 0;
    while (r > d[pick]! && pick < d.length - 1) r -= d[pick++]!;
    centres.push(centroid([vectors[pick]!], dims));
  }
  let assignment = new Int32Array(vectors.length).fill(-1);
  for (let iter = 0; iter < 50; iter++) {
    const next = Int32Array.from(vectors, (v) => {
      let best = 0;
      let bestSim = Number.NEGATIVE_INFINITY;
      centres.forEach((c, j) => {
        const s = dot(v, c);
        if (s > bestSim) {
          bestSim = s;
          best = j;
        }
      });
      return best;
    });
    const changed = next.some((a, i) => a !== assignment[i]);
    assignment = next;
    if (!changed) break;
    centres.forEach((_, j) => {
      const members = vectors.filter((_, i) => assignment[i] === j);
      if (members.length) centres[j] = centroid(members, dims);
    });
  }

  const themes: Theme[] = centres.map((c, j) => {
    const members = usable.map((u, i) => ({ u, i })).filter(({ i }) => assignment[i] === j);
    const terms = [...c.keys()]
      .sort((a, b) => c[b]! - c[a]!)
      .slice(0, options.termsPerTheme ?? 3)
      .filter((t) => c[t]! > 0)
      .map((t) => vocab[t]!);
    const nearest = [...members].sort((a, b) => dot(vectors[b.i]!, c) - dot(vectors[a.i]!, c));
    return {
      label: terms.join(', '),
      terms,
      count: members.length,
      share: members.length / usable.length,
      examples: nearest.slice(0, options.examplesPerTheme ?? 3).map(({ u }) => u),
      ids: members.map(({ u }) => u.id),
    };
  });
  return themes.filter((t) => t.count > 0).sort((a, b) => b.count - a.count);
}
