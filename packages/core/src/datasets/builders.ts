import { z } from 'zod';
import { correctionMessage, type PairwiseCandidate, type PairwiseComparison } from '../normalize/pairwise.js';
import type { ChatMessage } from '../schemas/interaction.js';
import { balanceBySegment } from './balance.js';
import { candidateList } from './columns.js';
import { assignSplits, SplitSpec } from './splits.js';
import type { BuiltDataset, CandidateExample, CandidateList, RowLineage, Split } from './types.js';

// Rows are TRL's conversational formats, so the worker hands them to TRL as they are:
// prompt-completion (SFT), unpaired preference (KTO), preference (DPO, reward model).
// A row holds its candidates' texts as they came (`P`, `M`: parsed messages, or JSON text for
// `TextCandidate`s); a correction's message is always parsed (it comes with the feedback).

export interface SftRow<P = ChatMessage[], M = ChatMessage> {
  prompt: P;
  completion: (M | ChatMessage)[];
}
export interface KtoRow<P = ChatMessage[], M = ChatMessage> {
  prompt: P;
  completion: (M | ChatMessage)[];
  label: boolean;
}
export interface PreferenceRow<P = ChatMessage[], M = ChatMessage> {
  prompt: P;
  chosen: (M | ChatMessage)[];
  rejected: (M | ChatMessage)[];
}
export interface RewardRow<P = ChatMessage[], M = ChatMessage> extends PreferenceRow<P, M> {
  /** How much better chosen is, for a margin-aware reward loss. */
  margin: number;
}
export interface RwsftRow<P = ChatMessage[], M = ChatMessage> {
  prompt: P;
  completion: (M | ChatMessage)[];
  /** Calibrated reward in [-1, 1]: positive rows are reinforced, negative ones penalized. */
  reward: number;
  /** Trust in the reward (AI labels and uncertain rewards count less). */
  weight: number;
}

const Common = {
  split: SplitSpec.default({ by: 'prompt', testFraction: 0.1, seed: 0 }),
  /** Cap on any one segment's share of the rows (1 = no balancing). */
  maxSegmentShare: z.number().gt(0).max(1).default(1),
};

export const SftSpec = z.strictObject({
  ...Common,
  /** Answers whose calibrated reward is at least this are examples to imitate. */
  minReward: z.number().min(-1).max(1).default(0.5),
  /** ...and whose interval's lower end is at least this (so one lucky rating is not enough). */
  minLower: z.number().min(-1).max(1).default(0),
  /**
   * Only the answers these models gave are examples to imitate (people's corrections count
   * whatever answer they correct). The loop names the production model here for a stacked round
   * (LoopPolicy's dataset.productionAnswersOnly): a liked answer of an older, worse model is more
   * often a mediocre one that a lenient or adversarial rater liked.
   */
  fromModels: z.array(z.string().min(1)).min(1).optional(),
  includeCorrections: z.boolean().default(true),
});
export const KtoSpec = z.strictObject({
  ...Common,
  /** Answers with |reward| below this are too uncertain to call desirable or not. */
  margin: z.number().min(0).max(1).default(0.1),
  /** Drop answers whose interval crosses 0. */
  requireConfidentSign: z.boolean().default(true),
  includeCorrections: z.boolean().default(true),
});
export const DpoSpec = z.strictObject({
  ...Common,
  /** Smallest calibrated-reward gap that makes two answers to one prompt a pair. */
  minMargin: z.number().min(0).max(2).default(0.3),
  maxPairsPerPrompt: z.number().int().min(1).default(4),
  includeCorrections: z.boolean().default(true),
  includePreferences: z.boolean().default(true),
});
export const RwsftSpec = z.strictObject({
  ...Common,
  /** Rows with |reward| below this carry too little signal. */
  minAbsReward: z.number().min(0).max(1).default(0.05),
  includeCorrections: z.boolean().default(true),
});
export type SftSpec = z.input<typeof SftSpec>;
export type KtoSpec = z.input<typeof KtoSpec>;
export type DpoSpec = z.input<typeof DpoSpec>;
export type RwsftSpec = z.input<typeof RwsftSpec>;

/**
 * A row and its lineage while a builder works. `finish` turns the draft itself into the row's
 * lineage entry (it sets `split` and lets go of `row` and `segment`) rather than making a second
 * object per row: at 10M calls a KTO build keeps millions of rows. Made only by `draft`, so every
 * draft has one shape, and its lineage the key order of RowLineage as JSON.
 */
interface Draft<Row> {
  row: Row | undefined;
  split: Split;
  interactionIds: string[];
  feedbackIds: string[] | string;
  promptHash: string;
  segment: string | undefined;
}

function draft<Row>(
  row: Row,
  promptHash: string,
  interactionIds: string[],
  feedbackIds: string[] | string,
  segment: string | undefined,
): Draft<Row> {
  return { row, split: 'train', interactionIds, feedbackIds, promptHash, segment };
}

/**
 * What a builder reads: an array of candidates, or a `CandidateList` (a table of millions, whose
 * candidates become objects only when a builder keeps them).
 */
export type Candidates<P = ChatMessage[], M = ChatMessage> =
  | readonly CandidateExample<P, M>[]
  | CandidateList<P, M>;

function listOf<P, M>(candidates: Candidates<P, M>): CandidateList<P, M> {
  return Array.isArray(candidates)
    ? candidateList(candidates as readonly CandidateExample<P, M>[])
    : (candidates as CandidateList<P, M>);
}

/** Every candidate's prompt group and time, for the split. */
function* splitKeys(list: CandidateList<unknown, unknown>) {
  for (let i = 0; i < list.length; i++)
    yield { promptHash: list.promptHash(i), createdAt: list.createdAt(i) };
}

/**
 * A draft of the list's i-th candidate's row, with its lineage: its feedback ids as the table's
 * joined string when the list is a table (no array per row), else its array.
 */
function draftOf<P, M, Row>(
  list: CandidateList<P, M>,
  i: number,
  c: CandidateExample<P, M>,
  row: Row,
): Draft<Row> {
  return draft(row, c.promptHash, [c.interactionId], list.feedbackIdsText?.(i) ?? c.feedbackIds, c.segment);
}

/** Splits by prompt group, balances segments in train, and attaches lineage. */
function finish<Row>(
  drafts: Draft<Row>[],
  all: CandidateList<unknown, unknown>,
  common: { split: z.output<typeof SplitSpec>; maxSegmentShare: number },
  stats: Record<string, number>,
): BuiltDataset<Row> {
  const splits = assignSplits(splitKeys(all), common.split);
  const trainDrafts: Draft<Row>[] = [];
  const testDrafts: Draft<Row>[] = [];
  let lastHash: string | undefined;
  let test = false;
  for (const d of drafts) {
    // Drafts of one prompt usually follow each other: look the split up once per run of them.
    if (d.promptHash !== lastHash) {
      lastHash = d.promptHash;
      test = splits.get(lastHash) === 'test';
    }
    (test ? testDrafts : trainDrafts).push(d);
  }
  const train = balanceBySegment(trainDrafts, common.maxSegmentShare);
  const rows: Row[] = [];
  const lineage: RowLineage[] = [];
  const add = (d: Draft<Row>, split: Split) => {
    rows.push(d.row!);
    // The draft becomes the lineage entry: undefined fields are left out of its JSON line.
    d.row = undefined;
    d.segment = undefined;
    d.split = split;
    // A table's joined ids are one candidate's, each rating once: no repeats to remove.
    if (typeof d.feedbackIds !== 'string') d.feedbackIds = distinct(d.feedbackIds);
    lineage.push(d);
  };
  for (const d of train.kept) add(d, 'train');
  for (const d of testDrafts) add(d, 'test');
  return {
    rows,
    lineage,
    stats: {
      ...stats,
      rows: rows.length,
      train_rows: train.kept.length,
      test_rows: testDrafts.length,
      dropped_for_balance: train.dropped.length,
    },
  };
}

/** The ids without repeats, in order; the array itself when it has none (the usual case). */
function distinct(ids: string[]): string[] {
  if (ids.length < 2) return ids;
  if (ids.length === 2) return ids[0] === ids[1] ? [ids[0]!] : ids;
  const set = new Set(ids);
  return set.size === ids.length ? ids : [...set];
}

/** Each interaction's position in the list (the last, should one repeat). */
function byInteraction(list: CandidateList<unknown, unknown>): Map<string, number> {
  const index = new Map<string, number>();
  for (let i = 0; i < list.length; i++) index.set(list.interactionId(i), i);
  return index;
}

/** Corrections as (original, corrected text) from the pairwise evidence. */
function corrections<P, M>(comparisons: readonly PairwiseComparison[], list: CandidateList<P, M>) {
  // Indexing a million candidates costs more than the rest of a build: only with corrections.
  if (!comparisons.some((c) => c.winner.type === 'correction')) return [];
  const index = byInteraction(list);
  return comparisons.flatMap((c) => {
    if (c.winner.type !== 'correction') return [];
    const at = index.get(c.winner.interactionId);
    return at !== undefined
      ? [
          {
            original: list.at(at),
            message: correctionMessage(c.winner),
            feedbackId: c.feedbackId,
            weight: c.weight,
          },
        ]
      : [];
  });
}

export function buildSftDataset<P = ChatMessage[], M = ChatMessage>(
  candidates: Candidates<P, M>,
  comparisons: readonly PairwiseComparison[],
  spec: SftSpec = {},
): BuiltDataset<SftRow<P, M>> {
  const s = SftSpec.parse(spec);
  const list = listOf(candidates);
  const drafts: Draft<SftRow<P, M>>[] = [];
  for (let i = 0; i < list.length; i++) {
    const reward = list.reward(i);
    if (!(reward !== null && reward >= s.minReward && (list.lower(i) ?? reward) >= s.minLower)) continue;
    const c = list.at(i);
    if (s.fromModels && !(c.model !== undefined && s.fromModels.includes(c.model))) continue;
    drafts.push(draftOf(list, i, c, { prompt: c.prompt, completion: [c.completion] }));
  }
  const fromCorrections = s.includeCorrections ? corrections(comparisons, list) : [];
  for (const k of fromCorrections) {
    drafts.push(
      draft(
        { prompt: k.original.prompt, completion: [k.message] },
        k.original.promptHash,
        [k.original.interactionId],
        [k.feedbackId],
        k.original.segment,
      ),
    );
  }
  // Splits over every candidate, as the round's other datasets are split (no prompt is test in
  // one and train in another).
  return finish(drafts, list, s, {
    top_rated: drafts.length - fromCorrections.length,
    corrections: fromCorrections.length,
  });
}

/**
 * Unpaired desirable/undesirable examples. TRL's KTO wants desirable_weight * n_desirable over
 * undesirable_weight * n_undesirable in [1, 4/3]; the stats carry weights that make it 1.
 */
export function buildKtoDataset<P = ChatMessage[], M = ChatMessage>(
  candidates: Candidates<P, M>,
  comparisons: readonly PairwiseComparison[],
  spec: KtoSpec = {},
): BuiltDataset<KtoRow<P, M>> {
  const s = KtoSpec.parse(spec);
  const list = listOf(candidates);
  const confident = (i: number) => {
    const reward = list.reward(i);
    const lower = list.lower(i);
    const upper = list.upper(i);
    return (
      reward !== null &&
      Math.abs(reward) >= s.margin &&
      (!s.requireConfidentSign || lower === null || upper === null || lower > 0 || upper < 0)
    );
  };
  const drafts: Draft<KtoRow<P, M>>[] = [];
  for (let i = 0; i < list.length; i++) {
    if (!confident(i)) continue;
    const c = list.at(i);
    drafts.push(draftOf(list, i, c, { prompt: c.prompt, completion: [c.completion], label: c.reward! > 0 }));
  }
  const fromCorrections = s.includeCorrections ? corrections(comparisons, list) : [];
  const seen = new Set(fromCorrections.length ? drafts.map((d) => d.interactionIds[0]) : []);
  for (const k of fromCorrections) {
    drafts.push(
      draft(
        { prompt: k.original.prompt, completion: [k.message], label: true },
        k.original.promptHash,
        [k.original.interactionId],
        [k.feedbackId],
        k.original.segment,
      ),
    );
    // The answer a rater corrected is an example of what not to say.
    if (!seen.has(k.original.interactionId)) {
      seen.add(k.original.interactionId);
      drafts.push(
        draft(
          { prompt: k.original.prompt, completion: [k.original.completion], label: false },
          k.original.promptHash,
          [k.original.interactionId],
          [k.feedbackId, ...k.original.feedbackIds],
          k.original.segment,
        ),
      );
    }
  }
  const built = finish(drafts, list, s, {});
  const desirable = built.rows.filter((r) => r.label).length;
  const undesirable = built.rows.length - desirable;
  built.stats.desirable = desirable;
  built.stats.undesirable = undesirable;
  built.stats.desirable_weight =
    desirable && undesirable && desirable < undesirable ? undesirable / desirable : 1;
  built.stats.undesirable_weight =
    desirable && undesirable && undesirable < desirable ? desirable / undesirable : 1;
  return built;
}

function textOf<P, M>(
  candidate: PairwiseCandidate,
  list: CandidateList<P, M>,
  index: Map<string, number>,
): M | ChatMessage | undefined {
  if (candidate.type === 'correction') return correctionMessage(candidate);
  const at = index.get(candidate.interactionId);
  return at === undefined ? undefined : list.at(at).completion;
}

interface Pair<P, M> {
  chosen: M | ChatMessage;
  rejected: M | ChatMessage;
  prompt: CandidateExample<P, M>;
  margin: number;
  interactionIds: string[];
  feedbackIds: string[];
}

/** Pairs for one prompt: by calibrated margin, corrections over originals, explicit preferences. */
function preferencePairs<P, M>(
  list: CandidateList<P, M>,
  comparisons: readonly PairwiseComparison[],
  s: z.output<typeof DpoSpec>,
) {
  const pairs: Pair<P, M>[] = [];
  let crossPrompt = 0;
  // Positions, not candidates: a pair's two candidates become objects only once it is kept.
  const groups = new Map<string, number[]>();
  for (let i = 0; i < list.length; i++) {
    if (list.reward(i) === null) continue;
    const hash = list.promptHash(i);
    const group = groups.get(hash);
    if (group) group.push(i);
    else groups.set(hash, [i]);
  }
  for (const group of groups.values()) {
    const sorted = group.sort(
      (a, b) => list.reward(b)! - list.reward(a)! || (list.interactionId(a) < list.interactionId(b) ? -1 : 1),
    );
    for (let i = 0; i < Math.min(s.maxPairsPerPrompt, Math.floor(sorted.length / 2)); i++) {
      const b = sorted[i]!;
      const w = sorted[sorted.length - 1 - i]!;
      const margin = list.reward(b)! - list.reward(w)!;
      if (margin < s.minMargin) break;
      const best = list.at(b);
      const worst = list.at(w);
      pairs.push({
        chosen: best.completion,
        rejected: worst.completion,
        prompt: best,
        margin,
        interactionIds: [best.interactionId, worst.interactionId],
        feedbackIds: [...best.feedbackIds, ...worst.feedbackIds],
      });
    }
  }
  const index = comparisons.length ? byInteraction(list) : new Map<string, number>();
  for (const c of comparisons) {
    if (c.tie) continue;
    if (c.source === 'correction' ? !s.includeCorrections : !s.includePreferences) continue;
    const winnerAt = index.get(c.winner.interactionId);
    const loserAt = index.get(c.loser.interactionId);
    const chosen = textOf(c.winner, list, index);
    const rejected = textOf(c.loser, list, index);
    if (winnerAt === undefined || loserAt === undefined || !chosen || !rejected) continue;
    const loserAnchor = list.at(loserAt);
    if (list.promptHash(winnerAt) !== loserAnchor.promptHash) {
      crossPrompt++;
      continue;
    }
    const ids = [...new Set([c.winner.interactionId, c.loser.interactionId])];
    pairs.push({
      chosen,
      rejected,
      prompt: loserAnchor,
      margin: c.weight,
      interactionIds: ids,
      feedbackIds: [c.feedbackId],
    });
  }
  return { pairs, crossPrompt };
}

export function buildDpoDataset<P = ChatMessage[], M = ChatMessage>(
  candidates: Candidates<P, M>,
  comparisons: readonly PairwiseComparison[],
  spec: DpoSpec = {},
): BuiltDataset<PreferenceRow<P, M>> {
  const s = DpoSpec.parse(spec);
  const list = listOf(candidates);
  const { pairs, crossPrompt } = preferencePairs(list, comparisons, s);
  const drafts = pairs.map((p) =>
    draft(
      { prompt: p.prompt.prompt, chosen: [p.chosen], rejected: [p.rejected] },
      p.prompt.promptHash,
      p.interactionIds,
      p.feedbackIds,
      p.prompt.segment,
    ),
  );
  return finish(drafts, list, s, { pairs: pairs.length, skipped_cross_prompt: crossPrompt });
}

/** Reward-model data: the same pairs as DPO, with the margin for margin-aware losses. */
export function buildRewardDataset<P = ChatMessage[], M = ChatMessage>(
  candidates: Candidates<P, M>,
  comparisons: readonly PairwiseComparison[],
  spec: DpoSpec = {},
): BuiltDataset<RewardRow<P, M>> {
  const s = DpoSpec.parse(spec);
  const list = listOf(candidates);
  const { pairs, crossPrompt } = preferencePairs(list, comparisons, s);
  const drafts = pairs.map((p) =>
    draft(
      { prompt: p.prompt.prompt, chosen: [p.chosen], rejected: [p.rejected], margin: p.margin },
      p.prompt.promptHash,
      p.interactionIds,
      p.feedbackIds,
      p.prompt.segment,
    ),
  );
  return finish(drafts, list, s, { pairs: pairs.length, skipped_cross_prompt: crossPrompt });
}

/** Every rated answer with its calibrated reward and a trust weight, for rating-weighted SFT. */
export function buildRwsftDataset<P = ChatMessage[], M = ChatMessage>(
  candidates: Candidates<P, M>,
  comparisons: readonly PairwiseComparison[],
  spec: RwsftSpec = {},
): BuiltDataset<RwsftRow<P, M>> {
  const s = RwsftSpec.parse(spec);
  const list = listOf(candidates);
  const drafts: Draft<RwsftRow<P, M>>[] = [];
  for (let i = 0; i < list.length; i++) {
    const reward = list.reward(i);
    if (!(reward !== null && Math.abs(reward) >= s.minAbsReward)) continue;
    const c = list.at(i);
    // Wide intervals mean little evidence: shrink the weight with the interval's width.
    const width = c.lower !== null && c.upper !== null ? Math.min(2, c.upper - c.lower) : 1;
    drafts.push(
      draftOf(list, i, c, {
        prompt: c.prompt,
        completion: [c.completion],
        // The worker takes rewards in [-1, 1]; a posterior mean can land just outside.
        reward: Math.max(-1, Math.min(1, c.reward!)),
        weight: c.weight * (1 - width / 4),
      }),
    );
  }
  if (s.includeCorrections) {
    for (const k of corrections(comparisons, list)) {
      drafts.push(
        draft(
          {
            prompt: k.original.prompt,
            completion: [k.message],
            reward: 1,
            weight: Math.min(1, k.weight),
          },
          k.original.promptHash,
          [k.original.interactionId],
          [k.feedbackId],
          k.original.segment,
        ),
      );
    }
  }
  return finish(drafts, list, s, {});
}
