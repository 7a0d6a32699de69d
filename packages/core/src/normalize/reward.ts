import {
  type Feedback,
  type FeedbackKind,
  feedbackKind,
  type ScalarFeedbackKind,
} from '../feedback-kinds.js';
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

const none = (reason: string): RewardOutcome => ({ reward: null, weight: 0, reason });

/**
 * The reward in [-1, 1] of one stored feedback event (see RewardMapping for the rules), with the
 * evidence weight of its kind, by the kind's descriptor (feedback-kinds.ts). Comments, corrections
 * and preferences carry no scalar reward: corrections and preferences become pairwise evidence
 * (pairwiseEvidence), comments go to analysis.
 */
export function normalizeFeedback(row: FeedbackValue, context: NormalizationContext = {}): RewardOutcome {
  const configs = context.scoreConfigs ?? defaultConfigMap;
  const mapping = context.mapping ?? defaultRewardMapping;
  const rule = feedbackKind(row.kind).reward;
  if ('none' in rule) return none(rule.none);
  const reward = rule.of(row, { configs, mapping });
  if (typeof reward === 'string') return none(reward);
  if (!Number.isFinite(reward)) return none('reward is not a finite number');
  return { reward, weight: mapping.evidenceWeight[row.kind as ScalarFeedbackKind] };
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
