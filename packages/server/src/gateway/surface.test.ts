import { testDatabases } from '@ratchet/store/testing';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

for (const target of testDatabases()) {
  describe(`GET /v1/models and POST /v1/embeddings on ${target.name}, with the official openai npm client`, () => {
    let upstream: LocalUpstream;
    let t: TestServer;
    let client: OpenAI;

    beforeAll(async () => {
      upstream = await startLocalUpstream({ models: ['tiny-base', 'text-embed-small'] });
      t = await startTestServer(await target.create(), {
        config: { logFlushIntervalMs: 60_000 },
        gateway: {
          upstreams: {
            local: { baseURL: upstream.url },
            down: { baseURL: 'http://127.0.0.1:9/v1', timeoutMs: 2000 },
          },
          routes: {
            'support-bot': { variants: [{ name: 'only', upstream: 'local', model: 'tiny-base', weight: 1 }] },
            embedder: {
              variants: [{ name: 'only', upstream: 'local', model: 'text-embed-small', weight: 1 }],
            },
            broken: { variants: [{ name: 'only', upstream: 'down', model: 'x', weight: 1 }] },
          },
          defaultUpstream: 'local',
        },
      });
      client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: t.secretKey, maxRetries: 0 });
    });
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await target.cleanup();
    });

    it("lists the file's routes, the project's database routes and the default upstream's models", async () => {
      const put = await t.call('/api/v1/routes/canary', {
        method: 'PUT',
        body: { variants: [{ name: 'c', upstream: 'local', model: 'bot-v2', weight: 1 }] },
      });
      expect(put.status).toBe(200);
      const models = [];
      for await (const model of client.models.list()) models.push(model);
      expect(models.map((m) => [m.id, m.owned_by])).toEqual([
        ['broken', 'ratchet'],
        ['canary', 'ratchet'],
        ['embedder', 'ratchet'],
        ['support-bot', 'ratchet'],
        ['tiny-base', 'local'],
        ['text-embed-small', 'local'],
      ]);
      expect(models.every((m) => m.object === 'model' && Number.isInteger(m.created))).toBe(true);
      // Another project sees the file's routes but not this project's database route.
      const other = await t.store.projects.create('other-project');
      const otherKey = await t.store.projects.createKey(other.id, 'secret');
      const theirs = await t.call('/v1/models', { key: otherKey.key });
      expect(theirs.body.data.map((m: { id: string }) => m.id)).not.toContain('canary');
      expect(theirs.body.data.map((m: { id: string }) => m.id)).toContain('support-bot');

      // The public key cannot list (it cannot call the gateway either).
      expect((await t.call('/v1/models', { key: t.publicKey })).status).toBe(403);
    });

    it('passes embeddings through a route, records them as usage, and never as an interaction', async () => {
      const before = await t.call('/api/v1/interactions?limit=100');
      const { data, response } = await client.embeddings
        .create({ model: 'embedder', input: ['refund policy', 'where is my parcel'], user: 'alice' })
        .withResponse();
      expect(data.data).toHaveLength(2);
      expect(data.data[0]?.embedding).toHaveLength(8);
      expect(data.data[0]?.embedding).not.toEqual(data.data[1]?.embedding);
      expect(upstream.requests.at(-1)).toMatchObject({ model: 'text-embed-small' });
      expect(response.headers.get('x-ratchet-interaction-id')).toBeNull();
      expect(response.headers.get('x-ratchet-feedback-token')).toBeNull();
      const usageId = response.headers.get('x-ratchet-usage-id')!;
      expect(usageId).toMatch(/^[0-9a-f-]{36}$/);

      let page = await t.call('/api/v1/usage-records');
      for (let i = 0; i < 50 && !page.body.items.some((r: { id: string }) => r.id === usageId); i++) {
        await new Promise((r) => setTimeout(r, 20));
        page = await t.call('/api/v1/usage-records');
      }
      expect(page.body.items.find((r: { id: string }) => r.id === usageId)).toMatchObject({
        kind: 'embeddings',
        route: 'embedder',
        variant: 'only',
        model: 'text-embed-small',
        upstream: 'local',
        userId: 'alice',
        inputs: 2,
        inputTokens: 6,
        totalTokens: 6,
        status: 'ok',
      });
      expect(page.body.totals).toContainEqual({
        kind: 'embeddings',
        model: 'text-embed-small',
        calls: 1,
        inputTokens: 6,
      });

      // Another project does not see this project's usage.
      const stranger = await t.store.projects.createKey(
        (await t.store.projects.create('stranger')).id,
        'secret',
      );
      expect((await t.call('/api/v1/usage-records', { key: stranger.key })).body.items).toEqual([]);

      // Never an interaction: not listed, not rateable, not in the annotation queue.
      await t.server.logWriter.flush();
      const after = await t.call('/api/v1/interactions?limit=100');
      expect(after.body.items.map((i: { id: string }) => i.id)).toEqual(
        before.body.items.map((i: { id: string }) => i.id),
      );
      expect((await t.call(`/api/v1/interactions/${usageId}`)).status).toBe(404);
      const fb = await t.call('/api/v1/feedback', {
        body: { kind: 'thumbs', interactionId: usageId, value: 'up', raterId: 'alice' },
      });
      expect(fb.status).toBe(404);
      const queue = await t.call('/api/v1/dashboard/queue?limit=100');
      expect(queue.status).toBe(200);
      expect(JSON.stringify(queue.body)).not.toContain(usageId);
    });

    it('sends a model that is no route to the default upstream, one text at a time', async () => {
      const data = await client.embeddings.create({ model: 'text-embed-small', input: 'hello' });
      expect(data.data).toHaveLength(1);
      expect(data.usage).toEqual({ prompt_tokens: 1, total_tokens: 1 });
    });

    it('refuses a bad request naming the field, and records an unreachable upstream as an error', async () => {
      const missing = await t.call('/v1/embeddings', { body: { model: 'embedder' } });
      expect(missing.status).toBe(400);
      expect(missing.body.error.path).toBe('input');
      const empty = await t.call('/v1/embeddings', { body: { model: 'embedder', input: [] } });
      expect(empty.status).toBe(400);
      const down = await t.call('/v1/embeddings', { body: { model: 'broken', input: 'x' } });
      expect(down.status).toBe(502);
      const id = down.headers.get('x-ratchet-usage-id');
      let page = await t.call('/api/v1/usage-records?kind=embeddings');
      for (let i = 0; i < 50 && !page.body.items.some((r: { id: string }) => r.id === id); i++) {
        await new Promise((r) => setTimeout(r, 20));
        page = await t.call('/api/v1/usage-records?kind=embeddings');
      }
      expect(page.body.items.find((r: { id: string }) => r.id === id)).toMatchObject({
        status: 'error',
        upstream: 'down',
      });
    });
  });
}
