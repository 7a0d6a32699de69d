import { testDatabases } from '@ratchet/store/testing';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestServer } from '../testing/index.js';

for (const target of testDatabases()) {
  describe(`/healthz and /readyz on ${target.name}`, () => {
    afterAll(() => target.cleanup());

    it('ready when it can serve; otherwise 503 naming why: migrations pending, shutting down', async () => {
      const t = await startTestServer(await target.create(), {
        config: { shutdownDrainSeconds: 1 },
      });
      let closed = false;
      try {
        expect((await t.call('/readyz', { key: null })).body).toMatchObject({ status: 'ready' });
        expect((await t.call('/healthz', { key: null })).status).toBe(200);

        // A migration this code expects that the database has not run.
        await sql`delete from ratchet_migrations where name = '0027_rate_limits'`.execute(t.store.db);
        const pending = await t.call('/readyz', { key: null });
        expect(pending.status).toBe(503);
        expect(pending.body).toMatchObject({
          status: 'not_ready',
          reasons: ['migrations pending: 0027_rate_limits'],
        });
        await sql`insert into ratchet_migrations (name, timestamp) values ('0027_rate_limits', ${new Date().toISOString()})`.execute(
          t.store.db,
        );
        expect((await t.call('/readyz', { key: null })).status).toBe(200);

        // Draining: not ready, yet every other request is still answered until the drain ends.
        const closing = t.server.close();
        const draining = await t.call('/readyz', { key: null });
        expect(draining.status).toBe(503);
        expect(draining.body.reasons).toEqual(['shutting down: finishing the requests under way']);
        expect((await t.call('/healthz', { key: null })).status).toBe(200);
        await closing;
        closed = true;
      } finally {
        if (!closed) await t.server.close();
        await t.store.close();
      }
    }, 60_000);

    it('says the database is unreachable when it is', async () => {
      const t = await startTestServer(await target.create());
      await t.store.close();
      try {
        const res = await t.call('/readyz', { key: null });
        expect(res.status).toBe(503);
        expect(res.body.reasons).toHaveLength(1);
        expect(res.body.reasons[0]).toMatch(/^database unreachable: /);
      } finally {
        await t.server.close().catch(() => {});
      }
    }, 60_000);
  });
}
