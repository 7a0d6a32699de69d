import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DatasetVersion } from '@ratchet/store';
import { describe, expect, it } from 'vitest';
import { exportDataset } from './exports.js';

const python = join(fileURLToPath(import.meta.url), '../../../../.venv/bin/python');
const q = (t: string) => [{ role: 'user', content: t }];
const a = (t: string) => [{ role: 'assistant', content: t }];

function version(method: string, rows: object[], splits: string[]): DatasetVersion {
  const path = mkdtempSync(join(tmpdir(), `ratchet-ds-${method}-`));
  writeFileSync(join(path, 'rows.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  writeFileSync(
    join(path, 'lineage.jsonl'),
    splits
      .map((split) => JSON.stringify({ split, interactionIds: [], feedbackIds: [], promptHash: 'h' }))
      .join('\n') + '\n',
  );
  return {
    id: 'd',
    projectId: 'p',
    name: `${method}-set`,
    version: 1,
    method,
    spec: {},
    contentHash: 'abc',
    rowCount: rows.length,
    manifest: {},
    path,
    calibrationId: null,
    createdAt: 0,
  };
}

const read = (p: string) =>
  readFileSync(p, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

describe('dataset exports', () => {
  const kto = version(
    'kto',
    [
      { prompt: q('hi'), completion: a('hello'), label: true },
      { prompt: q('hi'), completion: a('go away'), label: false },
      { prompt: q('bye'), completion: a('goodbye'), label: true },
    ],
    ['train', 'train', 'test'],
  );
  const dpo = version('dpo', [{ prompt: q('hi'), chosen: a('hello'), rejected: a('go away') }], ['train']);

  it('writes TRL rows per split unchanged', async () => {
    const out = mkdtempSync(join(tmpdir(), 'ratchet-trl-'));
    expect(await exportDataset(kto, 'trl', out)).toEqual({ train: 2, test: 1 });
    expect(read(join(out, 'train.jsonl'))[1]).toEqual({
      prompt: q('hi'),
      completion: a('go away'),
      label: false,
    });
  });

  it('writes OpenAI fine-tuning JSONL: chat rows for SFT-like data, preference rows for DPO', async () => {
    const sftOut = mkdtempSync(join(tmpdir(), 'ratchet-oai-'));
    expect(await exportDataset(kto, 'openai', sftOut)).toEqual({ train: 1, test: 1 });
    expect(read(join(sftOut, 'train.jsonl'))[0]).toEqual({ messages: [...q('hi'), ...a('hello')] });
    const dpoOut = mkdtempSync(join(tmpdir(), 'ratchet-oai-'));
    await exportDataset(dpo, 'openai', dpoOut);
    expect(read(join(dpoOut, 'train.jsonl'))[0]).toEqual({
      input: { messages: q('hi') },
      preferred_output: a('hello'),
      non_preferred_output: a('go away'),
    });
  });

  it('writes a folder the Hugging Face datasets library loads with its splits', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'ratchet-hf-')), 'kto');
    mkdirSync(out);
    await exportDataset(kto, 'hf', out);
    const script = `import datasets, json, sys\nd = datasets.load_dataset(sys.argv[1])\nprint(json.dumps({k: [d[k].num_rows, d[k].column_names] for k in d}))`;
    const loaded = JSON.parse(
      execFileSync(python, ['-c', script, out], {
        encoding: 'utf8',
        env: { ...process.env, HF_DATASETS_OFFLINE: '1', HF_HUB_OFFLINE: '1', HF_HOME: join(out, '.hf') },
      }),
    );
    expect(loaded).toEqual({
      train: [2, ['prompt', 'completion', 'label']],
      test: [1, ['prompt', 'completion', 'label']],
    });
  }, 60_000);
});
