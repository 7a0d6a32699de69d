import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

for (const target of testDatabases()) {
  describe(`round leases and shared rate windows on ${target.name}`, () => {
    let store: Store;
    let other: Store;
    let projectId: string;
    beforeAll(async () => {
      const url = await target.create();
      store = await Store.open(url);
      // A second connection stands for a second server on the same database.
      other = await Store.open(url);
      projectId = (await store.projects.create('leases')).id;
    });
    afterAll(async () => {
      await other?.close();
      await store?.close();
      await target.cleanup();
    });

    it('grants a route to one holder until it expires, renews it for its holder, and hands it over after', async () => {
      const t = 1_000_000;
      expect(await store.leases.acquire(projectId, 'bot', 'server-a', 10_000, t)).toBe(true);
      expect(await other.leases.acquire(projectId, 'bot', 'server-b', 10_000, t + 1)).toBe(false);
      // Another route is another lease.
      expect(await other.leases.acquire(projectId, 'other', 'server-b', 10_000, t + 1)).toBe(true);
      // The holder's heartbeat pushes the expiry on and keeps its tenure.
      expect(await store.leases.acquire(projectId, 'bot', 'server-a', 10_000, t + 9_000)).toBe(true);
      expect(await store.leases.get(projectId, 'bot')).toEqual({
        holder: 'server-a',
        expiresAt: t + 19_000,
        acquiredAt: t,
      });
      expect(await other.leases.acquire(projectId, 'bot', 'server-b', 10_000, t + 12_000)).toBe(false);
      // The holder died: no renewal, and once expired the other server takes it.
      expect(await other.leases.acquire(projectId, 'bot', 'server-b', 10_000, t + 19_001)).toBe(true);
      expect(await store.leases.get(projectId, 'bot')).toMatchObject({
        holder: 'server-b',
        acquiredAt: t + 19_001,
      });
      // The old holder, back, cannot renew what it lost; nor release it.
      expect(await store.leases.acquire(projectId, 'bot', 'server-a', 10_000, t + 19_002)).toBe(false);
      await store.leases.release(projectId, 'bot', 'server-a');
      expect((await store.leases.get(projectId, 'bot'))?.holder).toBe('server-b');
      await other.leases.release(projectId, 'bot', 'server-b');
      expect(await store.leases.get(projectId, 'bot')).toBeUndefined();
      expect(await store.leases.acquire(projectId, 'bot', 'server-a', 10_000, t + 19_003)).toBe(true);
    });

    it('gives the lease to exactly one of many servers asking at once', async () => {
      const asks = Array.from({ length: 8 }, (_, i) =>
        (i % 2 ? other : store).leases.acquire(projectId, 'race', `server-${i}`, 10_000),
      );
      expect((await Promise.all(asks)).filter(Boolean)).toHaveLength(1);
    });

    it('counts a key across servers in one window, and prunes ended windows', async () => {
      const hits = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? other : store).rateWindows.hit('key-1', 5_000)),
      );
      expect(hits.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(await store.rateWindows.hit('key-1', 6_000)).toBe(1);
      expect(await store.rateWindows.hit('key-2', 5_000)).toBe(1);
      await store.rateWindows.prune(6_000);
      expect(await store.rateWindows.hit('key-1', 5_000)).toBe(1);
      expect(await store.rateWindows.hit('key-1', 6_000)).toBe(2);
    });
  });
}
