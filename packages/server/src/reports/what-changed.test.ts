import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startExperiment, stopExperiment } from '@ratchet/loop';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';

/**
 * "What changed" over the registry the loop leaves with stacked rounds, made with the calls the
 * loop makes (register, canary experiment, stop keeping the winner, promote): round 1 ships r1,
 * round 2's r2 is rolled back, round 3's r3 is trained on r1's merged folder again and ships.
 * r3's release notes must be against r1 (the weights it was built on), not r2 (the model
 * registered just before it on the route).
 */
for (const database of testDatabases()) {
  describe(`what changed with stacked models (${database.name})`, () => {
    let t: TestServer;
    const models = mkdtempSync(join(tmpdir(), 'ratchet-stacked-'));
    /** A merged model folder, as a stacked round's training writes it. */
    const merged = (name: string) => {
      const dir = join(models, name);
      mkdirSync(dir);
      writeFileSync(join(dir, 'config.json'), '{}');
      return dir;
    };
    const interactions = (model: string, from: number, count: number) =>
      Array.from({ length: count }, (_, i) => ({
        id: `${model}-${from + i}`,
        route: 'support',
        model,
        messages: [{ role: 'user', content: `question ${(from + i) % 5}` }],
        output: `answer ${from + i} from ${model}`,
      }));
    const rate = (items: { id: string }[], down: number, complaint: string) =>
      items.flatMap((it, i) => [
        { kind: 'thumbs', interactionId: it.id, raterId: 'ann', value: i < down ? 'down' : 'up' },
        ...(i < down ? [{ kind: 'comment', interactionId: it.id, raterId: 'ann', text: complaint }] : []),
      ]);
    const send = async (items: unknown[], path: string) =>
      expect((await t.call(`/api/v1/${path}`, { body: { items } })).status).toBe(201);
    const dataset = async () => {
      expect((await t.call('/api/v1/calibrations', { body: {} })).status).toBe(201);
      const built = await t.call('/api/v1/datasets', {
        body: {
          name: 'support-kto',
          method: 'kto',
          curation: false,
          options: { requireConfidentSign: false, margin: 0, split: { by: 'prompt', testFraction: 0 } },
        },
      });
      expect(built.body.error).toBeUndefined();
      return built.body.id as string;
    };
    /** One loop round: a candidate on `base`, a canary experiment against production, its outcome. */
    const round = async (n: number, base: string, datasetId: string, ships: boolean) => {
      const production = (await t.store.models.production(t.projectId, 'support'))!;
      const name = `support-r${n}`;
      await t.store.models.register(
        t.projectId,
        { name, route: 'support', baseModel: base, adapterPath: merged(name), datasetId, stage: 'candidate' },
        'loop',
      );
      const experiment = await startExperiment(t.store, t.projectId, {
        name,
        route: 'support',
        control: 'production',
        variants: [
          { name: 'production', model: production.name, upstream: 'local', weight: 0.9 },
          { name: 'candidate', model: name, upstream: 'local', weight: 0.1 },
        ],
        metric: 'thumbs_up_rate',
      });
      await t.store.models.setStage(t.projectId, name, 'canary', 'loop', `round ${n}: canary at 0.1`);
      await stopExperiment(t.store, t.projectId, experiment.id, {
        keep: ships ? 'candidate' : 'production',
        reason: `round ${n}: ${ships ? 'ship' : 'no_effect'}`,
      });
      await t.store.models.setStage(
        t.projectId,
        name,
        ships ? 'production' : 'archived',
        'loop',
        `round ${n}: ${ships ? 'the experiment shipped it' : 'no_effect'}`,
      );
    };

    beforeAll(async () => {
      t = await startTestServer(await database.create(), {
        config: { dataDir: mkdtempSync(join(tmpdir(), 'ratchet-stacked-data-')) },
      });
      await t.store.models.register(
        t.projectId,
        { name: 'support-base', route: 'support', baseModel: '/models/tiny', stage: 'production' },
        'person',
      );
      // Round 1 learns from the base model's answers.
      const base = interactions('support-base', 0, 20);
      await send(base, 'interactions');
      await send(rate(base, 8, 'the refund policy is wrong'), 'feedback');
      const first = await dataset();
      await round(1, '/models/tiny', first, true);
      const r1 = (await t.store.models.get(t.projectId, 'support-r1'))!;
      // r1 answers: still some refund complaints; more ratings arrive before round 2.
      const fromR1 = interactions('support-r1', 100, 20);
      await send(fromR1, 'interactions');
      await send(rate(fromR1, 6, 'the refund policy is wrong'), 'feedback');
      const second = await dataset();
      await round(2, r1.adapterPath!, second, false);
      await round(3, r1.adapterPath!, second, true);
      // r3's answers: hardly a refund complaint any more.
      const fromR3 = interactions('support-r3', 200, 20);
      await send(fromR3, 'interactions');
      await send(rate(fromR3, 1, 'rude tone'), 'feedback');
    }, 120_000);

    afterAll(async () => {
      await t?.close();
      await database.cleanup();
    });

    it('judges each stacked version against the weights it was built on, with the experiment that shipped it', async () => {
      let res = await t.call('/api/v1/dashboard/what-changed');
      for (let i = 0; i < 300 && !res.body.fresh; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        res = await t.call('/api/v1/dashboard/what-changed');
      }
      expect(res.body.fresh).toBe(true);
      const byName = new Map(
        res.body.report.items.map((x: { model: { name: string } }) => [x.model.name, x] as const),
      );
      // biome-ignore lint/suspicious/noExplicitAny: the report's JSON
      const note = (name: string): any => byName.get(name);

      expect(note('support-base').previous).toBeNull();
      expect(note('support-base').promotedBy).toBeNull();
      // Round 1 trained on the plain base (not stacked): judged against the production model it was tested against.
      expect(note('support-r1').previous).toMatchObject({ name: 'support-base', relation: 'tested-against' });
      expect(note('support-r1').promotedBy).toMatchObject({ name: 'support-r1', variant: 'candidate' });
      expect(note('support-r2').previous).toMatchObject({ name: 'support-r1', relation: 'built-on' });
      expect(note('support-r2').promotedBy).toBeNull();

      const r3 = note('support-r3');
      expect(r3.previous).toMatchObject({ name: 'support-r1', relation: 'built-on' });
      expect(r3.promotedBy).toMatchObject({
        name: 'support-r3',
        variant: 'candidate',
        against: 'production',
        reasons: ['round 3: ship'],
      });
      // Its dataset has all 40 rated answers; 20 of them (r1's) were not in r1's dataset.
      expect(r3.learnedFrom.interactions).toBe(40);
      expect(r3.newSincePrevious.interactions).toBe(20);
      expect(r3.newSincePrevious.feedbackByKind.thumbs).toBe(20);
      expect(r3.newSincePrevious.feedbackByKind.comment).toBe(6);
      // The refund theme: 6 of r1's 20 rated answers, none of r3's.
      const refund = r3.themes.find((x: { label: string }) => /refund|policy|wrong/.test(x.label));
      expect(refund).toBeDefined();
      expect(refund.previousRate).toBeCloseTo(6 / 20);
      expect(refund.rate).toBe(0);
    });
  });
}
