/**
 * The one seeded PRNG of the code base (Thompson sampling, simulated users, synthetic data): the same seed gives the same draws on
 * every machine, so bandit weights and tests are reproducible (Math.random cannot be seeded).
 * sfc32 (PractRand): 128-bit state, passes BigCrush, a few nanoseconds a draw.
 */
export class SeededRandom {
  private a = 0x9e3779b9;
  private b = 0x243f6a88;
  private c = 0xb7e15162;
  private d: number;
  private spareNormal: number | null = null;

  constructor(seed: number) {
    // Mix both halves of a seed up to 2^53 into the state.
    this.d = seed >>> 0;
    this.a ^= Math.floor(seed / 4294967296) >>> 0;
    for (let i = 0; i < 15; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1), 53 random bits. */
  uniform(): number {
    return (this.nextUint32() * 2097152 + (this.nextUint32() >>> 11)) / 9007199254740992;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** `k` distinct integers from [0, n), for k much smaller than n. */
  sampleDistinct(n: number, k: number): number[] {
    const picked = new Set<number>();
    while (picked.size < Math.min(k, n)) picked.add(this.int(n));
    return [...picked];
  }

  /** One element of a non-empty array, uniformly. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty array');
    return items[this.int(items.length)]!;
  }

  /** True with probability p. */
  bernoulli(p: number): boolean {
    return this.uniform() < p;
  }

  /** Normal (Box-Muller; the second value of each pair is kept for the next call). */
  normal(mean = 0, sd = 1): number {
    if (this.spareNormal !== null) {
      const z = this.spareNormal;
      this.spareNormal = null;
      return mean + sd * z;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const radius = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = radius * Math.sin(2 * Math.PI * v);
    return mean + sd * radius * Math.cos(2 * Math.PI * v);
  }

  /** Gamma(shape, 1) by Marsaglia and Tsang (2000), boosted for shape < 1. */
  gamma(shape: number): number {
    if (!(shape > 0)) throw new Error(`gamma shape must be > 0 (got ${shape})`);
    if (shape < 1) {
      let u = 0;
      while (u === 0) u = this.uniform();
      return this.gamma(shape + 1) * u ** (1 / shape);
    }
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = this.uniform();
      if (u < 1 - 0.0331 * x ** 4) return d * v;
      if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
    }
  }

  /** Beta(a, b) as a ratio of gammas. */
  beta(a: number, b: number): number {
    const x = this.gamma(a);
    return x / (x + this.gamma(b));
  }
}

/**
 * Mulberry32 (Tommy Ettinger, public domain): 32-bit state, one multiply-xorshift round a draw.
 * Weaker than SeededRandom, but the demo's sample data, EDA, MinHash, theme starts and two
 * benchmarks were recorded with its sequences, so it stays under its own name (changing the
 * generator would change their numbers). Each call of the returned function gives a uint32.
 */
export function mulberry32Uint32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Mulberry32 as uniform draws in [0, 1) (32 random bits each). */
export function mulberry32(seed: number): () => number {
  const next = mulberry32Uint32(seed);
  return () => next() / 4294967296;
}
