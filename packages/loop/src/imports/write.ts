import { checkAgainstScales, RatchetError, referencedInteractionIds } from '@ratchet/core';
import type { Store } from '@ratchet/store';
import type { ImportBatch } from './batch.js';

const BATCH = 1000;

export interface ImportSummary {
  interactions: number;
  interactionsCreated: number;
  feedback: number;
  feedbackCreated: number;
  warnings: string[];
}

export interface WriteImportOptions {
  /** Called after each written chunk with the items done so far, for progress bars. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Writes a parsed batch into a project. Everything that can be checked is checked before the
 * first write (every rated interaction exists in the batch or the project, every rating fits the
 * project's scales), each error naming its `file:line`. Interaction ids and feedback idempotency
 * keys are deterministic, so an import cut short is completed by running it again and a repeated
 * import writes nothing.
 */
export async function writeImportBatch(
  store: Store,
  projectId: string,
  batch: ImportBatch,
  options: WriteImportOptions = {},
): Promise<ImportSummary> {
  await checkReferences(store, projectId, batch);
  const scales = await store.scoreConfigs.byName(projectId);
  batch.feedback.forEach((f, i) => {
    checkAgainstScales(f, scales, batch.feedbackOrigins[i]);
  });

  const total = batch.interactions.length + batch.feedback.length;
  let done = 0;
  let interactionsCreated = 0;
  let feedbackCreated = 0;
  for (let i = 0; i < batch.interactions.length; i += BATCH) {
    const part = batch.interactions.slice(i, i + BATCH);
    const written = await store.interactions.insert(projectId, part);
    interactionsCreated += written.filter((r) => r.created).length;
    done += part.length;
    options.onProgress?.(done, total);
  }
  for (let i = 0; i < batch.feedback.length; i += BATCH) {
    const part = batch.feedback.slice(i, i + BATCH);
    const written = await store.feedback.insert(projectId, part, (k) => batch.feedbackOrigins[i + k]!);
    feedbackCreated += written.filter((r) => r.created).length;
    done += part.length;
    options.onProgress?.(done, total);
  }
  return {
    interactions: batch.interactions.length,
    interactionsCreated,
    feedback: batch.feedback.length,
    feedbackCreated,
    warnings: batch.warnings,
  };
}

async function checkReferences(store: Store, projectId: string, batch: ImportBatch): Promise<void> {
  const inBatch = new Set(batch.interactions.map((i) => i.id));
  const elsewhere = batch.feedback.flatMap(referencedInteractionIds).filter((id) => !inBatch.has(id));
  const found = await store.interactions.existing(projectId, elsewhere);
  batch.feedback.forEach((f, i) => {
    const absent = referencedInteractionIds(f).find((id) => !inBatch.has(id) && !found.has(id));
    if (absent !== undefined) {
      throw new RatchetError(
        'not_found',
        `${batch.feedbackOrigins[i]}: interaction "${absent}" is neither in the file nor in the project`,
      );
    }
  });
}
