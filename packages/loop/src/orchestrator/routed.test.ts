import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withRoutedModels } from './routed.js';

for (const target of testDatabases()) {
  describe(`the models a stage asks to serve keep what the route sends users to, on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('serving')).id;
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it("adds the route's production, a watch's holdback and a segment's adapter, once each, and nothing else", async () => {
      const register = (name: string, adapterPath: string | null) =>
        store.models.register(
          projectId,
          { name, route: 'support', baseModel: '/m/base', adapterPath },
          'test',
        );
      const r1 = await register('support-r1', '/runs/r1/adapter');
      const r2 = await register('support-r2', '/runs/r2/adapter');
      const brisk = await register('support-brisk', '/runs/brisk/adapter');
      await register('support-r0', '/runs/r0/adapter'); // registered but routed nowhere
      await register('tiny-base', null); // likewise
      await store.routes.put(projectId, 'support', [
        { name: 'production', upstream: 'worker', model: r2.name, weight: 0.95, modelId: r2.id },
        { name: 'holdback', upstream: 'worker', model: r1.name, weight: 0.05, modelId: r1.id },
        { name: 'seg-brisk', upstream: 'worker', model: brisk.name, weight: 1, segment: { tag: 'brisk' } },
        { name: 'external', upstream: 'openai', model: 'gpt-4o-mini', weight: 0 }, // not a registry model
      ]);
      const reward = { name: 'support-reward-r3', adapterPath: '/runs/rm3/adapter' };
      const served = await withRoutedModels(store, projectId, 'support', [
        reward,
        { name: r2.name, adapterPath: r2.adapterPath },
      ]);
      expect(served).toEqual([
        reward,
        { name: 'support-r2', adapterPath: '/runs/r2/adapter' },
        { name: 'support-r1', adapterPath: '/runs/r1/adapter' },
        { name: 'support-brisk', adapterPath: '/runs/brisk/adapter' },
      ]);
      // A route with no variants (or none at all) adds nothing.
      expect(await withRoutedModels(store, projectId, 'nowhere', [reward])).toEqual([reward]);
    });
  });
}
