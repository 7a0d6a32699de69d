import { FeedbackInput, parseInput } from '@ratchet/core';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import { EndpointSpec, type EndpointSpecInput, mapConcurrent, rewardScores } from '../eval/client.js';

export const AiLabelOptions = z.strictObject({
  /** The reward model's `/v1/score` endpoint and name. */
  rewardModel: EndpointSpec,
  /** Unrated interactions to look at, newest first. */
  limit: z.number().int().positive().max(100_000).default(500),
  /** Only route's interactions, if given. */
  route: z.string().min(1).optional(),
  /** Labels only where P(good) is at least this far from 1/2 (0.2: p <= 0.3 or p >= 0.7). */
  minConfidence: z.number().min(0).max(1).default(0.4),
  /** The reward model's score at which P(good) is 1/2 (its decision threshold). */
  threshold: z.number().default(0),
  batchSize: z.number().int().positive().max(256).default(16),
});
export type AiLabelOptions = z.input<typeof AiLabelOptions>;

export interface AiLabelReport {
  looked: number;
  labeled: number;
  up: number;
  down: number;
  /** Too close to the threshold to call. */
  unsure: number;
  rater: string;
}

/**
 * AI feedback: the reward model labels interactions nobody rated. Each label is a thumbs event
 * with source `judge`, rater `judge:<model>`, and its confidence and score in the metadata; only
 * confident calls are written. Calibration then treats the judge as one more rater: it learns its
 * bias and reliability from the items people also rated, and its labels count for less than
 * people's (`sourceWeight.judge` of the reward mapping), so they fill gaps without outvoting anyone.
 */
export async function labelWithRewardModel(
  store: Store,
  projectId: string,
  input: { rewardModel: EndpointSpecInput } & Omit<AiLabelOptions, 'rewardModel'>,
): Promise<AiLabelReport> {
  const o = parseInput(AiLabelOptions, input, 'aiFeedback');
  const rater = `judge:${o.rewardModel.model}`;
  const unrated = await store.dashboard.unratedRecent(projectId, {
    limit: o.limit,
    ...(o.route ? { route: o.route } : {}),
  });
  const interactions = await store.interactions.getMany(
    projectId,
    unrated.map((u) => u.interactionId),
  );
  const batches: (typeof interactions)[] = [];
  for (let i = 0; i < interactions.length; i += o.batchSize)
    batches.push(interactions.slice(i, i + o.batchSize));
  const scored = (
    await mapConcurrent(batches, 2, async (batch) => {
      const scores = await rewardScores(
        o.rewardModel,
        batch.map((i) => [...i.messages, i.output]),
      );
      return batch.map((interaction, k) => ({ interaction, score: scores[k]! }));
    })
  ).flat();

  const report: AiLabelReport = { looked: scored.length, labeled: 0, up: 0, down: 0, unsure: 0, rater };
  const events = [];
  for (const { interaction, score } of scored) {
    const p = 1 / (1 + Math.exp(-(score - o.threshold)));
    const confidence = Math.abs(2 * p - 1);
    if (confidence < o.minConfidence) {
      report.unsure++;
      continue;
    }
    const up = p >= 0.5;
    if (up) report.up++;
    else report.down++;
    events.push(
      parseInput(FeedbackInput, {
        kind: 'thumbs',
        value: up ? 'up' : 'down',
        interactionId: interaction.id,
        raterId: rater,
        source: 'judge',
        // One label per interaction and model, however often this runs.
        idempotencyKey: `${rater}:${interaction.id}`,
        metadata: { confidence: Number(confidence.toFixed(4)), score, model: o.rewardModel.model },
      }),
    );
  }
  for (let i = 0; i < events.length; i += 500) {
    const written = await store.feedback.insert(projectId, events.slice(i, i + 500));
    report.labeled += written.filter((w) => w.created).length;
  }
  return report;
}
