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
  const interactions = await unratedInteractions(store, projectId, o);
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

  const calls = scored.map(({ interaction, score }): Call => {
    const p = 1 / (1 + Math.exp(-(score - o.threshold)));
    const confidence = Math.abs(2 * p - 1);
    if (confidence < o.minConfidence) return { interaction, label: null };
    return { interaction, label: { up: p >= 0.5, confidence, metadata: { score } } };
  });
  return writeLabels(store, projectId, o.rewardModel.model, calls);
}

/** The unrated interactions a labeller looks at: newest first, of one route if given. */
async function unratedInteractions(
  store: Store,
  projectId: string,
  o: { limit: number; route?: string | undefined },
): Promise<Interaction[]> {
  const unrated = await store.dashboard.unratedRecent(projectId, {
    limit: o.limit,
    ...(o.route ? { route: o.route } : {}),
  });
  return store.interactions.getMany(
    projectId,
    unrated.map((u) => u.interactionId),
  );
}

/** A labeller's call on one interaction; null when it was not confident enough to label it. */
interface Call {
  interaction: Interaction;
  label: { up: boolean; confidence: number; metadata: Record<string, unknown> } | null;
}

/**
 * Writes the confident calls as thumbs from source `judge`, rater `judge:<model>`, with the
 * confidence, the model and the labeller's own metadata; counts every call in the report.
 */
async function writeLabels(
  store: Store,
  projectId: string,
  model: string,
  calls: Call[],
): Promise<AiLabelReport> {
  const rater = `judge:${model}`;
  const report: AiLabelReport = { looked: calls.length, labeled: 0, up: 0, down: 0, unsure: 0, rater };
  const events: z.output<typeof FeedbackInput>[] = [];
  for (const { interaction, label } of calls) {
    if (!label) {
      report.unsure++;
      continue;
    }
    if (label.up) report.up++;
    else report.down++;
    events.push(
      parseInput(FeedbackInput, {
        kind: 'thumbs',
        value: label.up ? 'up' : 'down',
        interactionId: interaction.id,
        raterId: rater,
        source: 'judge',
        // One label per interaction and model, however often this runs.
        idempotencyKey: `${rater}:${interaction.id}`,
        metadata: { confidence: Number(label.confidence.toFixed(4)), ...label.metadata, model },
      }),
    );
  }
  for (let i = 0; i < events.length; i += 500) {
    const written = await store.feedback.insert(projectId, events.slice(i, i + 500));
    report.labeled += written.filter((w) => w.created).length;
  }
  return report;
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
  const interactions = await unratedInteractions(store, projectId, o);
  const calls = await mapConcurrent(interactions, o.concurrency, async (interaction): Promise<Call> => {
    const votes = await judgeVotes(o, interaction);
    const good = votes.filter(Boolean).length;
    // Missing votes count against confidence: 2 of 3 calls agreeing, 1 failing, is not 2 of 2.
    const confidence = Math.abs(2 * good - votes.length) / o.samples;
    if (votes.length === 0 || confidence < o.minConfidence) return { interaction, label: null };
    const metadata = { votes: { good, bad: votes.length - good, asked: o.samples } };
    return { interaction, label: { up: 2 * good > votes.length, confidence, metadata } };
  });
  return writeLabels(store, projectId, o.judge.model, calls);
}
