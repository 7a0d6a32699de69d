import {
  defaultGradeRubric,
  FeedbackInput,
  gradeJudgePrompt,
  type Interaction,
  parseGradeVerdict,
  parseInput,
  type RatedAnswer,
  similarRatedRewards,
} from '@ratchet/core';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import { contentText } from '../content-text.js';
import {
  chatCompletion,
  EndpointSpec,
  type EndpointSpecInput,
  mapConcurrent,
  rewardScores,
} from '../eval/client.js';
import { applyRule, chooseLabelRule, foldsOf, isotonicFit } from './reliability.js';
import { fitWordModel } from './words.js';

/**
 * How a labeller earns the right to label: its scores on answers people rated that it never saw
 * (the held-out set) decide. Half of them choose the thresholds, the other half certify that
 * their precision reaches `targetPrecision` with confidence 1 - `alpha` and give the precision
 * reported (see reliability.ts); only unrated answers past certified thresholds are labelled.
 */
const ReliabilityFields = {
  /** Share of labels people must agree with, at the chosen thresholds (a lower confidence bound). */
  targetPrecision: z.number().min(0).max(1).default(0.8),
  /** Error of that claim, over both sides. */
  alpha: z.number().gt(0).max(0.5).default(0.1),
  /** Share of the held-out answers that check the thresholds when `folds` is 1 (the rest choose them). */
  checkShare: z.number().gt(0).lt(1).default(0.5),
  /**
   * Cross-fitting folds: each fold of the held-out answers is labelled by thresholds the other
   * folds chose, so every one of them checks (a single split checks on `checkShare` of them).
   */
  folds: z.number().int().min(1).max(20).default(5),
  /** Rated answers the labeller trained on: never part of its held-out set. */
  trainedOn: z.array(z.string().min(1)).max(10_000_000).default([]),
  /** Held-out answers scored, newest first. */
  heldOutLimit: z.number().int().positive().max(100_000).default(2000),
  /** Also needs this calibrated confidence |2 P(liked) - 1| (isotonic fit on the held-out set). */
  minConfidence: z.number().min(0).max(1).default(0),
};

export const AiLabelOptions = z.strictObject({
  /** The reward model's `/v1/score` endpoint and name. */
  rewardModel: EndpointSpec,
  /** Unrated interactions to look at, newest first. */
  limit: z.number().int().positive().max(100_000).default(500),
  /** Only route's interactions, if given. */
  route: z.string().min(1).optional(),
  ...ReliabilityFields,
  batchSize: z.number().int().positive().max(256).default(16),
});
export type AiLabelOptions = z.input<typeof AiLabelOptions>;

/** How reliable the labeller was on the held-out answers, and the rule it labelled by. */
export interface AiLabelReliability {
  targetPrecision: number;
  /** Held-out answers scored (people rated them; the labeller never trained on them). */
  heldOut: number;
  /** Cross-fitting folds (1: one split). */
  folds: number;
  /** Of them: those that chose the thresholds, and those that checked them (all of them, cross-fitted). */
  fit: number;
  check: number;
  /** Check answers a side must label to certify the target even if all are right. */
  minCheck: number;
  /**
   * Precision on the check answers the rule labels (never on those that chose the thresholds),
   * and its exact lower confidence bound; null: labels none.
   */
  precision: number | null;
  lower: number | null;
  /** Check answers the rule labels (what `precision` is measured on). */
  checkLabeled: number;
  /** Label up at or above `upThreshold`, down at or below `downThreshold` (null: that side labels nothing). */
  upThreshold: number | null;
  downThreshold: number | null;
  /** Why a side labels nothing. */
  reasons: string[];
}

export interface AiLabelReport {
  looked: number;
  labeled: number;
  up: number;
  down: number;
  /** Too close to the thresholds to call. */
  unsure: number;
  /** Share of the unrated answers looked at that were labelled. */
  share: number;
  rater: string;
  reliability: AiLabelReliability;
}

/**
 * AI feedback: the reward model labels interactions nobody rated, where it has shown it is right:
 * its scores on held-out human-rated answers (not in `trainedOn`) set the thresholds (see
 * `calibratedCalls`). Each label is a thumbs event with source `judge`, rater `judge:<model>`, and
 * its calibrated confidence and score in the metadata. Calibration then treats the judge as one
 * more rater: it learns its bias and reliability from the items people also rated, and its labels
 * count for less than people's (`sourceWeight.judge` of the reward mapping), so they fill gaps
 * without outvoting anyone.
 */
export async function labelWithRewardModel(
  store: Store,
  projectId: string,
  input: { rewardModel: EndpointSpecInput } & Omit<AiLabelOptions, 'rewardModel'>,
): Promise<AiLabelReport> {
  const o = parseInput(AiLabelOptions, input, 'aiFeedback');
  const score = async (interactions: Interaction[]) => {
    const batches: Interaction[][] = [];
    for (let i = 0; i < interactions.length; i += o.batchSize)
      batches.push(interactions.slice(i, i + o.batchSize));
    return (
      await mapConcurrent(batches, 2, (batch) =>
        rewardScores(
          o.rewardModel,
          batch.map((i) => [...i.messages, i.output]),
        ),
      )
    ).flat();
  };
  const { calls, reliability } = await calibratedCalls(store, projectId, o, score, (s) => ({ score: s }));
  return writeLabels(store, projectId, o.rewardModel.model, calls, reliability);
}

/** A human-rated answer a labeller never trained on; `up`: its calibrated reward is above 0. */
interface HeldOutAnswer {
  interaction: Interaction;
  up: boolean;
  reward: number;
}

/**
 * Human-rated answers a labeller can be checked on, newest first: rated by people only (an
 * earlier AI label would grade the labeller against itself), with a calibrated reward that is
 * not 0 (its sign is what people think), of the route if given, and not in `trainedOn`.
 */
async function heldOutAnswers(
  store: Store,
  projectId: string,
  o: { route?: string | undefined; trainedOn: string[]; heldOutLimit: number },
): Promise<HeldOutAnswer[]> {
  const aiLabelled = new Set(
    (await store.feedback.currentOfKinds(projectId, ['thumbs', 'stars']))
      .filter((f) => f.source === 'judge')
      .map((f) => f.interactionId),
  );
  const trained = new Set(o.trainedOn);
  const rated: { id: string; createdAt: number; reward: number }[] = [];
  for await (const page of store.datasets.ratedInteractions(projectId))
    for (const r of page)
      if (r.reward !== 0 && !aiLabelled.has(r.interactionId) && !trained.has(r.interactionId))
        rated.push({ id: r.interactionId, createdAt: r.createdAt, reward: r.reward });
  rated.sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1));
  const out: HeldOutAnswer[] = [];
  for (let i = 0; i < rated.length && out.length < o.heldOutLimit; i += 500) {
    const part = rated.slice(i, i + 500);
    const byId = new Map(
      (
        await store.interactions.getMany(
          projectId,
          part.map((r) => r.id),
        )
      ).map((x) => [x.id, x]),
    );
    for (const r of part) {
      const interaction = byId.get(r.id);
      if (interaction && (!o.route || interaction.route === o.route) && out.length < o.heldOutLimit)
        out.push({ interaction, up: r.reward > 0, reward: r.reward });
    }
  }
  return out;
}

/**
 * Scores the held-out answers and the unrated ones with the labeller, chooses the labelling rule
 * from the held-out scores (chooseLabelRule: thresholds chosen on half of them, certified on the
 * other half), and calls each unrated answer past a threshold, with its calibrated confidence
 * (isotonic fit of P(people like it) on the held-out scores). A score of NaN (no verdict) is no call.
 */
async function calibratedCalls(
  store: Store,
  projectId: string,
  o: z.output<z.ZodObject<typeof ReliabilityFields>> & { route?: string | undefined; limit: number },
  score: (interactions: Interaction[], heldOut: readonly HeldOutAnswer[]) => Promise<number[]>,
  metadata: (score: number) => Record<string, unknown>,
): Promise<{ calls: Call[]; reliability: AiLabelReliability }> {
  const heldOut = await heldOutAnswers(store, projectId, o);
  const heldOutScores = await score(
    heldOut.map((h) => h.interaction),
    heldOut,
  );
  const points = heldOut
    .map((h, k) => ({ id: h.interaction.id, score: heldOutScores[k]!, up: h.up }))
    .filter((p) => Number.isFinite(p.score));
  const rule = chooseLabelRule(points, o);
  const pUp = isotonicFit(points);
  const reliability: AiLabelReliability = {
    targetPrecision: o.targetPrecision,
    heldOut: points.length,
    folds: rule.folds,
    fit: rule.fit,
    check: rule.check,
    minCheck: rule.minCheck,
    precision: rule.precision,
    lower: rule.lower,
    checkLabeled: rule.checkLabeled,
    upThreshold: rule.up?.threshold ?? null,
    downThreshold: rule.down?.threshold ?? null,
    reasons: rule.reasons,
  };
  const interactions = await unratedInteractions(store, projectId, o);
  // Nothing to label with: no need to score the unrated answers.
  const scores =
    rule.up || rule.down ? await score(interactions, heldOut) : interactions.map(() => Number.NaN);
  const calls = interactions.map((interaction, k): Call => {
    const s = scores[k]!;
    const up = Number.isFinite(s) ? applyRule(rule, s) : null;
    const confidence = Math.abs(2 * pUp(s) - 1);
    if (up === null || confidence < o.minConfidence) return { interaction, label: null };
    return { interaction, label: { up, confidence, metadata: { ...metadata(s), pLiked: pUp(s) } } };
  });
  return { calls, reliability };
}

/** How a labeller from people's ratings scores an answer (see `labelFromRatings`). */
export const ratingScorers = ['similar', 'words'] as const;

export const RatingsLabelOptions = z.strictObject({
  /** `words`: a word model fitted on the rated answers; `similar`: the ratings of answers with similar text. */
  scorer: z.enum(ratingScorers).default('similar'),
  /** Unrated interactions to look at, newest first. */
  limit: z.number().int().positive().max(100_000).default(500),
  route: z.string().min(1).optional(),
  ...ReliabilityFields,
  /**
   * `similar`: pseudo-weight of "no opinion" (reward 0) added to the similar answers' weights:
   * one answer alike on few words says less than several near-copies (weights are
   * similarity^4, a near-copy about 1).
   */
  priorWeight: z.number().min(0).max(100).default(1),
  /** `words`: the word model's L2 penalty and gradient steps (see fitWordModel). */
  l2: z.number().min(0).max(1000).default(1),
  iterations: z.number().int().positive().max(10_000).default(300),
});
export type RatingsLabelOptions = z.input<typeof RatingsLabelOptions>;

/**
 * `words`: each held-out answer is scored by a word model fitted on the other folds (`foldsOf`,
 * the folds the thresholds are cross-fitted on), an unrated answer by one fitted on all of them.
 * A fold's thresholds are chosen on the other folds' scores, which come from models that saw
 * this fold's ratings among others': a second-order dependence nested cross-fitting would remove
 * (folds x folds fits); the threshold itself never sees the fold's scores or outcomes.
 */
function wordScorer(o: { folds: number; l2: number; iterations: number }) {
  return async (interactions: Interaction[], heldOut: readonly HeldOutAnswer[]) => {
    const examples = heldOut.map((h) => ({
      id: h.interaction.id,
      text: contentText(h.interaction.output.content),
      up: h.up,
      score: 0,
    }));
    const foldOf = new Map<string, number>();
    const folds = foldsOf(examples, Math.max(2, o.folds));
    folds.forEach((fold, k) => {
      for (const e of fold) foldOf.set(e.id, k);
    });
    const all = fitWordModel(examples, o);
    const perFold = folds.map((_, k) => fitWordModel(folds.filter((_, j) => j !== k).flat(), o));
    return interactions.map((i) => {
      const k = foldOf.get(i.id);
      return (k === undefined ? all : perFold[k]!)(contentText(i.output.content));
    });
  };
}

/** `similar`: what people said about rated answers with similar text; a rated answer is never its own neighbour. */
function similarScorer(o: { priorWeight: number }) {
  return async (interactions: Interaction[], heldOut: readonly HeldOutAnswer[]) => {
    const rated: RatedAnswer[] = heldOut.map((h) => ({
      id: h.interaction.id,
      text: contentText(h.interaction.output.content),
      reward: h.reward,
    }));
    const similar = similarRatedRewards(
      interactions.map((i) => ({ id: i.id, text: contentText(i.output.content) })),
      rated,
    );
    return interactions.map((i) => {
      const s = similar.get(i.id);
      return s ? (s.reward * s.weight) / (s.weight + o.priorWeight) : Number.NaN;
    });
  };
}

/**
 * AI feedback from people's own ratings, for the few dozen ratings a low rating rate leaves,
 * where a reward model cannot learn to order answers: no model to serve, seconds to fit. The
 * `words` scorer fits a word model (logistic regression on words and word pairs, fitWordModel)
 * on the rated answers; `similar` takes the calibrated reward of rated answers with similar text
 * (`similarRatedRewards`, the active-learning queue's estimate), shrunk towards 0 by
 * `priorWeight` (no answer similar enough: no score). Every rated answer is held out: its own
 * score never comes from its own rating (`words`: fitted without its fold; `similar`: it is not
 * its own neighbour), and the rule's thresholds are cross-fitted on them as for the other
 * labellers. Labels are thumbs from source `judge`, rater `judge:ratings-<scorer>`, counted at
 * `sourceWeight.judge` by calibration.
 */
export async function labelFromRatings(
  store: Store,
  projectId: string,
  input: RatingsLabelOptions,
): Promise<AiLabelReport> {
  const o = parseInput(RatingsLabelOptions, input, 'ratingsLabels');
  const score = o.scorer === 'words' ? wordScorer(o) : similarScorer(o);
  const { calls, reliability } = await calibratedCalls(store, projectId, o, score, (s) => ({ score: s }));
  return writeLabels(store, projectId, `ratings-${o.scorer}`, calls, reliability);
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
  reliability: AiLabelReliability,
): Promise<AiLabelReport> {
  const rater = `judge:${model}`;
  const report: AiLabelReport = {
    looked: calls.length,
    labeled: 0,
    up: 0,
    down: 0,
    unsure: 0,
    share: 0,
    rater,
    reliability,
  };
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
  report.share = report.looked ? report.labeled / report.looked : 0;
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
  concurrency: z.number().int().positive().max(32).default(4),
  ...ReliabilityFields,
  // Every held-out answer costs `samples` judge calls.
  heldOutLimit: z.number().int().positive().max(100_000).default(100),
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
 * AI feedback from an LLM judge: it grades answers GOOD or BAD against a rubric, `samples` times
 * each; its score is the share of GOOD verdicts. As for the reward model, its scores on held-out
 * human-rated answers choose the share above (below) which it labels up (down), and only unrated
 * answers past them are written, as thumbs from source `judge`, rater `judge:<model>`, with the
 * votes in the metadata. Calibration learns the judge's bias and reliability from answers people
 * also rated, and its labels count at `sourceWeight.judge`.
 */
export async function labelWithJudge(
  store: Store,
  projectId: string,
  input: JudgeLabelOptions,
): Promise<AiLabelReport> {
  const o = parseInput(JudgeLabelOptions, input, 'judgeLabels');
  const votes = new Map<string, { good: number; bad: number; asked: number }>();
  // Missing votes (failed calls) count as neither: the share is over the verdicts given.
  const score = (interactions: Interaction[]) =>
    mapConcurrent(interactions, o.concurrency, async (interaction) => {
      const v = await judgeVotes(o, interaction);
      const good = v.filter(Boolean).length;
      votes.set(interaction.id, { good, bad: v.length - good, asked: o.samples });
      return v.length ? good / v.length : Number.NaN;
    });
  const { calls, reliability } = await calibratedCalls(store, projectId, o, score, () => ({}));
  for (const c of calls) if (c.label) c.label.metadata.votes = votes.get(c.interaction.id);
  return writeLabels(store, projectId, o.judge.model, calls, reliability);
}
