import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { KeyResolver } from './auth.js';

describe('KeyResolver', () => {
  const target = sqliteTestDatabase();
  let store: Store;
  beforeAll(async () => {
    store = await Store.open(await target.create());
  });
  afterAll(async () => {
    await store?.close();
    await target.cleanup();
  });

  it('answers the calls in flight on an expired entry with one database lookup', async () => {
    const project = await store.projects.getOrCreate('auth');
    const { key } = await store.projects.createKey(project.id, 'secret', 'test');
    const lookups = vi.spyOn(store.projects, 'authenticate');
    const keys = new KeyResolver(store, 50);
    const first = await Promise.all(Array.from({ length: 20 }, () => keys.resolve(key)));
    expect(first.every((p) => p?.projectId === project.id)).toBe(true);
    expect(lookups).toHaveBeenCalledTimes(1);
    await new Promise((r) => setTimeout(r, 60));
    const again = await Promise.all(Array.from({ length: 20 }, () => keys.resolve(key)));
    expect(again.every((p) => p?.projectId === project.id)).toBe(true);
    expect(lookups).toHaveBeenCalledTimes(2);
    expect(await keys.resolve('rk_sec_not-a-key')).toBeUndefined();
  });
});
