import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { advanceLoop, type LoopContext } from './loop.js';
import { LoopPolicy } from './policy.js';

/**
 * The build stage of a round whose policy imitates production's own answers: the sft dataset
 * keeps production's liked answers and people's corrections, not an older model's liked answers.
 * Training is not run here (no worker: the round fails at train, after the build is recorded).
 */
for (const db of testDatabases()) {
  describe(`the loop's sft dataset from production's own answers (${db.name})`, () => {
    let store: Store;
    const saved = process.env.RATCHET_WORKER_BIN;

    beforeAll(async () => {
      process.env.RATCHET_WORKER_BIN = '/nonexistent/ratchet-worker';
      store = await Store.open(await db.create());
    });
    afterAll(async () => {
      if (saved === undefined) delete process.env.RATCHET_WORKER_BIN;
      else process.env.RATCHET_WORKER_BIN = saved;
      await store?.close();
      await db.cleanup();
    });

    it.each([true, false])('productionAnswersOnly %s', async (own) => {
      const projectId = (await store.projects.create(`build-${own}`)).id;
      const route = 'bot';
      await store.models.register(
        projectId,
        { name: 'bot-old', route, baseModel: '/m', stage: 'archived' },
        't',
      );
      await store.models.register(
        projectId,
        { name: 'bot-prod', route, baseModel: '/m', stage: 'production' },
        't',
      );
      // 40 prompts; each has a liked answer from each model and a disliked one from the old model.
      const answers = Array.from({ length: 40 }, (_, p) => [
        { id: `p${p}`, model: 'bot-prod', up: true },
        { id: `o${p}`, model: 'bot-old', up: true },
        { id: `x${p}`, model: 'bot-old', up: false },
      ]).flat();
      await store.interactions.insert(
        projectId,
        answers.map((a) =>
          parseInput(InteractionInput, {
            id: `${projectId}-${a.id}`,
            model: a.model,
            route,
            messages: [{ role: 'user', content: `question number ${a.id.slice(1)} about orders` }],
            output: `answer ${a.id}`,
          }),
        ),
      );
      await store.feedback.insert(projectId, [
        ...answers.map((a, k) =>
          parseInput(FeedbackInput, {
            kind: 'thumbs',
            interactionId: `${projectId}-${a.id}`,
            raterId: `r${k % 9}`,
            value: a.up ? 'up' : 'down',
          }),
        ),
        parseInput(FeedbackInput, {
          kind: 'correction',
          interactionId: `${projectId}-x0`,
          raterId: 'r1',
          text: 'The corrected answer.',
        }),
      ]);
      const policy = LoopPolicy.parse({
        route,
        baseModel: '/m',
        upstream: 'up',
        dataset: {
          method: 'sft',
          options: { minReward: 0.01, minLower: -1, split: { by: 'prompt', testFraction: 0.25 } },
          productionAnswersOnly: own,
        },
        training: { method: 'sft' },
      });
      const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-build-stage-'));
      const ctx: LoopContext = { store, projectId, policy, modelsBaseUrl: 'http://127.0.0.1:9', dataDir };
      const round = await advanceLoop(ctx, { start: true });
      expect(round).toMatchObject({ status: 'failed', stage: 'done' });
      expect(round!.error).toMatch(/^train:/);
      const datasetId = (round!.state as { datasetId: string }).datasetId;
      const members = await store.datasets.members(projectId, datasetId);
      const ids = members.map((m) => m.replace(`${projectId}-`, ''));
      expect(ids.filter((i) => i.startsWith('p'))).toHaveLength(40);
      // The correction of an old answer is kept either way (its row's lineage is that answer).
      expect(ids).toContain('x0');
      expect(ids.filter((i) => i.startsWith('o'))).toHaveLength(own ? 0 : 40);
    });
  });
}
