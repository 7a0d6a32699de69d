import {
  ActiveLearningObjective,
  parseInput,
  type RatedAnswer,
  type RatingCandidate,
  selectForRating,
  similarRatedRewards,
} from '@ratchet/core';
import type { QueueCandidate, Store } from '@ratchet/store';
import { contentText } from '../content-text.js';
import type { AnnotationPolicy, QueueRequest } from './types.js';

const sd = (xs: number[]) => {
  if (xs.length < 2) return 0;
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
};

/** Rated answers read for the similar-answer estimate; enough for the queue, bounded for big projects. */
const MAX_RATED_REFERENCES = 5000;

/**
 * Calibrated answers, for what people said about answers like a candidate (AI labels are in
 * there at the weight calibration gave them).
 */
async function ratedAnswers(store: Store, projectId: string): Promise<RatedAnswer[]> {
  const out: RatedAnswer[] = [];
  for await (const page of store.datasets.ratedInteractions(projectId)) {
    for (const row of page)
      out.push({ id: row.interactionId, text: contentText(row.output.content), reward: row.reward });
    if (out.length >= MAX_RATED_REFERENCES) break;
  }
  return out;
}

/**
 * Gathers what the store knows about a pool of interactions (unrated ones and the least certain
 * rated ones) as active-learning signals: the calibrated interval, the spread of people's thumbs,
 * the reward model's call from its AI label, whether the judge and the people disagree, and what
 * people said about similar rated answers.
 */
async function ratingCandidates(
  store: Store,
  r: QueueRequest,
): Promise<{ pool: QueueCandidate[]; candidates: RatingCandidate[] }> {
  // A wide pool: the positives objective looks for the few likely-good answers among many.
  const poolSize = Math.max(500, r.limit * 5);
  const route = r.route ? { route: r.route } : {};
  const [unrated, uncertain] = await Promise.all([
    store.dashboard.unratedRecent(r.projectId, { limit: poolSize, ...route }),
    store.dashboard.leastCertain(r.projectId, { ...r, limit: poolSize }),
  ]);
  const pool = [
    ...unrated,
    ...uncertain.filter((u) => !unrated.some((x) => x.interactionId === u.interactionId)),
  ];
  const ids = pool.map((p) => p.interactionId);
  const [interactions, feedback, rated] = await Promise.all([
    store.interactions.getMany(r.projectId, ids),
    store.feedback.listForInteractions(r.projectId, ids),
    ratedAnswers(store, r.projectId),
  ]);
  const byId = new Map(interactions.map((i) => [i.id, i]));
  const similar = similarRatedRewards(
    interactions.map((i) => ({ id: i.id, text: contentText(i.output.content) })),
    rated,
  );
  const candidates = pool.flatMap((p): RatingCandidate[] => {
    const interaction = byId.get(p.interactionId);
    if (!interaction) return [];
    const events = (feedback.get(p.interactionId) ?? []).filter((f) => f.current);
    const human = events.filter((f) => f.source !== 'judge' && f.kind === 'thumbs');
    const judge = events.find((f) => f.source === 'judge' && f.kind === 'thumbs');
    const score = judge?.metadata?.score;
    const p1 = typeof score === 'number' ? 1 / (1 + Math.exp(-score)) : undefined;
    const humanUp = human.length ? human.filter((f) => f.label === 'up').length / human.length : undefined;
    return [
      {
        id: p.interactionId,
        prompt: interaction.messages
          .filter((m) => m.role === 'user')
          .map((m) => contentText(m.content))
          .join('\n'),
        humanRated: human.length > 0 || p.ratings > 0,
        ...(p1 === undefined ? {} : { rewardModelProbability: p1 }),
        ...(p.uncertainty === null ? {} : { calibratedSd: p.uncertainty / (2 * 1.96) }),
        raterSpread: sd(human.map((f) => (f.label === 'up' ? 1 : -1))),
        ...(p1 !== undefined && humanUp !== undefined ? { judgeHumanGap: Math.abs(p1 - humanUp) * 2 } : {}),
        ...(similar.has(p.interactionId) ? { similarRated: similar.get(p.interactionId)! } : {}),
      },
    ];
  });
  return { pool, candidates };
}

/**
 * The active-learning queue: of the unrated and least certain interactions, those a rating
 * would teach most (uncertainty, disagreement, novelty; see `selectForRating`), spread over
 * different prompts. With `objective: 'positives'` (for sft, which learns from liked answers
 * only) it asks about the unrated answers most likely to be liked instead.
 */
export const activeLearning: AnnotationPolicy = {
  name: 'active-learning',
  description:
    'What a rating would teach most: the reward model unsure, raters or judge and people disagreeing, prompts unlike those rated; spread over different prompts. Objective "positives": the unrated answers most likely liked (for sft datasets).',
  async select(store, r) {
    const objective = parseInput(ActiveLearningObjective.optional(), r.objective, 'objective');
    const { pool, candidates } = await ratingCandidates(store, r);
    const rated = candidates.filter((c) => c.humanRated).map((c) => c.prompt);
    const picks = selectForRating(candidates, {
      budget: r.limit,
      ratedPrompts: rated,
      ...(objective ? { objective } : {}),
    });
    const byId = new Map(pool.map((p) => [p.interactionId, p]));
    return picks.map((pick) => byId.get(pick.id)!);
  },
};
