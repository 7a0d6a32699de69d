import { z } from 'zod';
import { feedbackKindRegistry, type ScalarFeedbackKind, scalarFeedbackKinds } from '../feedback-kinds.js';
import { Weight } from '../schemas/common.js';
import { defaultImplicitRewards } from './scales.js';

const Reward = z.number().min(-1).max(1);

const evidenceWeightShape = Object.fromEntries(
  scalarFeedbackKinds.map((k) => {
    const reward = feedbackKindRegistry[k].reward;
    return [k, Weight.default('evidenceWeight' in reward ? reward.evidenceWeight : 1)];
  }),
) as Record<ScalarFeedbackKind, z.ZodDefault<typeof Weight>>;

/**
 * How each kind of feedback becomes one reward in [-1, 1]. Every field has a default, so `{}` is a
 * complete mapping; a project overrides only what it wants to change.
 *
 * - thumbs: `up` and `down` rewards (default +1 and -1).
 * - stars: linear on the scale's ScoreConfig: min -> -1, max -> +1 (e.g. 1..5 stars: 1 -> -1,
 *   3 -> 0, 5 -> +1). Not configurable here; change the scale's min/max instead.
 * - criteria: each criterion maps like stars (numeric: linear on min..max; categorical: category
 *   index i of K categories, worst first -> 2i/(K-1) - 1), then a weighted mean over the criteria
 *   the event scored. `weights` overrides the ScoreConfig weight of a criterion.
 * - implicit: a fixed reward per signal. When the event carries a magnitude (e.g. the share of the
 *   answer that was edited) and `scaleByMagnitude` is on, the reward is multiplied by it (clamped to
 *   0..1): editing 10% of an answer is milder evidence than rewriting it.
 * - evidenceWeight: how much one event of a kind counts relative to an explicit rating when
 *   calibration combines them (implicit signals are weaker evidence of quality than a rating).
 * - sourceWeight: how much a rating counts by the rater's source (AI labels less than people's).
 * - pairwise: weights of pairwise evidence from preferences, rankings and corrections.
 */
export const RewardMapping = z.strictObject({
  thumbs: z.strictObject({ up: Reward.default(1), down: Reward.default(-1) }).prefault({}),
  criteria: z.strictObject({ weights: z.record(z.string().min(1), Weight).default({}) }).prefault({}),
  implicit: z
    .strictObject({
      copied: Reward.default(defaultImplicitRewards.copied),
      regenerated: Reward.default(defaultImplicitRewards.regenerated),
      edited: Reward.default(defaultImplicitRewards.edited),
      abandoned: Reward.default(defaultImplicitRewards.abandoned),
      scaleByMagnitude: z.boolean().default(defaultImplicitRewards.scaleByMagnitude),
    })
    .prefault({}),
  /** One weight per kind with a scalar reward; the defaults are the kinds' descriptors'. */
  evidenceWeight: z.strictObject(evidenceWeightShape).prefault({}),
  /**
   * How much a rating counts by who gave it: AI labels (source `judge`: a reward model or an LLM
   * judge) count less than people's by default, so they fill gaps where people rated nothing
   * without outvoting them. This is the human/AI feedback mix of the loop's policy.
   */
  sourceWeight: z
    .strictObject({
      user: Weight.default(1),
      annotator: Weight.default(1),
      judge: Weight.default(0.3),
      implicit: Weight.default(1),
    })
    .prefault({}),
  pairwise: z
    .strictObject({
      /** Weight of one explicit "this over that" preference. */
      preference: Weight.default(1),
      /**
       * A tie becomes two half-comparisons (each way, this weight times `preference`), the usual
       * Bradley-Terry treatment; set 0 to drop ties.
       */
      tie: Weight.default(0.5),
      /** Weight of each pair implied by a ranking. */
      ranking: Weight.default(1),
      /** `all`: every ordered pair of the ranking; `adjacent`: only neighbours (n-1 pairs). */
      rankingPairs: z.enum(['all', 'adjacent']).default('all'),
      /** Weight of "the corrected text beats the original answer". */
      correction: Weight.default(1),
    })
    .prefault({}),
});
export type RewardMappingInput = z.input<typeof RewardMapping>;
export type RewardMapping = z.output<typeof RewardMapping>;

/** The mapping every project starts with (all defaults). */
export const defaultRewardMapping: RewardMapping = RewardMapping.parse({});
