import type { ImplicitSignal } from '../schemas/feedback.js';
import type { ScoreConfig } from '../schemas/score-config.js';

/** Rewards of the implicit signals (RewardMapping.implicit), with whether a magnitude scales them. */
export type ImplicitRewards = Readonly<Record<ImplicitSignal, number>> & { scaleByMagnitude: boolean };

/** RewardMapping's defaults for implicit signals (kept here, where they apply, without a circle). */
export const defaultImplicitRewards: ImplicitRewards = {
  copied: 0.5,
  regenerated: -0.5,
  edited: -0.25,
  abandoned: -0.5,
  scaleByMagnitude: true,
};

const clampReward = (x: number): number => Math.min(1, Math.max(-1, x));

/** Linear map of a value on min..max to [-1, 1] (min -> -1, midpoint -> 0, max -> +1), clamped. */
export function scaleToReward(value: number, min: number, max: number): number {
  return clampReward((2 * (value - min)) / (max - min) - 1);
}

/** Category `index` of `count` ordered categories (worst first) to [-1, 1], evenly spaced. */
export function categoryToReward(index: number, count: number): number {
  return (2 * index) / (count - 1) - 1;
}

/** One criterion score on its ScoreConfig's scale to [-1, 1]; null when it does not fit the scale. */
export function criterionReward(score: number | string, config: ScoreConfig): number | null {
  if (config.dataType === 'categorical') {
    const index = typeof score === 'string' ? (config.categories?.indexOf(score) ?? -1) : -1;
    return index < 0 || !config.categories ? null : categoryToReward(index, config.categories.length);
  }
  if (typeof score !== 'number' || config.min === null || config.max === null) return null;
  return scaleToReward(score, config.min, config.max);
}

/**
 * Weighted mean of the per-criterion rewards over the criteria present. Criteria without a config,
 * with a zero weight, or with an off-scale score do not count; null when none counts.
 */
export function criteriaReward(
  scores: Readonly<Record<string, unknown>>,
  configs: ReadonlyMap<string, ScoreConfig>,
  weights: Readonly<Record<string, number>> = {},
): number | null {
  let weighted = 0;
  let totalWeight = 0;
  for (const [name, score] of Object.entries(scores)) {
    const config = configs.get(name);
    if (config?.usage !== 'criterion') continue;
    if (typeof score !== 'number' && typeof score !== 'string') continue;
    const reward = criterionReward(score, config);
    const weight = weights[name] ?? config.weight;
    if (reward === null || weight <= 0) continue;
    weighted += weight * reward;
    totalWeight += weight;
  }
  return totalWeight > 0 ? weighted / totalWeight : null;
}

/** Reward of an implicit signal; the optional magnitude scales it (clamped to 0..1) when enabled. */
export function implicitReward(
  signal: ImplicitSignal,
  magnitude: number | null,
  mapping: ImplicitRewards = defaultImplicitRewards,
): number {
  const base = mapping[signal];
  if (magnitude === null || !mapping.scaleByMagnitude) return base;
  return base * Math.min(1, Math.max(0, magnitude));
}
