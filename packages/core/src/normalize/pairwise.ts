import type { Feedback } from '../feedback-kinds.js';
import { ChatMessage } from '../schemas/interaction.js';
import { defaultRewardMapping, type RewardMapping } from './reward-mapping.js';

/**
 * One side of a comparison: a logged interaction, or the text a rater wrote as a correction of an
 * interaction (which has no interaction of its own until a dataset builder makes it one).
 */
export type PairwiseCandidate =
  | { type: 'interaction'; interactionId: string }
  | {
      type: 'correction';
      feedbackId: string;
      interactionId: string;
      text: string;
      /** The full assistant message the rater sent with the text (tool calls...), when they did. */
      message?: ChatMessage;
    };

/** The assistant message a correction puts in a dataset row: the rater's full message, or its text. */
export function correctionMessage(c: Extract<PairwiseCandidate, { type: 'correction' }>): ChatMessage {
  return c.message ?? { role: 'assistant', content: c.text };
}

/** Evidence that `winner` is better than `loser`, worth `weight` comparisons. */
export interface PairwiseComparison {
  winner: PairwiseCandidate;
  loser: PairwiseCandidate;
  weight: number;
  /** Half of a tie (the other half is the reverse comparison). */
  tie: boolean;
  source: 'preference' | 'ranking' | 'correction';
  feedbackId: string;
  raterId: string;
}

const interaction = (interactionId: string): PairwiseCandidate => ({ type: 'interaction', interactionId });

function fromPairwisePreference(row: Feedback, mapping: RewardMapping['pairwise']): PairwiseComparison[] {
  const other = row.data?.['other'];
  if (typeof other !== 'string' || other === row.interactionId) return [];
  const base = { source: 'preference' as const, feedbackId: row.id, raterId: row.raterId };
  const self = interaction(row.interactionId);
  const them = interaction(other);
  if (row.label === 'this')
    return [{ ...base, winner: self, loser: them, weight: mapping.preference, tie: false }];
  if (row.label === 'other')
    return [{ ...base, winner: them, loser: self, weight: mapping.preference, tie: false }];
  if (row.label !== 'tie') return [];
  const weight = mapping.preference * mapping.tie;
  if (weight <= 0) return [];
  return [
    { ...base, winner: self, loser: them, weight, tie: true },
    { ...base, winner: them, loser: self, weight, tie: true },
  ];
}

function fromRanking(row: Feedback, mapping: RewardMapping['pairwise']): PairwiseComparison[] {
  const ranking = row.data?.['ranking'];
  if (!Array.isArray(ranking) || !ranking.every((id) => typeof id === 'string')) return [];
  const ids = ranking as string[];
  const base = { source: 'ranking' as const, feedbackId: row.id, raterId: row.raterId, tie: false };
  const out: PairwiseComparison[] = [];
  // Best first: every earlier entry beats every later one (or only its neighbour).
  for (let i = 0; i < ids.length; i++) {
    const last = mapping.rankingPairs === 'adjacent' ? Math.min(i + 1, ids.length - 1) : ids.length - 1;
    for (let j = i + 1; j <= last; j++) {
      out.push({
        ...base,
        winner: interaction(ids[i]!),
        loser: interaction(ids[j]!),
        weight: mapping.ranking,
      });
    }
  }
  return out;
}

function fromCorrection(row: Feedback, mapping: RewardMapping['pairwise']): PairwiseComparison[] {
  if (!row.text) return [];
  // Only an assistant message can stand for the answer; anything else was never an answer.
  const message = ChatMessage.safeParse(row.data?.['message']);
  const corrected: PairwiseCandidate = {
    type: 'correction',
    feedbackId: row.id,
    interactionId: row.interactionId,
    text: row.text,
    ...(message.success && message.data.role === 'assistant' ? { message: message.data } : {}),
  };
  return [
    {
      winner: corrected,
      loser: interaction(row.interactionId),
      weight: mapping.correction,
      tie: false,
      source: 'correction',
      feedbackId: row.id,
      raterId: row.raterId,
    },
  ];
}

/**
 * Pairwise comparisons implied by preference, ranking and correction events: "this over that",
 * every pair of a ranking (best first), and "the corrected text beats the original". Other kinds
 * and, unless `includeHistory`, superseded events yield nothing. Zero-weight evidence is dropped.
 */
export function pairwiseEvidence(
  rows: Iterable<Feedback>,
  options: { mapping?: RewardMapping; includeHistory?: boolean } = {},
): PairwiseComparison[] {
  const full = options.mapping ?? defaultRewardMapping;
  const mapping = full.pairwise;
  const out: PairwiseComparison[] = [];
  for (const row of rows) {
    if (!row.current && !options.includeHistory) continue;
    let comparisons: PairwiseComparison[] = [];
    if (row.kind === 'preference') {
      const isRanking = row.label === 'ranking' || Array.isArray(row.data?.['ranking']);
      comparisons = isRanking ? fromRanking(row, mapping) : fromPairwisePreference(row, mapping);
    } else if (row.kind === 'correction') {
      comparisons = fromCorrection(row, mapping);
    }
    // An AI's correction or preference counts as much as its rating would (judge: 0.3 by default),
    // not as much as a person's.
    const bySource = full.sourceWeight[row.source as keyof RewardMapping['sourceWeight']] ?? 1;
    for (const c of comparisons) {
      c.weight *= bySource;
      if (c.weight > 0) out.push(c);
    }
  }
  return out;
}
