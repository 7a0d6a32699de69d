import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dayMs, FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrateProject } from '../calibrate.js';
import { buildDatasetVersion } from '../datasets.js';
import { applyRetention, applyRetentionToAll } from './index.js';

const facts = { upstreams: ['local'], routeUpstreams: {}, defaultUpstream: 'local' };

for (const target of testDatabases()) {
  describe(`retention on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    let dataDir: string;
    const now = Date.now();
    /** Interaction ids by age: old ones trained the production model, old ones did not, recent ones. */
    const trained = ['t1', 't2', 't3', 't4'];
    const oldUntrained = ['o1', 'o2', 'o3', 'o4'];
    const recent = ['n1', 'n2'];

    const log = async (ids: string[], ageDays: number) => {
      await store.interactions.insert(
        projectId,
        ids.map((id, i) =>
          parseInput(InteractionInput, {
            id,
            model: 'tiny',
            route: 'support',
            messages: [{ role: 'user', content: `question ${id}` }],
            output: `answer ${id}`,
            createdAt: now - ageDays * dayMs - i,
          }),
        ),
      );
      await store.feedback.insert(
        projectId,
        ids.flatMap((id, i) =>
          ['r1', 'r2'].map((raterId) =>
            parseInput(FeedbackInput, {
              kind: 'thumbs',
              interactionId: id,
              raterId,
              source: 'annotator',
              value: i % 2 ? 'up' : 'down',
            }),
          ),
        ),
      );
    };

    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'ratchet-retention-'));
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('retention')).id;
      await log(trained, 40);
      await calibrateProject(store, projectId);
      const version = await buildDatasetVersion(
        store,
        projectId,
        {
          name: 'kto',
          method: 'kto',
          curation: false,
          options: { requireConfidentSign: false, margin: 0, split: { by: 'prompt', testFraction: 0 } },
        },
        { dataDir },
      );
      await store.models.register(
        projectId,
        { name: 'support-v1', route: 'support', baseModel: 'tiny', datasetId: version.id },
        'test',
      );
      await store.models.setStage(projectId, 'support-v1', 'production', 'test', 'baseline', facts);
      await log(oldUntrained, 40);
      await log(recent, 2);
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    });

    const remaining = async () =>
      (await store.interactions.list(projectId, {}, { limit: 100 })).items.map((i) => i.id).sort();

    it('does nothing without a policy', async () => {
      expect(await applyRetention(store, projectId)).toBeUndefined();
      expect(await remaining()).toHaveLength(10);
    });

    it('deletes what is older than N days except what a production model was trained on, audited', async () => {
      await store.projects.setRetention(projectId, { days: 30, keepProductionTrainingData: true }, 'test');
      const [report] = await applyRetentionToAll(store, { now });
      expect(report).toMatchObject({ projectId, batches: 1 });
      expect(report!.counts).toMatchObject({ interactions: 4, feedback: 8 });
      expect(await remaining()).toEqual([...recent, ...trained].sort());
      const [entry] = await store.audit.list(projectId, { action: 'data.deleted' });
      expect(entry).toMatchObject({ actor: 'retention', subjectType: 'retention' });
      expect((entry!.details as { counts: { interactions: number } }).counts.interactions).toBe(4);
      // Nothing is left to do on the next pass, and it audits nothing.
      expect(await applyRetentionToAll(store, { now })).toEqual([]);
      expect(await store.audit.list(projectId, { action: 'data.deleted' })).toHaveLength(1);
    });

    it('with keepProductionTrainingData off, the production model loses its data and is marked', async () => {
      await store.projects.setRetention(projectId, { days: 30, keepProductionTrainingData: false }, 'test');
      const report = await applyRetention(store, projectId, { now });
      expect(report!.counts.interactions).toBe(4);
      expect(await remaining()).toEqual([...recent].sort());
      expect(report!.models.map((m) => m.name)).toEqual(['support-v1']);
      const model = await store.models.get(projectId, 'support-v1');
      expect(model!.dataDeletedAt).toEqual(expect.any(Number));
      const version = await store.datasets.get(projectId, 'kto@1');
      expect(version).toMatchObject({ deletedInteractions: 4, dataDeletedAt: expect.any(Number) });
      expect(readFileSync(join(version!.path, 'rows.jsonl'), 'utf8').trim()).toBe('');
    });

    it('refuses a bad policy naming the field, keeping the one it had', async () => {
      await expect(
        store.projects.setRetention(projectId, { days: 0 } as never, 'test'),
      ).rejects.toMatchObject({
        code: 'invalid_request',
        path: 'days',
      });
      expect(await store.projects.retention(projectId)).toEqual({
        days: 30,
        keepProductionTrainingData: false,
      });
    });
  });
}
