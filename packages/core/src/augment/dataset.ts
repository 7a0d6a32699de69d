import { z } from 'zod';
import type { RowLineage } from '../datasets/types.js';
import type { ChatMessage } from '../schemas/interaction.js';
import { EdaConfig } from './eda.js';
import { ParaphraseConfig } from './paraphrase.js';

/**
 * A dataset spec's `augment` option: more training rows for the groups the data has few of, with
 * the prompt reworded (EDA, or a model's paraphrase) and the answer kept. Only train rows are
 * augmented, and a copy keeps its source row's prompt group, so the test split never sees a
 * rewording of its own prompts. Every added row's lineage names its source row and the method.
 */
export const AugmentSpec = z
  .strictObject({
    /**
     * What a group is: the row's segment (the spec's `segmentTagPrefix` tag; rows without one are
     * left alone) or its prompt (answers to one prompt).
     */
    by: z.enum(['segment', 'prompt']).default('segment'),
    /** A group is under-represented when its train rows are fewer than this share of the largest group's. */
    belowShareOfLargest: z.number().gt(0).max(1).default(0.5),
    /** Easy Data Augmentation of the last user message (seeded: the same build gives the same rows). */
    eda: EdaConfig.optional(),
    /**
     * A model rewords the last user message (any OpenAI-compatible endpoint). The key is read from
     * the environment variable `apiKeyEnv`, so no secret lands in the stored spec.
     */
    paraphrase: ParaphraseConfig.omit({ apiKey: true })
      .extend({
        apiKeyEnv: z
          .string()
          .regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name')
          .optional(),
        /** Rewordings asked for per row. */
        variants: z.number().int().min(1).max(8).default(1),
      })
      .optional(),
    /** At most this many rows are added (a bound on the paraphrase calls too). */
    maxRows: z.number().int().min(1).max(100_000).default(5000),
  })
  .refine((s) => s.eda !== undefined || s.paraphrase !== undefined, {
    message: 'give eda, paraphrase or both',
  });
export type AugmentSpec = z.output<typeof AugmentSpec>;
export type AugmentSpecInput = z.input<typeof AugmentSpec>;

/**
 * Indexes of the train rows in under-represented groups: a group's train rows fewer than
 * `share` times the largest group's. Rows without a group (no segment) are never picked.
 */
export function underRepresentedRows(
  lineage: readonly RowLineage[],
  groupOf: (row: RowLineage, index: number) => string | undefined,
  share: number,
): number[] {
  const members = new Map<string, number[]>();
  lineage.forEach((l, i) => {
    if (l.split !== 'train') return;
    const group = groupOf(l, i);
    if (group === undefined) return;
    const list = members.get(group) ?? [];
    list.push(i);
    members.set(group, list);
  });
  const largest = Math.max(0, ...[...members.values()].map((m) => m.length));
  return [...members.values()]
    .filter((m) => m.length < share * largest)
    .flat()
    .sort((a, b) => a - b);
}

/** The last user message's text of a TRL conversational row (every row format has `prompt`). */
export function lastUserText(row: { prompt: ChatMessage[] }): string | undefined {
  for (let i = row.prompt.length - 1; i >= 0; i--) {
    const m = row.prompt[i]!;
    if (m.role === 'user') return typeof m.content === 'string' ? m.content : undefined;
  }
  return undefined;
}

/** A copy of the row with its last user message's text replaced; everything else as it was. */
export function withLastUserText<R extends { prompt: ChatMessage[] }>(row: R, text: string): R {
  const at = row.prompt.findLastIndex((m) => m.role === 'user');
  const prompt = row.prompt.map((m, i) => (i === at ? { ...m, content: text } : m));
  return { ...row, prompt };
}
