import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer, type RatchetServer } from '../app.js';
import { loadServerConfig } from '../config.js';
import { startTestServer, type TestServer } from '../testing/server.js';

const interaction = (id: string) => ({
  id,
  model: 'tiny',
  route: 'support-bot',
  messages: [{ role: 'user', content: `question ${id}` }],
  output: `answer ${id}`,
  userId: 'user-1',
});

/** A second server process's worth of state on the same database: its own Store, its own key cache. */
async function secondServer(
  databaseUrl: string,
): Promise<{ server: RatchetServer; store: Store; url: string }> {
  const store = await Store.open(databaseUrl);
  const server = await buildServer({ store, config: loadServerConfig({ port: 0, logLevel: 'silent' }, {}) });
  return { server, store, url: await server.listen() };
}

async function get(url: string, key: string): Promise<number> {
  return (await fetch(`${url}/api/v1/interactions`, { headers: { authorization: `Bearer ${key}` } })).status;
}

for (const target of testDatabases()) {
  describe(`scoped keys on ${target.name}`, () => {
    let t: TestServer;
    let databaseUrl: string;
    const keyWith = async (scopes: string[]) => {
      const res = await t.call('/api/v1/keys', { body: { scopes, name: scopes.join('+') } });
      expect(res.status).toBe(201);
      return res.body.key as string;
    };

    beforeAll(async () => {
      databaseUrl = await target.create();
      t = await startTestServer(databaseUrl);
    });
    afterAll(async () => {
      await t?.close();
      await target.cleanup();
    });

    it('keys made before scopes keep what they could do: secret = every scope, public = public', async () => {
      const keys = await t.store.projects.listKeys(t.projectId);
      expect(keys.map((k) => [k.kind, k.scopes])).toEqual([
        ['secret', ['ingest', 'public', 'read', 'admin']],
        ['public', ['public']],
      ]);
      const project = await t.call('/api/v1/project');
      expect(project.body.scopes).toEqual(['ingest', 'public', 'read', 'admin']);
    });

    it('every route checks its scope and the 403 names the missing one', async () => {
      const ingest = await keyWith(['ingest']);
      const read = await keyWith(['read']);
      const admin = await keyWith(['admin']);
      expect(ingest.startsWith('rk_sec_')).toBe(true);

      // ingest: logs and rates, reads nothing, changes nothing.
      const logged = await t.call('/api/v1/interactions', { key: ingest, body: interaction('i1') });
      expect(logged.status).toBe(201);
      const rated = await t.call('/api/v1/feedback', {
        key: ingest,
        body: { interactionId: 'i1', kind: 'thumbs', value: 'up', raterId: 'ops' },
      });
      expect(rated.status).toBe(201);
      const notRead = await t.call('/api/v1/interactions', { key: ingest });
      expect(notRead.status).toBe(403);
      expect(notRead.body.error).toMatchObject({ code: 'forbidden', path: 'authorization' });
      expect(notRead.body.error.message).toContain('"read"');

      // read: reads, cannot log or change.
      expect((await t.call('/api/v1/interactions', { key: read })).status).toBe(200);
      const notIngest = await t.call('/api/v1/interactions', { key: read, body: interaction('i2') });
      expect(notIngest.status).toBe(403);
      expect(notIngest.body.error.message).toContain('"ingest"');
      const notAdmin = await t.call('/api/v1/score-configs', {
        key: read,
        body: { name: 'nps', usage: 'stars', min: 0, max: 10 },
      });
      expect(notAdmin.status).toBe(403);
      expect(notAdmin.body.error.message).toContain('"admin"');

      // admin: changes, but does not read unless it also holds read.
      const changed = await t.call('/api/v1/score-configs', {
        key: admin,
        body: { name: 'nps', usage: 'stars', min: 0, max: 10 },
      });
      expect(changed.status).toBe(201);
      expect((await t.call('/api/v1/interactions', { key: admin })).status).toBe(403);

      // public: feedback with a token only (the existing path), nothing else.
      const pub = await keyWith(['public']);
      expect(pub.startsWith('rk_pub_')).toBe(true);
      const tokenless = await t.call('/api/v1/feedback', {
        key: pub,
        body: { interactionId: 'i1', kind: 'thumbs', value: 'up' },
      });
      expect(tokenless.status).toBe(401);
      expect(tokenless.body.error.path).toBe('feedbackToken');
      expect((await t.call('/api/v1/interactions', { key: pub, body: interaction('i3') })).status).toBe(403);
    });

    it('refuses bad scopes naming the field', async () => {
      const bad = await t.call('/api/v1/keys', { body: { scopes: ['root'] } });
      expect(bad.status).toBe(400);
      expect(bad.body.error.path).toBe('scopes.0');
      const none = await t.call('/api/v1/keys', { body: { scopes: [] } });
      expect(none.status).toBe(400);
      expect(none.body.error.path).toBe('scopes');
      const unknown = await t.call('/api/v1/keys/nope', { method: 'DELETE' });
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.path).toBe('id');
    });

    it('a revoked key is refused on the next request, by this server and by another on the database', async () => {
      const other = await secondServer(databaseUrl);
      try {
        const created = await t.call('/api/v1/keys', { body: { scopes: ['read', 'admin'] } });
        const key = created.body.key as string;
        // Both servers have the key cached now.
        expect(await get(t.url, key)).toBe(200);
        expect(await get(other.url, key)).toBe(200);
        const revoked = await t.call(`/api/v1/keys/${created.body.id}`, { method: 'DELETE' });
        expect(revoked.status).toBe(200);
        // The server that revoked it refuses the next request; so does the other one in this
        // process on the database (woken before the revoke returned). Other processes: keys.test.ts
        // in the CLI.
        expect(await get(t.url, key)).toBe(401);
        expect(await get(other.url, key)).toBe(401);
        const audit = await t.store.audit.list(t.projectId, { action: 'key.revoked' });
        expect(audit[0]).toMatchObject({ subjectId: created.body.id, actor: expect.stringMatching(/^api:/) });
      } finally {
        await other.server.close();
        await other.store.close();
      }
    });
  });
}
