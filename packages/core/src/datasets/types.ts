import type { ChatMessage } from '../schemas/interaction.js';

/**
 * An interaction as dataset builders see it: its text and its calibrated reward.
 *
 * The builders never read the text, they only place it in rows; so a build over millions of
 * answers can hold it as JSON text (`TextCandidate`) rather than as parsed messages, a few
 * hundred bytes a candidate instead of over a kilobyte, and write the rows with `rowJson`.
 * Whatever reads the text (curation, prompt grouping, augmentation) takes parsed messages.
 */
export interface CandidateExample<Prompt = ChatMessage[], Completion = ChatMessage> {
  interactionId: string;
  /** Groups answers to the same prompt (pairs, leakage-free splits). */
  promptHash: string;
  prompt: Prompt;
  completion: Completion;
  /** Calibrated reward in [-1, 1] (posterior mean); null when unrated. */
  reward: number | null;
  /** Credible interval of the reward. */
  lower: number | null;
  upper: number | null;
  /** Ratings behind the reward. */
  n: number;
  /** Lower than 1 for AI-labeled rewards (judge, reward model), per the feedback-mix policy. */
  weight: number;
  createdAt: number;
  /** The model that gave the answer, when known (SftSpec.fromModels filters on it). */
  model?: string;
  /** Segment for balancing (an end-user tag, a topic...). */
  segment?: string;
  /** Feedback events that produced the reward (lineage). */
  feedbackIds: string[];
}

export type Split = 'train' | 'test';

/** Where a dataset row came from: the interactions and feedback events behind it. */
export interface RowLineage {
  split: Split;
  interactionIds: string[];
  /**
   * The feedback events behind the row. A row built from `CandidateColumns` keeps its candidate's
   * ids as the one string the table holds, joined by ',' (at 10M calls, an array and a string per
   * id for each of millions of rows were a gigabyte of heap): read them with `lineageFeedbackIds`,
   * write the entry with `lineageJson`, which gives the array either way.
   */
  feedbackIds: string[] | string;
  promptHash: string;
  /** Set on a row the spec's `augment` option added: how it was made and from which row. */
  augmentation?: RowAugmentation;
}

/** How an augmented row was made, in its lineage. */
export interface RowAugmentation {
  method: 'eda' | 'paraphrase';
  /** The EDA operation (synonym, insert, swap, delete). */
  operation?: string;
  /** The index of the row it rewords, in the same rows file. */
  sourceRow: number;
}

export interface BuiltDataset<Row> {
  rows: Row[];
  /** Same order as rows. */
  lineage: RowLineage[];
  /** Method-specific settings a trainer needs (class weights, ...) and counts. */
  stats: Record<string, number>;
}

/**
 * A candidate whose prompt and completion are JSON text: exactly `JSON.stringify` of the messages
 * array and of the answer's message, so a row written from them (`rowJson`) is the line
 * `JSON.stringify` writes of the row with the messages parsed.
 */
export type TextCandidate = CandidateExample<string, string>;

/**
 * The candidates a builder reads: an array (`candidateList`) or a table that makes each
 * candidate when asked (`CandidateColumns`). Builders filter and group on the accessors and call
 * `at` only for the candidates they keep, so a table of millions never becomes millions of
 * objects at once.
 */
export interface CandidateList<Prompt = ChatMessage[], Completion = ChatMessage> {
  readonly length: number;
  /** The i-th candidate (a table makes a new object on each call). */
  at(i: number): CandidateExample<Prompt, Completion>;
  interactionId(i: number): string;
  promptHash(i: number): string;
  reward(i: number): number | null;
  lower(i: number): number | null;
  upper(i: number): number | null;
  createdAt(i: number): number;
  /**
   * The i-th candidate's feedback ids joined by ',', when the list holds them so (a table): a row's
   * lineage then keeps that string rather than an array of its own.
   */
  feedbackIdsText?(i: number): string;
}

/** Feedback ids joined by ',' (as `CandidateColumns` holds them) as an array. */
export function splitFeedbackIds(joined: string): string[] {
  return joined === '' ? [] : joined.split(',');
}

/** A lineage entry's feedback ids as an array, however the builder held them. */
export function lineageFeedbackIds(l: Pick<RowLineage, 'feedbackIds'>): string[] {
  return typeof l.feedbackIds === 'string' ? splitFeedbackIds(l.feedbackIds) : l.feedbackIds;
}

/** A lineage entry's JSON line: what JSON.stringify writes of it with its feedback ids as an array. */
export function lineageJson(l: RowLineage): string {
  return JSON.stringify(typeof l.feedbackIds === 'string' ? { ...l, feedbackIds: lineageFeedbackIds(l) } : l);
}
