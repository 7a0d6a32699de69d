import {
  type AugmentSpec,
  augmentWithEda,
  type BuiltDataset,
  type ChatMessage,
  lastUserText,
  RatchetError,
  type RowLineage,
  underRepresentedRows,
  withLastUserText,
} from '@ratchet/core';
import { paraphrase } from './paraphrase.js';

export interface AugmentationSummary {
  /** Train rows reworded (rows of under-represented groups). */
  sourceRows: number;
  /** Rows added by each method. */
  eda: number;
  paraphrase: number;
  /** The groups that were under-represented, with their train rows before. */
  groups: Record<string, number>;
}

type PromptRow = { prompt: ChatMessage[] };

/**
 * Adds reworded copies of the train rows of under-represented groups (see core's AugmentSpec) at
 * the end of the rows, each with its source row's lineage plus how it was made; train_rows and
 * augmented_rows in the stats count them. `segmentOf` gives an interaction's segment.
 */
export async function augmentBuiltDataset(
  built: BuiltDataset<unknown>,
  spec: AugmentSpec,
  segmentOf: (interactionId: string) => string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ built: BuiltDataset<unknown>; summary: AugmentationSummary }> {
  const groupOf = (l: RowLineage) =>
    spec.by === 'prompt' ? l.promptHash : segmentOf(l.interactionIds[0] ?? '');
  const picked = underRepresentedRows(built.lineage, groupOf, spec.belowShareOfLargest);
  const rows = [...built.rows];
  const lineage = [...built.lineage];
  const summary: AugmentationSummary = { sourceRows: 0, eda: 0, paraphrase: 0, groups: {} };
  for (const i of picked) {
    const group = groupOf(built.lineage[i]!)!;
    summary.groups[group] = (summary.groups[group] ?? 0) + 1;
  }
  const add = (source: number, text: string, augmentation: RowLineage['augmentation']) => {
    rows.push(withLastUserText(built.rows[source] as PromptRow, text));
    lineage.push({ ...built.lineage[source]!, augmentation });
  };
  const added = () => rows.length - built.rows.length;
  for (const i of picked) {
    if (added() >= spec.maxRows) break;
    const text = lastUserText(built.rows[i] as PromptRow);
    if (text === undefined || !text.trim()) continue;
    summary.sourceRows++;
    const seen = new Set([text]);
    for (const v of spec.eda ? augmentWithEda(text, spec.eda) : []) {
      if (added() >= spec.maxRows) break;
      seen.add(v.text);
      add(i, v.text, { method: 'eda', operation: v.operation, sourceRow: i });
      summary.eda++;
    }
    if (spec.paraphrase) {
      const { apiKeyEnv, variants, ...endpoint } = spec.paraphrase;
      const apiKey = apiKeyEnv ? env[apiKeyEnv] : undefined;
      for (let k = 0; k < variants && added() < spec.maxRows; k++) {
        let reworded: string;
        try {
          reworded = await paraphrase(text, { ...endpoint, ...(apiKey ? { apiKey } : {}) });
        } catch (err) {
          // The build stops with nothing written; the client sees whose endpoint failed.
          throw new RatchetError('upstream_error', (err as Error).message, 'augment.paraphrase');
        }
        // A rewording equal to the text or to another variant teaches nothing new.
        if (seen.has(reworded)) continue;
        seen.add(reworded);
        add(i, reworded, { method: 'paraphrase', sourceRow: i });
        summary.paraphrase++;
      }
    }
  }
  const stats = {
    ...built.stats,
    train_rows: (built.stats.train_rows ?? 0) + added(),
    augmented_rows: added(),
  };
  return { built: { rows, lineage, stats }, summary };
}
