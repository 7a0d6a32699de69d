import {
  defaultGradeRubric,
  FeedbackInput,
  gradeJudgePrompt,
  type Interaction,
  parseGradeVerdict,
  parseInput,
} from '@ratchet/core';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import {
  chatCompletion,
  EndpointSpec,
  type EndpointSpecInput,
  mapConcurrent,
  rewardScores,
} from '../eval/client.js';

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
  const events: LabelEvent[] = [];
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
  report.labeled = await insertLabels(store, projectId, events);
  return report;
}

type LabelEvent = z.output<typeof FeedbackInput>;

async function insertLabels(store: Store, projectId: string, events: LabelEvent[]): Promise<number> {
  let created = 0;
  for (let i = 0; i < events.length; i += 500) {
    const written = await store.feedback.insert(projectId, events.slice(i, i + 500));
    created += written.filter((w) => w.created).length;
  }
  return created;
}

export const JudgeLabelOptions = z.strictObject({
  /** The LLM judge: any OpenAI-compatible chat endpoint and model. */
  judge: EndpointSpec,
  /** What makes an answer GOOD; the judge answers GOOD or BAD. */
  rubric: z.string().min(1).default(defaultGradeRubric),
  /** Unrated interactions to look at, newest first. */
  limit: z.number().int().positive().max(100_000).default(200),
  route: z.string().min(1).optional(),
  /**
   * Independent verdicts per answer (sampled at `temperature`): the share that agree is the
   * label's confidence, which a single deterministic verdict cannot give.
   */
  samples: z.number().int().min(1).max(9).default(3),
  temperature: z.number().min(0).max(2).default(0.7),
  /** |2 * share(GOOD) - 1| needed to write a label (with 3 samples, 1 means unanimous). */
  minConfidence: z.number().min(0).max(1).default(0.6),
  concurrency: z.number().int().positive().max(32).default(4),
});
export type JudgeLabelOptions = z.input<typeof JudgeLabelOptions>;

/** The judge's verdicts on one answer: GOOD (true), BAD (false); calls without a verdict are left out. */
async function judgeVotes(
  o: z.output<typeof JudgeLabelOptions>,
  interaction: Interaction,
): Promise<boolean[]> {
  const answer = typeof interaction.output.content === 'string' ? interaction.output.content : '';
  const prompt = gradeJudgePrompt(interaction.messages, answer, o.rubric, ['GOOD', 'BAD']);
  const votes: boolean[] = [];
  for (let k = 0; k < o.samples; k++) {
    try {
      const text = await chatCompletion(o.judge, prompt, { maxTokens: 512, temperature: o.temperature });
      const verdict = parseGradeVerdict(text, ['GOOD', 'BAD']);
      if (verdict !== null) votes.push(verdict);
    } catch {
      // A failed call is a missing vote: the others may still be confident enough.
    }
  }
  return votes;
}

/**
 * AI feedback from an LLM judge: it grades unrated answers GOOD or BAD against a rubric,
 * `samples` times each; the share of agreeing verdicts is the confidence, and only confident
 * calls are written, as thumbs from source `judge`, rater `judge:<model>`, with the votes in the
 * metadata. As with the reward model's labels, calibration learns the judge's bias and
 * reliability from answers people also rated, and its labels count at `sourceWeight.judge`.
 */
export async function labelWithJudge(
  store: Store,
  projectId: string,
  input: JudgeLabelOptions,
): Promise<AiLabelReport> {
  const o = parseInput(JudgeLabelOptions, input, 'judgeLabels');
  const rater = `judge:${o.judge.model}`;
  const unrated = await store.dashboard.unratedRecent(projectId, {
    limit: o.limit,
    ...(o.route ? { route: o.route } : {}),
  });
  const interactions = await store.interactions.getMany(
    projectId,
    unrated.map((u) => u.interactionId),
  );
  const voted = await mapConcurrent(interactions, o.concurrency, async (interaction) => ({
    interaction,
    votes: await judgeVotes(o, interaction),
  }));
  const report: AiLabelReport = { looked: voted.length, labeled: 0, up: 0, down: 0, unsure: 0, rater };
  const events: LabelEvent[] = [];
  for (const { interaction, votes } of voted) {
    const good = votes.filter(Boolean).length;
    // Missing votes count against confidence: 2 of 3 calls agreeing, 1 failing, is not 2 of 2.
    const confidence = o.samples > 0 ? Math.abs(2 * good - votes.length) / o.samples : 0;
    if (votes.length === 0 || confidence < o.minConfidence) {
      report.unsure++;
      continue;
    }
    const up = 2 * good > votes.length;
    if (up) report.up++;
    else report.down++;
    events.push(
      parseInput(FeedbackInput, {
        kind: 'thumbs',
        value: up ? 'up' : 'down',
        interactionId: interaction.id,
        raterId: rater,
        source: 'judge',
        idempotencyKey: `${rater}:${interaction.id}`,
        metadata: {
          confidence: Number(confidence.toFixed(4)),
          votes: { good, bad: votes.length - good, asked: o.samples },
          model: o.judge.model,
        },
      }),
    );
  }
  report.labeled = await insertLabels(store, projectId, events);
  return report;
}
