import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  composeAnswer,
  FeedbackInput,
  InteractionInput,
  judgeAnswer,
  parseInput,
  SeededRandom,
  samplePrompt,
} from '@ratchet/core';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoDomainForTests } from '../test-utils/demo-domain.js';
import { tinyTestModel } from '../training/testing.js';
import { personalize, segmentModelsToServe, withSegmentVariants } from './personalize.js';

const domain = demoDomainForTests();

/**
 * Calls of three segments, each answered twice (one answer of each style) and thumbed by its
 * segment's taste: the busy like concise answers (polite or not), the courteous like polite ones
 * (rambling or not). `rare` has too few ratings for an adapter.
 */
function traffic() {
  const rng = new SeededRandom(5);
  const interactions: ReturnType<typeof parseInput<typeof InteractionInput>>[] = [];
  const feedback: ReturnType<typeof parseInput<typeof FeedbackInput>>[] = [];
  const plan = { busy: 30, courteous: 30, rare: 3 } as const;
  let n = 0;
  for (const [segment, prompts] of Object.entries(plan)) {
    for (let p = 0; p < prompts; p++) {
      const prompt = samplePrompt(domain, rng);
      const styles = [
        { polite: segment !== 'busy', concise: true },
        { polite: segment === 'busy', concise: segment === 'rare' },
      ];
      for (const style of styles) {
        const id = `i${n++}`;
        const answer = composeAnswer(
          domain,
          rng,
          prompt.intent,
          { correct: true, safe: true, ...style },
          prompt.slots,
        );
        const q = judgeAnswer(domain, prompt.text, answer);
        const liked = segment === 'busy' ? q.concise : q.polite;
        interactions.push(
          parseInput(InteractionInput, {
            id,
            model: 'tiny',
            route: 'support-bot',
            messages: [{ role: 'user', content: prompt.text }],
            output: answer,
            tags: [`segment:${segment}`],
            createdAt: 1_000_000 + n,
          }),
        );
        feedback.push(
          parseInput(FeedbackInput, {
            kind: 'thumbs',
            interactionId: id,
            raterId: `${segment}-user-${p % 7}`,
            value: liked ? 'up' : 'down',
          }),
        );
      }
    }
  }
  return { interactions, feedback };
}

describe('personalize: per-segment datasets, adapters and routes (SQLite, real worker)', () => {
  const db = sqliteTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-personalize-'));
  let store: Store;
  let projectId: string;
  let base: string;

  beforeAll(async () => {
    base = await tinyTestModel();
    store = await Store.open(await db.create());
    projectId = (await store.projects.create('personal')).id;
    const t = traffic();
    await store.interactions.insert(projectId, t.interactions);
    await store.feedback.insert(projectId, t.feedback);
    await store.routes.put(projectId, 'support-bot', [
      { name: 'production', upstream: 'worker', model: 'tiny-support', weight: 1 },
    ]);
  }, 600_000);
  afterAll(async () => {
    await store?.close();
    await db.cleanup();
  });

  const spec = () => ({
    route: 'support-bot',
    baseModel: base,
    minRatings: 40,
    dataset: { method: 'sft' as const, options: { minReward: 0.01, minLower: -1 }, curation: false as const },
    training: { hyperparameters: { maxSteps: 2, batchSize: 8, learningRate: 2e-3 } },
  });

  it("trains each segment's adapter on its own feedback only and routes the segment to it", async () => {
    const result = await personalize(store, projectId, spec(), {
      dataDir,
      training: { env: { OMP_NUM_THREADS: '1' } },
    });
    const by = Object.fromEntries(result.segments.map((s) => [s.segment, s]));
    expect(Object.keys(by)).toEqual(['busy', 'courteous', 'rare']);
    expect(by.rare).toMatchObject({ ratings: 6, skipped: '6 ratings, fewer than 40' });
    expect(by.rare!.model).toBeUndefined();

    for (const segment of ['busy', 'courteous'] as const) {
      const s = by[segment]!;
      expect(s.ratings).toBe(60);
      expect(s.model).toMatchObject({
        name: `support-bot-${segment}-r1`,
        route: `support-bot:${segment}`,
        stage: 'candidate',
      });
      // The dataset is the segment's liked answers, nothing from the other segments.
      const version = (await store.datasets.get(projectId, s.datasetId!))!;
      expect(version.spec).toMatchObject({ segment: { tag: `segment:${segment}` } });
      const rows = readFileSync(join(version.path, 'rows.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { prompt: { content: string }[]; completion: { content: string }[] });
      expect(rows.length).toBe(30);
      for (const row of rows) {
        const q = judgeAnswer(domain, row.prompt[0]!.content, row.completion[0]!.content);
        if (segment === 'busy') expect([q.concise, q.polite]).toEqual([true, false]);
        else expect([q.polite, q.concise]).toEqual([true, true]);
      }
    }
    const route = (await store.routes.get(projectId, 'support-bot'))!;
    expect(route.variants).toEqual([
      { name: 'production', upstream: 'worker', model: 'tiny-support', weight: 1 },
      {
        name: 'segment-busy',
        upstream: 'worker',
        model: 'support-bot-busy-r1',
        weight: 1,
        modelId: by.busy!.model!.id,
        segment: { tag: 'segment:busy' },
      },
      {
        name: 'segment-courteous',
        upstream: 'worker',
        model: 'support-bot-courteous-r1',
        weight: 1,
        modelId: by.courteous!.model!.id,
        segment: { tag: 'segment:courteous' },
      },
    ]);
  }, 300_000);

  it("replaces a segment's adapter, with a canary share against the global model", async () => {
    // Training is covered above; the route change is a pure function of what was trained.
    const route = (await store.routes.get(projectId, 'support-bot'))!;
    const busy = (await store.models.get(projectId, 'support-bot-busy-r1'))!;
    const next = { ...busy, id: 'm-next', name: 'support-bot-busy-r2' };
    const variants = withSegmentVariants(
      route.variants,
      [{ segment: 'busy', tag: 'segment:busy', model: next }],
      {
        upstream: 'worker',
        share: 0.25,
      },
    );
    expect(variants.map((v) => [v.name, v.model, v.weight, v.segment])).toEqual([
      ['production', 'tiny-support', 1, undefined],
      ['segment-courteous', 'support-bot-courteous-r1', 1, { tag: 'segment:courteous' }],
      ['segment-busy', 'support-bot-busy-r2', 0.25, { tag: 'segment:busy' }],
      ['segment-busy-global', 'tiny-support', 0.75, { tag: 'segment:busy' }],
    ]);
    expect((await segmentModelsToServe(store, projectId, 'support-bot')).map((m) => m.name).sort()).toEqual([
      'support-bot-busy-r1',
      'support-bot-courteous-r1',
    ]);
    const audit = await store.audit.list(projectId, { subjectType: 'route' });
    expect(audit[0]).toMatchObject({
      action: 'route.updated',
      details: { personalized: ['busy', 'courteous'] },
    });
  });

  it('names the field of a bad spec and says when no call carries a segment', async () => {
    await expect(personalize(store, projectId, { ...spec(), share: 2 })).rejects.toThrow(/share/);
    await expect(personalize(store, projectId, { ...spec(), tagPrefix: 'plan:' })).rejects.toThrow(
      /no rated calls carry a "plan:\.\.\." tag/,
    );
  });
});
