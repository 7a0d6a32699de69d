import { z } from 'zod';
import { addLabelStudioTask, type LabelStudioMappingOptions } from '../labelstudio/results.js';
import { type ImportBatch, ImportBatchBuilder, importError, parseAt } from './batch.js';

/**
 * Import of a Label Studio JSON export (Export > JSON, or `/api/projects/{id}/export`): a list of
 * tasks with `data` and `annotations[].result[]`. Annotations become feedback from source
 * `annotator` rated by `labelstudio:<user id>`; see `labelstudio/results.ts` for the mapping.
 */
export interface LabelStudioImportOptions extends LabelStudioMappingOptions {
  /** Name of the file, for error messages (`file:line`). */
  file: string;
}

export function parseLabelStudioExport(text: string, options: LabelStudioImportOptions): ImportBatch {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw importError(options.file, `not valid JSON (${(err as Error).message})`);
  }
  const tasks = parseAt(z.array(z.unknown()), json, `${options.file}:1`);
  const lines = topLevelElementLines(text);
  const builder = new ImportBatchBuilder();
  tasks.forEach((task, i) => {
    addLabelStudioTask(builder, task, `${options.file}:${lines[i] ?? 1}: tasks.${i}`, options);
  });
  return builder.build();
}

/**
 * The line on which each element of a top-level JSON array starts. JSON.parse gives no
 * positions, and "task 3812 of a 40 MB export" is only useful with a line to jump to.
 */
export function topLevelElementLines(text: string): number[] {
  const lines: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let expectElement = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\n') line++;
    if (inString) {
      if (ch === '\\') i++;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === ' ' || ch === '\t' || ch === '\r' || ch === '\n') continue;
    if (depth === 1 && expectElement && ch !== ']') {
      lines.push(line);
      expectElement = false;
    }
    if (ch === '"') inString = true;
    else if (ch === '[' || ch === '{') {
      depth++;
      if (depth === 1) expectElement = true;
    } else if (ch === ']' || ch === '}') depth--;
    else if (ch === ',' && depth === 1) expectElement = true;
  }
  return lines;
}
