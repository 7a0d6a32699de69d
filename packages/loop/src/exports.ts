import { once } from 'node:events';
import { createReadStream, createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  type DatasetBuilder,
  type DatasetMethod,
  datasetBuilders,
  RatchetError,
  type RowFormat,
  rowFormats,
} from '@ratchet/core';
import type { DatasetVersion } from '@ratchet/store';

export const exportFormats = ['trl', 'openai', 'hf'] as const;
export type ExportFormat = (typeof exportFormats)[number];

async function* rowsWithSplit(
  version: DatasetVersion,
): AsyncGenerator<{ row: Record<string, unknown>; split: string }> {
  const rows = createInterface({
    input: createReadStream(join(version.path, 'rows.jsonl')),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  const lineage = createInterface({
    input: createReadStream(join(version.path, 'lineage.jsonl')),
    crlfDelay: Number.POSITIVE_INFINITY,
  })[Symbol.asyncIterator]();
  for await (const line of rows) {
    if (!line) continue;
    const l = await lineage.next();
    yield {
      row: JSON.parse(line),
      split: l.done ? 'train' : (JSON.parse(l.value) as { split: string }).split,
    };
  }
}

/** OpenAI fine-tuning JSONL of one row (chat SFT `messages` or a preference row), by its format. */
function toOpenAI(method: string, row: Record<string, unknown>): Record<string, unknown> | undefined {
  const format: RowFormat = rowFormats[datasetBuilders[method as DatasetMethod].format];
  return format.toOpenAI?.(row);
}

class SplitWriters {
  private readonly streams = new Map<string, ReturnType<typeof createWriteStream>>();
  readonly counts: Record<string, number> = {};
  constructor(private readonly pathOf: (split: string) => string) {}
  async write(split: string, value: unknown): Promise<void> {
    let s = this.streams.get(split);
    if (!s) {
      s = createWriteStream(this.pathOf(split));
      this.streams.set(split, s);
    }
    this.counts[split] = (this.counts[split] ?? 0) + 1;
    if (!s.write(`${JSON.stringify(value)}\n`)) await once(s, 'drain');
  }
  async close(): Promise<void> {
    await Promise.all(
      [...this.streams.values()].map(
        (s) => new Promise<void>((res, rej) => s.end((e?: Error) => (e ? rej(e) : res()))),
      ),
    );
  }
}

/**
 * Writes a dataset version for another tool, one file per split:
 * - `trl`: TRL's conversational rows as they are (`train.jsonl`, `test.jsonl`);
 * - `openai`: OpenAI fine-tuning JSONL (SFT `messages`, or preference rows for DPO/reward);
 * - `hf`: a folder `datasets.load_dataset(folder)` reads, with a README declaring the splits.
 */
export async function exportDataset(
  version: DatasetVersion,
  format: ExportFormat,
  outDir: string,
): Promise<Record<string, number>> {
  const builder: DatasetBuilder | undefined = datasetBuilders[version.method as DatasetMethod];
  if (format === 'openai' && builder?.noOpenAIExport) {
    throw new RatchetError('invalid_request', `format: ${builder.noOpenAIExport}`, 'format');
  }
  const dataDir = format === 'hf' ? join(outDir, 'data') : outDir;
  mkdirSync(dataDir, { recursive: true });
  const writers = new SplitWriters((split) => join(dataDir, `${split}.jsonl`));
  for await (const { row, split } of rowsWithSplit(version)) {
    const value = format === 'openai' ? toOpenAI(version.method, row) : row;
    if (value !== undefined) await writers.write(split, value);
  }
  await writers.close();
  if (format === 'hf') {
    const splits = Object.keys(writers.counts);
    const yaml = [
      '---',
      'configs:',
      '- config_name: default',
      '  data_files:',
      ...splits.flatMap((s) => [`  - split: ${s}`, `    path: data/${s}.jsonl`]),
      '---',
      '',
    ];
    writeFileSync(
      join(outDir, 'README.md'),
      `${yaml.join('\n')}\n# ${version.name} v${version.version}\n\nBuilt by Ratchet (${version.method}, TRL conversational format). Content hash ${version.contentHash}.\n`,
    );
  }
  return writers.counts;
}
