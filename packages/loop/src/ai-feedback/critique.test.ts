import { mkdtempSync, readFileSync } from 'node:fs';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AnswerQualities,
  composeAnswer,
  FeedbackInput,
  InteractionInput,
  parseInput,
  SeededRandom,
  samplePrompt,
} from '@ratchet/core';
import { type Feedback, Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrateProject } from '../calibrate.js';
import { buildDatasetVersion } from '../datasets.js';
import { LocalModelServer } from '../orchestrator/model-server.js';
import { demoDomainForTests } from '../test-utils/demo-domain.js';
import { runTraining, startTrainingRun } from '../training/runs.js';
import { chatDouble, tinyTestModel } from '../training/testing.js';
import { type SelfCritiqueReport, selfCritique } from './critique.js';

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const srv = createNetServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });

/**
 * Stands in for an LLM judge, which here would be a remote paid API. `first` always picks the
 * answer shown first (a position-biased judge); `revision` picks whichever answer is not one of
 * the logged originals, in either order.
 */
function judgeDouble(mode: { kind: 'first' } | { kind: 'revision'; originals: Set<string> }) {
  return chatDouble(({ messages }) => {
    const a = /\[ANSWER A\]\n([\s\S]*?)\n\[ANSWER B\]/.exec(messages.at(-1)!.content)![1]!;
    return `VERDICT: ${mode.kind === 'first' ? 'A' : mode.originals.has(a) ? 'B' : 'A'}`;
  });
}

const good: AnswerQualities = { correct: true, polite: true, concise: true, safe: true };
const bad: AnswerQualities = { correct: false, polite: false, concise: false, safe: true };

/**
 * Self-critique for real: the tiny model served by `ratchet-worker serve` critiques and revises
 * low-rated answers, and a reward model trained here on the project's ratings decides which
 * revisions beat their originals.
 */
describe('self-critique turns revisions of low-rated answers into judge corrections', () => {
  const db = sqliteTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-critique-'));
  const domain = demoDomainForTests();
  let store: Store;
  let projectId: string;
  let models: LocalModelServer;
  let rewardModel: string;
  const originals = new Map<string, string>();
  const base = () => ({
    route: 'support-bot',
    writer: { baseURL: models.baseUrl },
    rewardModel: { baseURL: models.baseUrl, model: rewardModel },
    maxTokens: 48,
    samples: 2,
    minMargin: 0.5,
    limit: 6,
    concurrency: 1,
  });
  const judgeCorrections = async (): Promise<Feedback[]> =>
    (await store.feedback.currentOfKinds(projectId, ['correction'])).filter((f) => f.source === 'judge');

  beforeAll(async () => {
    const baseModel = await tinyTestModel();
    store = await Store.open(await db.create());
    projectId = (await store.projects.create('critique')).id;
    // Per prompt a good and a bad answer on the route: three people like the good one, three
    // dislike the bad one. The bad answers are the low-rated ones to revise; both teach the
    // reward model what good means.
    const rng = new SeededRandom(5);
    const interactions = [];
    const feedback = [];
    for (let p = 0; p < 24; p++) {
      const prompt = samplePrompt(domain, rng);
      for (const [kind, qualities] of [
        ['good', good],
        ['bad', bad],
      ] as const) {
        const id = `p${p}-${kind}`;
        const output = composeAnswer(domain, rng, prompt.intent, qualities, prompt.slots);
        originals.set(id, output);
        interactions.push(
          parseInput(InteractionInput, {
            id,
            model: 'tiny-base',
            route: 'support-bot',
            messages: [{ role: 'user', content: prompt.text }],
            output,
          }),
        );
        for (let r = 0; r < 3; r++)
          feedback.push(
            parseInput(FeedbackInput, {
              kind: 'thumbs',
              interactionId: id,
              raterId: `user-${(p + r) % 8}`,
              value: kind === 'good' ? 'up' : 'down',
            }),
          );
      }
    }
    await store.interactions.insert(projectId, interactions);
    await store.feedback.insert(projectId, feedback);
    await calibrateProject(store, projectId);
    const dataset = await buildDatasetVersion(
      store,
      projectId,
      { name: 'support-reward', method: 'reward', options: { minMargin: 0.1 }, curation: false },
      { dataDir },
    );
    // Answers on two more routes, added after the reward model's data was built, that someone
    // rated down: good ones on `vip` (the reward model likes them), bad ones on `fair`.
    for (const [route, qualities] of [
      ['vip', good],
      ['fair', bad],
    ] as const) {
      for (let v = 0; v < 2; v++) {
        const prompt = samplePrompt(domain, rng);
        const id = `${route}-${v}`;
        const output = composeAnswer(domain, rng, prompt.intent, qualities, prompt.slots);
        originals.set(id, output);
        await store.interactions.insert(projectId, [
          parseInput(InteractionInput, {
            id,
            model: 'tiny-base',
            route,
            messages: [{ role: 'user', content: prompt.text }],
            output,
          }),
        ]);
        await store.feedback.insert(projectId, [
          parseInput(FeedbackInput, { kind: 'thumbs', interactionId: id, raterId: 'grump', value: 'down' }),
        ]);
      }
    }
    const run = await startTrainingRun(
      store,
      projectId,
      {
        method: 'reward',
        baseModel,
        dataset: dataset.id,
        modelName: 'support-reward',
        hyperparameters: { maxSteps: 12, batchSize: 8, learningRate: 0.005 },
      },
      { dataDir },
    );
    const outcome = await runTraining(store, run.id, { dataDir });
    expect(outcome?.model, outcome?.run.error ?? '').toBeTruthy();
    rewardModel = outcome!.model!.name;
    await store.models.register(
      projectId,
      { name: 'tiny-base', route: 'support-bot', baseModel, stage: 'production' },
      'test',
    );
    models = new LocalModelServer({ baseModel, baseName: 'tiny-base', port: await freePort() });
    await models.ensure([{ name: rewardModel, adapterPath: outcome!.model!.adapterPath }]);
  }, 600_000);
  afterAll(async () => {
    await models?.stop();
    await store?.close();
    await db.cleanup();
  });

  it('rejects every revision when the judge prefers it in one order only (the judge is a test double: a paid judge API cannot run here)', async () => {
    const judge = judgeDouble({ kind: 'first' });
    const report = await selfCritique(store, projectId, {
      ...base(),
      judge: { baseURL: await judge.start(), model: 'position-biased' },
    }).finally(() => judge.close());
    expect(report.firstError).toBeUndefined();
    expect(report.looked).toBe(6);
    expect(report.kept).toBe(0);
    // Only revisions that passed the reward model reach the judge, in both orders.
    const passed = report.items.filter((i) => i.revisionScore! - i.originalScore! > 0.5).length;
    expect(report.rejected.judge).toBe(passed);
    expect(judge.calls()).toBeGreaterThanOrEqual(2 * passed);
    expect(await judgeCorrections()).toEqual([]);
  }, 120_000);

  let kept: SelfCritiqueReport;
  it('keeps what the reward model scores above the original by the margin, as a correction from source judge', async () => {
    kept = await selfCritique(store, projectId, base());
    expect(kept.firstError).toBeUndefined();
    expect(kept.rater).toBe('judge:tiny-base');
    expect(kept.kept).toBeGreaterThan(0);
    const stored = new Map((await judgeCorrections()).map((f) => [f.interactionId, f]));
    expect(stored.size).toBe(kept.kept);
    for (const item of kept.items) {
      const margin = item.revisionScore! - item.originalScore!;
      const correction = stored.get(item.interactionId);
      if (margin > 0.5) {
        expect(item.outcome).toBe('kept');
        expect(correction).toMatchObject({
          kind: 'correction',
          source: 'judge',
          raterId: 'judge:tiny-base',
          metadata: { model: 'tiny-base', rewardModel, revisionScore: item.revisionScore },
        });
        expect(correction!.text).toBe(item.revision);
        expect(correction!.text).not.toBe(originals.get(item.interactionId));
        expect(typeof correction!.metadata.critique).toBe('string');
      } else {
        // Scored below the original (or not far enough above), or no usable revision: nothing stored.
        expect(item.outcome).toBe(item.revisionScore === null ? 'no_revision' : 'reward');
        expect(correction).toBeUndefined();
      }
    }
  }, 120_000);

  it('keeps a revision the judge prefers in both orders, with its verdicts (the judge is a test double: a paid judge API cannot run here)', async () => {
    const judge = judgeDouble({ kind: 'revision', originals: new Set(originals.values()) });
    const report = await selfCritique(store, projectId, {
      ...base(),
      route: 'fair',
      writer: { baseURL: models.baseUrl, model: 'tiny-base' },
      select: { maxReward: null },
      judge: { baseURL: await judge.start(), model: 'fair' },
    }).finally(() => judge.close());
    expect(report.firstError).toBeUndefined();
    expect(report.looked).toBe(2);
    const passed = report.items.filter((i) => i.revisionScore! - i.originalScore! > 0.5);
    expect(passed.length).toBeGreaterThan(0);
    expect(report.kept).toBe(passed.length);
    const stored = new Map((await judgeCorrections()).map((f) => [f.interactionId, f]));
    for (const i of passed)
      expect(stored.get(i.interactionId)?.metadata).toMatchObject({
        judge: { model: 'fair', orders: ['A', 'B'] },
      });
  }, 120_000);

  it('puts kept corrections into SFT rows and DPO pairs of a built dataset', async () => {
    const corrections = await judgeCorrections();
    expect(corrections.length).toBeGreaterThan(0);
    const rows = async (method: 'sft' | 'dpo') => {
      const v = await buildDatasetVersion(
        store,
        projectId,
        { name: `support-${method}`, method, curation: false },
        { dataDir },
      );
      return readFileSync(join(v.path, 'rows.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
    };
    const sft = await rows('sft');
    const dpo = await rows('dpo');
    for (const c of corrections) {
      expect(sft.some((r) => r.completion[0].content === c.text)).toBe(true);
      expect(
        dpo.some(
          (r) => r.chosen[0].content === c.text && r.rejected[0].content === originals.get(c.interactionId),
        ),
      ).toBe(true);
    }
  }, 60_000);

  it('does not keep a revision the reward model scores below the original', async () => {
    // Good answers someone rated down: the reward model likes them, so revisions rarely beat them.
    const report = await selfCritique(store, projectId, {
      ...base(),
      route: 'vip',
      writer: { baseURL: models.baseUrl, model: 'tiny-base' },
      select: { maxReward: null, thumbsDown: true },
    });
    expect(report.firstError).toBeUndefined();
    expect(report.looked).toBe(2);
    const below = report.items.filter((i) => i.revisionScore! < i.originalScore!);
    expect(below.length).toBeGreaterThan(0);
    for (const i of below) expect(i.outcome).toBe('reward');
    const stored = new Set((await judgeCorrections()).map((f) => f.interactionId));
    for (const i of below) expect(stored.has(i.interactionId)).toBe(false);
  }, 120_000);

  it('writes nothing twice when run again', async () => {
    const before = await store.feedback.count(projectId);
    const keptIds = new Set(kept.items.filter((i) => i.outcome === 'kept').map((i) => i.interactionId));
    const again = await selfCritique(store, projectId, base());
    expect(again.firstError).toBeUndefined();
    // The corrected answers are skipped; the rest are decided again, and the same way (greedy
    // critique, seeded samples, the same reward model), so nothing new is kept for them either.
    expect(again.skipped).toBe(keptIds.size);
    expect(again.items.some((i) => keptIds.has(i.interactionId))).toBe(false);
    for (const earlier of kept.items.filter((i) => i.outcome !== 'kept'))
      expect(again.items.find((i) => i.interactionId === earlier.interactionId)?.outcome).toBe(
        earlier.outcome,
      );
    const corrections = await judgeCorrections();
    expect(new Set(corrections.map((c) => c.interactionId)).size).toBe(corrections.length);
    expect(await store.feedback.count(projectId)).toBe(before + again.kept);
  }, 120_000);
});
