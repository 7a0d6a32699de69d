/**
 * The one registry of training methods, their dataset builders and the row formats between them.
 * Everything else derives from it: the zod enums of the API and CLI, which dataset can train which
 * method, the OpenAI export, the loop's held-out choice, and (through `methodRegistryJson`, written
 * to worker/ratchet_worker/registry.json) the worker's method list and the columns it keeps.
 *
 * Adding a training method that reads an existing row format is one entry in `trainingMethodRegistry`
 * plus its trainer, `worker/ratchet_worker/train/<method>.py`. A new row format also needs a
 * builder here and a row check in worker/ratchet_worker/data.py.
 */
import {
  buildDpoDataset,
  buildKtoDataset,
  buildRewardDataset,
  buildRwsftDataset,
  buildSftDataset,
} from './datasets/builders.js';
import type { BuiltDataset, CandidateExample, CandidateList } from './datasets/types.js';
import type { PairwiseComparison } from './normalize/pairwise.js';

type Row = Record<string, unknown>;
type Messages = { role: string; content: unknown }[];

/** The names of a registry, in its order, as the non-empty tuple `z.enum` wants. */
function namesOf<K extends string>(registry: Record<K, unknown>): [K, ...K[]] {
  return Object.keys(registry) as [K, ...K[]];
}

const asChat = (row: Row) => ({ messages: [...(row.prompt as Messages), ...(row.completion as Messages)] });

export interface RowFormat {
  /** The columns a trainer reads; the worker drops every other column (ids, margins, weights). */
  columns: readonly string[];
  /** Every dataset version can feed this format (its rows all have a prompt), whatever built it. */
  fedByEveryDataset?: true;
  /** The row as an OpenAI fine-tuning line (chat SFT or preference), or undefined to leave it out. */
  toOpenAI?: (row: Row) => Row | undefined;
}

/** TRL's conversational formats (OpenAI-style messages); the worker checks each row against its format. */
export const rowFormats = {
  /** `{prompt, completion}` (or `{messages}` from elsewhere): answers to imitate. */
  'prompt-completion': { columns: ['messages', 'prompt', 'completion'], toOpenAI: asChat },
  /** `{prompt, completion, label, weight?}`: one answer, desirable or not. */
  'unpaired-preference': {
    columns: ['prompt', 'completion', 'label', 'weight'],
    toOpenAI: (row) => (row.label ? asChat(row) : undefined),
  },
  /** `{prompt, chosen, rejected}`: two answers to one prompt, the better first. */
  preference: {
    columns: ['prompt', 'chosen', 'rejected'],
    toOpenAI: (row) => ({
      input: { messages: row.prompt },
      preferred_output: row.chosen,
      non_preferred_output: row.rejected,
    }),
  },
  /** `{prompt, completion, reward}` with the reward in [-1, 1]. */
  'rewarded-completion': {
    columns: ['prompt', 'completion', 'reward'],
    // OpenAI SFT imitates every row: only the rewarded ones.
    toOpenAI: (row) => ((row.reward as number) > 0 ? asChat(row) : undefined),
  },
  /** `{prompt}`: the trainer generates its own answers. */
  prompt: { columns: ['prompt'], fedByEveryDataset: true },
} satisfies Record<string, RowFormat>;
export type RowFormatName = keyof typeof rowFormats;

export interface DatasetBuilder {
  format: RowFormatName;
  /** Over parsed candidates, or over `TextCandidate`s (texts as JSON text, rows for `rowJson`). */
  build: <P, M>(
    candidates: CandidateExample<P, M>[] | CandidateList<P, M>,
    comparisons: readonly PairwiseComparison[],
    options: Record<string, unknown>,
  ) => BuiltDataset<unknown>;
  /**
   * Which rated answers become rows: only liked ones (ratings that find bad answers add nothing,
   * so active learning looks for likely good ones), pairs of answers, or every rated answer (its
   * test split can then judge a round on every kind of answer).
   */
  keeps: 'liked-answers' | 'answer-pairs' | 'every-rated-answer';
  /** Why versions it builds cannot be exported in OpenAI's format, when they cannot. */
  noOpenAIExport?: string;
}

/** Dataset methods: how rated interactions become rows (`ratchet datasets build --method`). */
export const datasetBuilders = {
  sft: { format: 'prompt-completion', build: buildSftDataset, keeps: 'liked-answers' },
  kto: { format: 'unpaired-preference', build: buildKtoDataset, keeps: 'every-rated-answer' },
  dpo: { format: 'preference', build: buildDpoDataset, keeps: 'answer-pairs' },
  reward: {
    format: 'preference',
    build: buildRewardDataset,
    keeps: 'answer-pairs',
    noOpenAIExport: 'OpenAI has no reward-model format; export the dpo version instead',
  },
  rwsft: { format: 'rewarded-completion', build: buildRwsftDataset, keeps: 'every-rated-answer' },
} satisfies Record<string, DatasetBuilder>;
export const datasetMethods = namesOf(datasetBuilders);
export type DatasetMethod = keyof typeof datasetBuilders;

export interface TrainingMethodEntry {
  /** The rows its trainer reads; any dataset version of that format can feed it. */
  format: RowFormatName;
  /** Needs a reward model to score the answers it generates. */
  needsRewardModel?: true;
}

/** Trainers of the model worker (`ratchet-worker train`), one module each in worker/ratchet_worker/train/. */
export const trainingMethodRegistry = {
  sft: { format: 'prompt-completion' },
  kto: { format: 'unpaired-preference' },
  dpo: { format: 'preference' },
  reward: { format: 'preference' },
  rwsft: { format: 'rewarded-completion' },
  rl: { format: 'prompt', needsRewardModel: true },
} satisfies Record<string, TrainingMethodEntry>;
export const trainingMethods = namesOf(trainingMethodRegistry);
export type TrainingMethod = keyof typeof trainingMethodRegistry;

/** The dataset methods whose versions can feed a training method, its namesake first. */
export function datasetMethodsFeeding(method: TrainingMethod): DatasetMethod[] {
  const format: RowFormat = rowFormats[trainingMethodRegistry[method].format];
  const fits = datasetMethods.filter(
    (d) => format.fedByEveryDataset || datasetBuilders[d].format === trainingMethodRegistry[method].format,
  );
  return [...fits.filter((d) => d === method), ...fits.filter((d) => d !== method)];
}

/** What the worker reads (worker/ratchet_worker/registry.json): methods, their formats, the columns. */
export function methodRegistryJson() {
  return {
    generatedFrom: 'packages/core/src/methods.ts (node --import tsx scripts/write-registries.ts)',
    formats: Object.fromEntries(
      Object.entries(rowFormats).map(([name, f]) => [name, { columns: [...f.columns] }]),
    ),
    methods: Object.fromEntries(
      Object.entries(trainingMethodRegistry).map(([name, m]: [string, TrainingMethodEntry]) => [
        name,
        { format: m.format, needsRewardModel: m.needsRewardModel ?? false },
      ]),
    ),
  };
}
