/**
 * Exact and near-duplicate detection: MinHash signatures over word shingles, banded into an LSH
 * index so that only likely pairs are compared, then verified on the estimated Jaccard
 * similarity. Linear in the number of texts.
 */

import { mulberry32Uint32 } from '../random.js';

export interface DedupOptions {
  /** Jaccard similarity (0..1) at or above which two texts are near-duplicates. */
  threshold?: number;
  /** Words per shingle. */
  shingleSize?: number;
  /** Hash functions in a signature (bands x rows). */
  numHashes?: number;
  seed?: number;
}

export function normalizeForDedup(text: string): string {
  return text
    .toLowerCase()
    .normalize('NFKC')
    .replace(/[^\p{L}\p{N}\s]/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

/** 32-bit FNV-1a, then a murmur finalizer for better avalanche on short strings. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function shingles(text: string, size: number): Set<number> {
  const words = normalizeForDedup(text).split(' ').filter(Boolean);
  const out = new Set<number>();
  if (words.length < size) {
    if (words.length) out.add(hash32(words.join(' ')));
    return out;
  }
  for (let i = 0; i + size <= words.length; i++) out.add(hash32(words.slice(i, i + size).join(' ')));
  return out;
}

/**
 * A family of hash functions h_i(x) = mix(a_i * x + b_i) in 32-bit integer arithmetic (odd a_i),
 * each seeded independently: fast enough for millions of shingles, and min-wise enough for MinHash.
 */
export class MinHasher {
  private readonly a: Uint32Array;
  private readonly b: Uint32Array;

  constructor(
    readonly numHashes = 128,
    seed = 1,
  ) {
    const rand = mulberry32Uint32(seed);
    this.a = Uint32Array.from({ length: numHashes }, () => rand() | 1);
    this.b = Uint32Array.from({ length: numHashes }, () => rand());
  }

  signature(set: Set<number>): Uint32Array {
    const sig = new Uint32Array(this.numHashes).fill(0xffffffff);
    for (const x of set) {
      for (let i = 0; i < this.numHashes; i++) {
        let h = (Math.imul(this.a[i]!, x) + this.b[i]!) | 0;
        h ^= h >>> 15;
        h = Math.imul(h, 0x2c1b3c6d);
        h ^= h >>> 12;
        const u = h >>> 0;
        if (u < sig[i]!) sig[i] = u;
      }
    }
    return sig;
  }
}

export function estimatedJaccard(a: Uint32Array, b: Uint32Array): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
}

/** Bands x rows for a threshold: the LSH S-curve's midpoint (1/b)^(1/r) closest to it. */
export function lshBands(numHashes: number, threshold: number): { bands: number; rows: number } {
  let best = { bands: numHashes, rows: 1, err: Number.POSITIVE_INFINITY };
  for (let rows = 1; rows <= numHashes; rows++) {
    if (numHashes % rows) continue;
    const bands = numHashes / rows;
    // Aim a little below the threshold so true pairs near it are still candidates.
    const err = Math.abs((1 / bands) ** (1 / rows) - threshold * 0.9);
    if (err < best.err) best = { bands, rows, err };
  }
  return { bands: best.bands, rows: best.rows };
}

class UnionFind {
  private readonly parent: Int32Array;
  constructor(n: number) {
    this.parent = Int32Array.from({ length: n }, (_, i) => i);
  }
  find(x: number): number {
    while (this.parent[x] !== x) {
      this.parent[x] = this.parent[this.parent[x]!]!;
      x = this.parent[x]!;
    }
    return x;
  }
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.parent[Math.max(ra, rb)] = Math.min(ra, rb);
  }
}

export interface DuplicateGroups {
  /** For each text, the index of the first text of its group (itself when it leads or is unique). */
  representative: number[];
  /** How each non-leading text was matched. */
  reason: ({ kind: 'exact' | 'near'; of: number; similarity: number } | null)[];
}

/** Groups texts that are exact (after normalization) or near duplicates; the earliest index leads. */
export function findDuplicates(texts: readonly string[], options: DedupOptions = {}): DuplicateGroups {
  const threshold = options.threshold ?? 0.8;
  const hasher = new MinHasher(options.numHashes ?? 128, options.seed ?? 1);
  const { bands, rows } = lshBands(hasher.numHashes, threshold);
  const uf = new UnionFind(texts.length);
  const reason: DuplicateGroups['reason'] = texts.map(() => null);

  const exact = new Map<string, number>();
  const signatures: (Uint32Array | undefined)[] = [];
  texts.forEach((t, i) => {
    const norm = normalizeForDedup(t);
    const first = exact.get(norm);
    if (first !== undefined) {
      uf.union(first, i);
      reason[i] = { kind: 'exact', of: first, similarity: 1 };
      return;
    }
    exact.set(norm, i);
    signatures[i] = hasher.signature(shingles(t, options.shingleSize ?? 3));
  });

  for (let band = 0; band < bands; band++) {
    const buckets = new Map<string, number[]>();
    signatures.forEach((sig, i) => {
      if (!sig) return;
      const key = sig.subarray(band * rows, (band + 1) * rows).join(',');
      const list = buckets.get(key);
      if (list) list.push(i);
      else buckets.set(key, [i]);
    });
    for (const list of buckets.values()) {
      for (let k = 1; k < list.length; k++) {
        const i = list[k]!;
        for (let j = 0; j < k; j++) {
          const other = list[j]!;
          if (uf.find(i) === uf.find(other)) continue;
          const sim = estimatedJaccard(signatures[i]!, signatures[other]!);
          if (sim >= threshold) {
            uf.union(other, i);
            if (!reason[i] || reason[i]!.of > other) reason[i] = { kind: 'near', of: other, similarity: sim };
          }
        }
      }
    }
  }
  const representative = texts.map((_, i) => uf.find(i));
  representative.forEach((rep, i) => {
    if (rep === i) reason[i] = null;
  });
  return { representative, reason };
}
