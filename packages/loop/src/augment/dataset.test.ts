import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FeedbackInput, InteractionInput, parseInput, RatchetError, type RowLineage } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrateProject } from '../calibrate.js';
import { buildDatasetVersion } from '../datasets.js';

// The paraphrase model is a test double (a real HTTP server speaking the OpenAI chat format, its
// "model" rewording by rule): a paraphrasing LLM cannot run in this test.
let server: Server;
let baseURL: string;
const asked: { text: string; auth: string | undefined }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const { messages, model } = JSON.parse(body);
      const text = messages[1].content as string;
      asked.push({ text, auth: req.headers.authorization });
      if (model === 'down') return void res.writeHead(503).end('{"error":{"message":"busy"}}');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ choices: [{ message: { role: 'assistant', content: `In other words: ${text}` } }] }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  process.env.RATCHET_TEST_PARAPHRASE_KEY = 'sk-paraphrase';
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** 40 questions of the pro plan, 6 of the free plan; a good and a bad answer each, rated by 4 people. */
function world() {
  const interactions = [];
  const feedback = [];
  for (let q = 0; q < 46; q++) {
    const plan = q < 40 ? 'plan:pro' : 'plan:free';
    for (const good of [true, false]) {
      const id = `q${q}-${good ? 'good' : 'bad'}`;
      interactions.push(
        parseInput(InteractionInput, {
          id,
          model: 'tiny',
          messages: [
            {
              role: 'user',
              content: `How can I change the delivery address of my order number ${q} please?`,
            },
          ],
          output: good ? `Open order ${q} and press Change address.` : 'That is not possible.',
          createdAt: 1_000_000 + q * 10 + (good ? 0 : 1),
          tags: [plan],
        }),
      );
      for (let r = 0; r < 4; r++)
        feedback.push(
          parseInput(FeedbackInput, {
            kind: 'stars',
            interactionId: id,
            raterId: `rater-${r}`,
            value: good ? 5 : 1,
          }),
        );
    }
  }
  return { interactions, feedback };
}

const readJsonl = <T>(path: string): T[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);

type Row = { prompt: { role: string; content: string }[]; completion: { content: string }[] };

for (const target of testDatabases()) {
  describe(`dataset augmentation on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-augment-'));
    const free = new Set(
      Array.from({ length: 6 }, (_, i) => 40 + i).flatMap((q) => [`q${q}-good`, `q${q}-bad`]),
    );

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('augment')).id;
      const w = world();
      await store.interactions.insert(projectId, w.interactions);
      await store.feedback.insert(projectId, w.feedback);
      await calibrateProject(store, projectId);
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('rewords the train prompts of the under-represented segment only, by EDA and the model, on record', async () => {
      asked.length = 0;
      const version = await buildDatasetVersion(
        store,
        projectId,
        {
          name: 'sft-augmented',
          method: 'sft',
          segmentTagPrefix: 'plan:',
          options: { split: { by: 'prompt', testFraction: 0.2, seed: 1 } },
          augment: {
            eda: { variants: 2, seed: 3 },
            paraphrase: { baseURL, model: 'para', apiKeyEnv: 'RATCHET_TEST_PARAPHRASE_KEY' },
          },
        },
        { dataDir },
      );
      const rows = readJsonl<Row>(join(version.path, 'rows.jsonl'));
      const lineage = readJsonl<RowLineage>(join(version.path, 'lineage.jsonl'));
      expect(rows).toHaveLength(version.rowCount);
      expect(lineage).toHaveLength(rows.length);

      const originals = lineage.filter((l) => !l.augmentation);
      const added = lineage.map((l, i) => ({ l, i })).filter(({ l }) => l.augmentation);
      const freeTrain = originals.filter((l) => l.split === 'train' && free.has(l.interactionIds[0]!));
      expect(freeTrain.length).toBeGreaterThan(0);
      expect(
        originals.filter((l) => l.split === 'train' && !free.has(l.interactionIds[0]!)).length,
      ).toBeGreaterThan(2 * freeTrain.length);

      const summary = version.manifest.augmentation as {
        sourceRows: number;
        eda: number;
        paraphrase: number;
        groups: Record<string, number>;
      };
      expect(summary.groups).toEqual({ 'plan:free': freeTrain.length });
      expect(summary.sourceRows).toBe(freeTrain.length);
      expect(summary.paraphrase).toBe(freeTrain.length);
      expect(summary.eda).toBeGreaterThanOrEqual(freeTrain.length);
      expect(summary.eda).toBeLessThanOrEqual(2 * freeTrain.length);
      expect(added).toHaveLength(summary.eda + summary.paraphrase);
      expect((version.manifest.stats as Record<string, number>).augmented_rows).toBe(added.length);

      const testPrompts = new Set(lineage.filter((l) => l.split === 'test').map((l) => l.promptHash));
      for (const { l, i } of added) {
        const source = lineage[l.augmentation!.sourceRow]!;
        // A copy of a train row of the free plan, in train, in its source's prompt group.
        expect(source.augmentation).toBeUndefined();
        expect(source.split).toBe('train');
        expect(free.has(source.interactionIds[0]!)).toBe(true);
        expect(l.split).toBe('train');
        expect(l.promptHash).toBe(source.promptHash);
        expect(l.interactionIds).toEqual(source.interactionIds);
        expect(testPrompts.has(l.promptHash)).toBe(false);
        // The prompt reworded, the answer kept.
        const from = rows[l.augmentation!.sourceRow]!;
        expect(rows[i]!.prompt.at(-1)!.content).not.toBe(from.prompt.at(-1)!.content);
        expect(rows[i]!.completion).toEqual(from.completion);
        if (l.augmentation!.method === 'paraphrase')
          expect(rows[i]!.prompt.at(-1)!.content).toBe(`In other words: ${from.prompt.at(-1)!.content}`);
        else expect(['synonym', 'insert', 'swap', 'delete']).toContain(l.augmentation!.operation);
      }
      // The model was asked about the free plan's train prompts only, with the key from the environment.
      expect(asked).toHaveLength(freeTrain.length);
      expect(asked.every((a) => a.auth === 'Bearer sk-paraphrase')).toBe(true);
      // The spec on record names the variable, never the key.
      expect(JSON.stringify(version.spec)).not.toContain('sk-paraphrase');
    });

    it('refuses an augment option with nothing to do, or by segment without segments, naming the field', async () => {
      const build = (augment: Record<string, unknown>, segmentTagPrefix?: string) =>
        buildDatasetVersion(
          store,
          projectId,
          { name: 'bad', method: 'sft', augment, ...(segmentTagPrefix ? { segmentTagPrefix } : {}) },
          { dataDir },
        );
      await expect(build({}, 'plan:')).rejects.toMatchObject({ code: 'invalid_request', path: 'augment' });
      await expect(build({ eda: {} })).rejects.toMatchObject({ code: 'invalid_request', path: 'augment.by' });
      await expect(build({ eda: { alpha: 2 } }, 'plan:')).rejects.toMatchObject({
        path: 'augment.eda.alpha',
      });
    });

    it('a paraphrase endpoint that fails stops the build with nothing written', async () => {
      const before = await store.datasets.list(projectId);
      const failed = await buildDatasetVersion(
        store,
        projectId,
        {
          name: 'sft-down',
          method: 'sft',
          segmentTagPrefix: 'plan:',
          augment: { paraphrase: { baseURL, model: 'down' } },
        },
        { dataDir },
      ).catch((err: unknown) => err);
      expect(failed).toBeInstanceOf(RatchetError);
      expect(failed).toMatchObject({ code: 'upstream_error', path: 'augment.paraphrase' });
      expect(await store.datasets.list(projectId)).toHaveLength(before.length);
    });
  });
}
