import type { Feedback, FeedbackKind, ImplicitSignal } from '../schemas/feedback.js';
import { implicitSignals } from '../schemas/feedback.js';
import { defaultScoreConfigs, type ScoreConfig } from '../schemas/score-config.js';
import { defaultRewardMapping, type RewardMapping } from './reward-mapping.js';

/** The part of a feedback event its reward depends on. */
export type FeedbackValue = Pick<Feedback, 'kind' | 'value' | 'label' | 'data'>;

/** What normalization needs besides the event: the project's scales and the mapping. */
export interface NormalizationContext {
  /** Score configs by name; the built-in defaults (1-5 stars, three criteria) when absent. */
  scoreConfigs?: ReadonlyMap<string, ScoreConfig>;
  mapping?: RewardMapping;
}

/** The reward of one event, or why it has none (kept so that nothing is dropped silently). */
export type RewardOutcome = { reward: number; weight: number } | { reward: null; weight: 0; reason: string };

/** A feedback event that carries a scalar reward, ready for calibration. */
export interface NormalizedReward {
  feedbackId: string;
  interactionId: string;
  raterId: string;
  kind: FeedbackKind;
  /** In [-1, 1]. */
  reward: number;
  /** Evidence weight of the event's kind (RewardMapping.evidenceWeight). */
  weight: number;
}

export interface SkippedFeedback {
  feedbackId: string;
  kind: FeedbackKind;
  reason: string;
}

const defaultConfigMap: ReadonlyMap<string, ScoreConfig> = new Map(
  defaultScoreConfigs.map((c) => [c.name, c]),
);

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
  mapping: RewardMapping['implicit'] = defaultRewardMapping.implicit,
): number {
  const base = mapping[signal];
  if (magnitude === null || !mapping.scaleByMagnitude) return base;
  return base * Math.min(1, Math.max(0, magnitude));
}

const isImplicitSignal = (s: string | null): s is ImplicitSignal =>
  s !== null && (implicitSignals as readonly string[]).includes(s);

const none = (reason: string): RewardOutcome => ({ reward: null, weight: 0, reason });

function starsReward(row: FeedbackValue, configs: ReadonlyMap<string, ScoreConfig>): number | string {
  const scaleName = row.label ?? 'stars';
  const scale = configs.get(scaleName);
  if (scale?.usage !== 'stars') return `unknown star scale "${scaleName}"`;
  if (scale.dataType !== 'numeric' || scale.min === null || scale.max === null || scale.min >= scale.max)
    return `star scale "${scaleName}" has no numeric min..max`;
  if (row.value === null) return 'stars event without a value';
  return scaleToReward(row.value, scale.min, scale.max);
}

function thumbsReward(row: FeedbackValue, mapping: RewardMapping): number | string {
  // The stored row carries the direction both as value (1/-1) and label (up/down).
  const up = row.value !== null ? row.value > 0 : row.label === 'up';
  if (row.value === null && row.label !== 'up' && row.label !== 'down')
    return 'thumbs event without a direction';
  return up ? mapping.thumbs.up : mapping.thumbs.down;
}

/**
 * The reward in [-1, 1] of one stored feedback event (see RewardMapping for the rules), with the
 * evidence weight of its kind. Comments, corrections and preferences carry no scalar reward:
 * corrections and preferences become pairwise evidence (pairwiseEvidence), comments go to analysis.
 */
export function normalizeFeedback(row: FeedbackValue, context: NormalizationContext = {}): RewardOutcome {
  const configs = context.scoreConfigs ?? defaultConfigMap;
  const mapping = context.mapping ?? defaultRewardMapping;
  let reward: number | string;
  switch (row.kind) {
    case 'thumbs':
      reward = thumbsReward(row, mapping);
      break;
    case 'stars':
      reward = starsReward(row, configs);
      break;
    case 'criteria': {
      const scores = row.data?.['scores'];
      if (!scores || typeof scores !== 'object') return none('criteria event without scores');
      const combined = criteriaReward(scores as Record<string, unknown>, configs, mapping.criteria.weights);
      reward = combined ?? 'no scored criterion has a config and a positive weight';
      break;
    }
    case 'implicit':
      if (!isImplicitSignal(row.label)) return none(`unknown implicit signal "${row.label}"`);
      reward = implicitReward(row.label, row.value, mapping.implicit);
      break;
    case 'correction':
    case 'preference':
      return none(`${row.kind} is pairwise evidence, not a scalar reward`);
    case 'comment':
      return none('comment carries no reward');
  }
  if (typeof reward === 'string') return none(reward);
  if (!Number.isFinite(reward)) return none('reward is not a finite number');
  return { reward, weight: mapping.evidenceWeight[row.kind] };
}

/**
 * Rewards of many events. Only the current event of each (interaction, rater, kind) counts unless
 * `includeHistory`; everything without a reward is listed in `skipped` with its reason.
 */
export function normalizeFeedbackRows(
  rows: Iterable<Feedback>,
  context: NormalizationContext & { includeHistory?: boolean } = {},
): { rewards: NormalizedReward[]; skipped: SkippedFeedback[] } {
  const rewards: NormalizedReward[] = [];
  const skipped: SkippedFeedback[] = [];
  for (const row of rows) {
    if (!row.current && !context.includeHistory) continue;
    const outcome = normalizeFeedback(row, context);
    if (outcome.reward === null) {
      skipped.push({ feedbackId: row.id, kind: row.kind, reason: outcome.reason });
      continue;
    }
    rewards.push({
      feedbackId: row.id,
      interactionId: row.interactionId,
      raterId: row.raterId,
      kind: row.kind,
      reward: outcome.reward,
      weight: outcome.weight,
    });
  }
  return { rewards, skipped };
}
