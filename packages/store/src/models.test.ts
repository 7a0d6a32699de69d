import { RatchetError } from '@ratchet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

for (const target of testDatabases()) {
  describe(`model registry on ${target.name}`, () => {
    let store: Store;
    let projectId: string;

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('registry')).id;
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('promotes through the stages, replacing production, and rolls back to the replaced model', async () => {
      const a = await store.models.register(
        projectId,
        { name: 'bot-v1', route: 'support', baseModel: 'tiny' },
        'test',
      );
      await store.models.setStage(projectId, a.id, 'production', 'test', 'first model');
      await store.models.register(
        projectId,
        { name: 'bot-v2', route: 'support', baseModel: 'tiny', adapterPath: '/x' },
        'test',
      );
      await store.models.setStage(projectId, 'bot-v2', 'canary', 'test', 'gate passed');
      await store.models.setStage(projectId, 'bot-v2', 'production', 'test', 'experiment shipped');
      expect((await store.models.get(projectId, a.id))?.stage).toBe('archived');
      expect((await store.models.production(projectId, 'support'))?.name).toBe('bot-v2');

      const { from, to } = await store.models.rollback(projectId, 'support', 'test', 'complaints spiked');
      expect([from.name, from.stage, to.name, to.stage]).toEqual([
        'bot-v2',
        'archived',
        'bot-v1',
        'production',
      ]);
      expect((await store.models.production(projectId, 'support'))?.id).toBe(a.id);
      await expect(store.models.rollback(projectId, 'support', 'test', 'again')).rejects.toThrow(
        /no earlier production model/,
      );

      const log = await store.audit.list(projectId, { subjectType: 'model' });
      expect(log.map((e) => e.action).reverse()).toEqual([
        'model.registered',
        'model.stage',
        'model.registered',
        'model.stage',
        'model.replaced',
        'model.stage',
        'model.rolled_back',
        'model.restored',
      ]);
      expect(log[0]).toMatchObject({
        actor: 'test',
        details: { route: 'support', reason: 'complaints spiked' },
      });
    });

    it('refuses moves the lifecycle does not allow, and unknown models, changing nothing', async () => {
      const before = (await store.audit.list(projectId, { limit: 1000 })).length;
      await expect(store.models.setStage(projectId, 'bot-v1', 'canary', 'test', 'x')).rejects.toMatchObject({
        code: 'conflict',
        path: 'stage',
      });
      await expect(
        store.models.setStage(projectId, 'nope', 'production', 'test', 'x'),
      ).rejects.toBeInstanceOf(RatchetError);
      await expect(
        store.models.register(projectId, { name: 'bot-v1', baseModel: 'tiny' }, 'test'),
      ).rejects.toMatchObject({ code: 'conflict' });
      await expect(store.models.rollback(projectId, 'other-route', 'test', 'x')).rejects.toMatchObject({
        path: 'route',
      });
      expect((await store.audit.list(projectId, { limit: 1000 })).length).toBe(before);
    });
  });
}
