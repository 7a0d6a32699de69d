import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { FeedbackSource, ScoreConfig } from '@ratchet/core';
import type { Store } from '@ratchet/store';
import type { ImportBatch } from './batch.js';
import { parseFeedbackCsv } from './csv.js';
import { parseLabelStudioExport } from './labelstudio.js';
import { parseTrlJsonl } from './trl.js';
import { type ImportSummary, type WriteImportOptions, writeImportBatch } from './write.js';

export const importFormats = ['labelstudio', 'trl', 'csv'] as const;
export type ImportFormat = (typeof importFormats)[number];

export interface ImportFileOptions extends WriteImportOptions {
  format: ImportFormat;
  /** Model of answers whose file does not name one (TRL, CSV without a model column). */
  model?: string;
  /** TRL: route and tags for every imported interaction. */
  route?: string;
  tags?: string[];
  /** TRL: the rater of the file's preferences and labels. */
  raterId?: string;
  /** TRL and CSV: the source of the ratings (CSV rows may override it in a source column). */
  source?: FeedbackSource;
  /** CSV: field or criterion name to header. */
  columns?: Record<string, string>;
  delimiter?: string;
}

/** Reads and validates a whole file in one of the import formats, on the project's scales. */
export async function parseImportFile(
  path: string,
  options: ImportFileOptions,
  scales: readonly ScoreConfig[],
): Promise<ImportBatch> {
  const text = await readFile(path, 'utf8');
  const file = basename(path);
  switch (options.format) {
    case 'trl':
      return parseTrlJsonl(text, { ...options, file });
    case 'csv':
      return parseFeedbackCsv(text, {
        file,
        criteria: scales.filter((s) => s.usage === 'criterion').map((s) => s.name),
        ...(options.columns ? { columns: options.columns } : {}),
        ...(options.model ? { model: options.model } : {}),
        ...(options.source ? { source: options.source } : {}),
        ...(options.delimiter ? { delimiter: options.delimiter } : {}),
      });
    case 'labelstudio':
      return parseLabelStudioExport(text, {
        file,
        scales,
        ...(options.model ? { model: options.model } : {}),
      });
  }
}

/** Imports a file into a project: validated whole before anything is written, idempotent. */
export async function importFile(
  store: Store,
  projectId: string,
  path: string,
  options: ImportFileOptions,
): Promise<ImportSummary> {
  const scales = await store.scoreConfigs.list(projectId);
  const batch = await parseImportFile(path, options, scales);
  return writeImportBatch(store, projectId, batch, options);
}
