import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

const newRun = (outputDir: string) => ({
  method: 'sft',
  baseModel: '/models/tiny',
  datasetId: null,
  spec: { method: 'sft', hyperparameters: { max_steps: 4 } },
  request: { dataset: 'support@1', modelName: 'bot-sft' },
  outputDir,
});

for (const target of testDatabases()) {
  describe(`training runs on ${target.name}`, () => {
    let store: Store;
    let projectId: string;

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('runs')).id;
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('goes queued -> running -> succeeded with progress, metric series and artifacts', async () => {
      const run = await store.runs.create(projectId, newRun('/out/a'));
      expect(run).toMatchObject({
        status: 'queued',
        attempts: 0,
        progress: {},
        metrics: {},
        startedAt: null,
      });
      expect(run.request).toEqual({ dataset: 'support@1', modelName: 'bot-sft' });

      const claimed = await store.runs.claim(run.id, 'host:1');
      expect(claimed).toMatchObject({ status: 'running', attempts: 1, worker: 'host:1' });
      expect(claimed?.startedAt).toBeGreaterThan(0);
      // A second process cannot take a run that is owned and alive.
      expect(await store.runs.claim(run.id, 'host:2')).toBeUndefined();
      expect(await store.runs.claim(run.id, 'host:2', { staleMs: 60_000 })).toBeUndefined();

      await store.runs.updateProgress(run.id, { step: 2, total: 4, loss: 1.5, eta_s: 3 });
      await store.runs.appendMetrics(run.id, {
        loss: [
          [1, 2.0],
          [2, 1.5],
        ],
        learning_rate: [[1, 0.01]],
      });
      await store.runs.appendMetrics(run.id, { loss: [[3, 1.1]] });
      const done = await store.runs.finish(run.id, 'succeeded', {
        artifacts: { adapter_path: '/out/a/adapter' },
      });
      expect(done).toBe(true);
      // Finishing twice changes nothing: the first outcome stands.
      expect(await store.runs.finish(run.id, 'failed', { error: 'late' })).toBe(false);

      const got = await store.runs.get(run.id, projectId);
      expect(got).toMatchObject({
        status: 'succeeded',
        progress: { step: 2, total: 4, loss: 1.5 },
        metrics: {
          loss: [
            [1, 2],
            [2, 1.5],
            [3, 1.1],
          ],
          learning_rate: [[1, 0.01]],
        },
        artifacts: { adapter_path: '/out/a/adapter' },
        error: null,
      });
      expect(got?.finishedAt).toBeGreaterThanOrEqual(got!.startedAt!);
      expect(await store.runs.get(run.id, 'another-project')).toBeUndefined();
    });

    it('replaces the steps a resumed run repeats in its metric series', async () => {
      const run = await store.runs.create(projectId, newRun('/out/b'));
      await store.runs.appendMetrics(run.id, {
        loss: [
          [1, 3],
          [2, 2.5],
          [3, 2.2],
        ],
      });
      await store.runs.appendMetrics(run.id, {
        loss: [
          [3, 2.1],
          [4, 1.9],
        ],
      });
      expect((await store.runs.get(run.id))?.metrics.loss).toEqual([
        [1, 3],
        [2, 2.5],
        [3, 2.1],
        [4, 1.9],
      ]);
    });

    it('finds runs orphaned by a crash and lets exactly one process reclaim them', async () => {
      const run = await store.runs.create(projectId, newRun('/out/c'));
      await store.runs.claim(run.id, 'host:dead');
      expect((await store.runs.findOrphaned(60_000, projectId)).map((r) => r.id)).not.toContain(run.id);
      await new Promise((r) => setTimeout(r, 30));
      const orphans = await store.runs.findOrphaned(10, projectId);
      expect(orphans.map((r) => r.id)).toContain(run.id);

      const [a, b] = await Promise.all([
        store.runs.claim(run.id, 'host:a', { staleMs: 10 }),
        store.runs.claim(run.id, 'host:b', { staleMs: 10 }),
      ]);
      expect([a, b].filter(Boolean)).toHaveLength(1);
      const again = (await store.runs.get(run.id))!;
      expect(again.attempts).toBe(2);
      expect(['host:a', 'host:b']).toContain(again.worker);
    });

    it('cancels a queued run at once and flags a running one for its owner', async () => {
      const queued = await store.runs.create(projectId, newRun('/out/d'));
      expect(await store.runs.requestCancel(queued.id, projectId)).toMatchObject({ status: 'cancelled' });
      expect(await store.runs.claim(queued.id, 'host:1')).toBeUndefined();

      const running = await store.runs.create(projectId, newRun('/out/e'));
      await store.runs.claim(running.id, 'host:1');
      expect(await store.runs.heartbeat(running.id)).toEqual({ cancelRequested: false });
      const flagged = await store.runs.requestCancel(running.id, projectId);
      expect(flagged.status).toBe('running');
      expect(flagged.cancelRequestedAt).toBeGreaterThan(0);
      expect(await store.runs.heartbeat(running.id)).toEqual({ cancelRequested: true });
      await store.runs.finish(running.id, 'cancelled');

      const finished = await store.runs.create(projectId, newRun('/out/f'));
      await store.runs.claim(finished.id, 'host:1');
      await store.runs.finish(finished.id, 'failed', { error: 'boom' });
      await expect(store.runs.requestCancel(finished.id, projectId)).rejects.toThrow(/already failed/);
      await expect(store.runs.requestCancel('nope', projectId)).rejects.toThrow(/not found/);
    });

    it('lists newest first, filtered by status', async () => {
      const all = await store.runs.list(projectId);
      expect(all.length).toBeGreaterThanOrEqual(5);
      expect(all.map((r) => r.createdAt)).toEqual([...all.map((r) => r.createdAt)].sort((x, y) => y - x));
      const cancelled = await store.runs.list(projectId, { status: 'cancelled' });
      expect(cancelled.length).toBe(2);
      expect(cancelled.every((r) => r.status === 'cancelled')).toBe(true);
    });
  });
}
