import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer, type RatchetServer } from '../app.js';
import { loadServerConfig } from '../config.js';
import { startTestServer, type TestServer } from '../testing/server.js';

const spec = (name: string) => ({
  name,
  method: 'kto',
  curation: false,
  options: { split: { by: 'prompt', testFraction: 0 } },
});

/**
 * Concurrent builds of one dataset name, truly at once over HTTP: on one server each gets its own
 * version; across two servers on one database each gets a version or a 409 naming the dataset,
 * never a 500, and every version recorded has its files.
 */
for (const target of testDatabases()) {
  describe(`concurrent dataset builds (${target.name})`, () => {
    let t: TestServer;
    let url: string;
    let dataDir: string;
    let second: { server: RatchetServer; store: Store; url: string };

    beforeAll(async () => {
      url = await target.create();
      dataDir = mkdtempSync(join(tmpdir(), 'ratchet-concurrent-'));
      t = await startTestServer(url, { config: { dataDir } });
      const items = Array.from({ length: 12 }, (_, i) => ({
        id: `i${i}`,
        model: 'm',
        messages: [{ role: 'user', content: `question ${i % 4}` }],
        output: `answer ${i}`,
      }));
      expect((await t.call('/api/v1/interactions', { body: { items } })).status).toBe(201);
      const feedback = items.flatMap((it, i) =>
        ['a', 'b', 'c'].map((r) => ({
          kind: 'stars',
          interactionId: it.id,
          raterId: r,
          value: i % 2 ? 5 : 1,
        })),
      );
      expect((await t.call('/api/v1/feedback', { body: { items: feedback } })).status).toBe(201);
      expect((await t.call('/api/v1/calibrations', { body: {} })).status).toBe(201);
      // A second server process's worth: its own store connection, same database and data folder.
      const store = await Store.open(url);
      const server = await buildServer({
        store,
        config: loadServerConfig({ port: 0, logLevel: 'silent', dataDir }, {}),
      });
      second = { server, store, url: await server.listen() };
    }, 60_000);
    afterAll(async () => {
      await second?.server.close();
      await second?.store.close();
      await t?.close();
      await target.cleanup();
    });

    const build = (base: string, name: string) =>
      fetch(`${base}/api/v1/datasets`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.secretKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(spec(name)),
      }).then(async (res) => ({ status: res.status, body: await res.json() }));

    async function expectFilesOf(name: string, version: number) {
      const rows = await t.call(`/api/v1/datasets/${name}@${version}/rows?limit=1`);
      expect(rows.status).toBe(200);
      expect(rows.body.total).toBe(12);
    }

    it('on one server, four builds at once get versions 1 to 4', async () => {
      const results = await Promise.all(Array.from({ length: 4 }, () => build(t.url, 'same')));
      expect(results.map((r) => r.status)).toEqual([201, 201, 201, 201]);
      expect(results.map((r) => r.body.version).sort()).toEqual([1, 2, 3, 4]);
      for (const v of [1, 2, 3, 4]) await expectFilesOf('same', v);
    });

    it('across two servers, each build gets a version or a 409 naming the dataset, never a 500', async () => {
      const results = await Promise.all(
        Array.from({ length: 6 }, (_, i) => build(i % 2 ? second.url : t.url, 'shared')),
      );
      for (const r of results) {
        expect([201, 409]).toContain(r.status);
        if (r.status === 409)
          expect(r.body.error).toMatchObject({
            code: 'conflict',
            message: expect.stringContaining('"shared"'),
          });
      }
      const versions = results.filter((r) => r.status === 201).map((r) => r.body.version as number);
      expect(versions.length).toBeGreaterThan(0);
      expect(new Set(versions).size).toBe(versions.length);
      const recorded = (await t.call('/api/v1/datasets')).body.items.filter(
        (d: { name: string }) => d.name === 'shared',
      );
      expect(recorded.map((d: { version: number }) => d.version).sort()).toEqual([...versions].sort());
      for (const v of versions) await expectFilesOf('shared', v);
    });
  });
}
