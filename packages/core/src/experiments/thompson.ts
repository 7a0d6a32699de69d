/**
 * Thompson-sampling traffic weights (optional bandit routing): each variant's weight is the
 * posterior probability that it is the best, estimated by drawing from every posterior with a
 * seeded generator, so that the same data and seed give the same weights on every server.
 * A floor keeps every variant, the control included, receiving some traffic: without one a
 * bandit can starve an arm on early noise and never learn it was wrong.
 */

import { SeededRandom } from '../random.js';
import type { BetaPrior } from './beta-binomial.js';

export type BanditArm =
  | { kind: 'proportion'; successes: number; trials: number }
  | { kind: 'mean'; n: number; mean: number; variance: number };

export interface ThompsonOptions {
  seed: number;
  /** Posterior draws per arm (default 10,000: weights to about ±0.005). */
  draws?: number;
  /** Smallest weight of any arm (default 0.05); needs arms × minWeight <= 1. */
  minWeight?: number;
  /** Beta prior for proportion arms (default uniform). */
  prior?: BetaPrior;
  /** Set false when lower values are better (default true). */
  higherIsBetter?: boolean;
}

function sampler(arm: BanditArm, rng: SeededRandom, prior: BetaPrior): () => number {
  if (arm.kind === 'proportion') {
    const a = prior.alpha + arm.successes;
    const b = prior.beta + arm.trials - arm.successes;
    return () => rng.beta(a, b);
  }
  const se = Math.sqrt(arm.variance / arm.n);
  return () => rng.normal(arm.mean, se);
}

/** An arm of means with fewer than 2 observations has no variance yet: it is explored first. */
function unexplored(arm: BanditArm): boolean {
  return arm.kind === 'mean' && arm.n < 2;
}

/** Weights summing to 1, one per arm, in the order given. */
export function thompsonSamplingWeights(arms: readonly BanditArm[], options: ThompsonOptions): number[] {
  const k = arms.length;
  if (k === 0) return [];
  const minWeight = options.minWeight ?? 0.05;
  if (minWeight * k > 1) throw new Error(`minWeight ${minWeight} is too large for ${k} arms`);
  const fresh = arms.map(unexplored);
  let wins: number[];
  if (fresh.some(Boolean)) {
    wins = fresh.map((f) => (f ? 1 : 0));
  } else {
    const rng = new SeededRandom(options.seed);
    const prior = options.prior ?? { alpha: 1, beta: 1 };
    const draw = arms.map((arm) => sampler(arm, rng, prior));
    const sign = (options.higherIsBetter ?? true) ? 1 : -1;
    wins = new Array<number>(k).fill(0);
    for (let d = 0; d < (options.draws ?? 10_000); d++) {
      let best = 0;
      let bestValue = Number.NEGATIVE_INFINITY;
      for (let i = 0; i < k; i++) {
        const v = sign * draw[i]!();
        if (v > bestValue) {
          bestValue = v;
          best = i;
        }
      }
      wins[best]!++;
    }
  }
  const total = wins.reduce((s, w) => s + w, 0);
  // Mix with the floor: every arm keeps minWeight, the rest is shared by probability of being best.
  return wins.map((w) => minWeight + (1 - k * minWeight) * (w / total));
}
