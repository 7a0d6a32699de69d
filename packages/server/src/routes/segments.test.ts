import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

const global = { name: 'production', upstream: 'local', model: 'bot-global', weight: 1 };
const busy = {
  name: 'segment-busy',
  upstream: 'local',
  model: 'bot-busy',
  weight: 1,
  segment: { tag: 'segment:busy' },
};
const pro = {
  name: 'segment-pro',
  upstream: 'local',
  model: 'bot-pro',
  weight: 1,
  segment: { metadata: 'plan', equals: 'pro' },
};

for (const target of testDatabases()) {
  describe(`per-segment variants through the gateway on ${target.name}`, () => {
    let upstream: LocalUpstream;
    let t: TestServer;

    beforeAll(async () => {
      upstream = await startLocalUpstream({ answer: (b) => `${b.model}: hello`, record: false });
      t = await startTestServer(await target.create(), {
        gateway: {
          upstreams: { local: { baseURL: upstream.url } },
          routes: {
            support: { variants: [{ name: 'file', upstream: 'local', model: 'bot-file', weight: 1 }] },
          },
        },
      });
      for (const name of ['bot-global', 'bot-next']) {
        const res = await t.call('/api/v1/models', { body: { name, route: 'support', baseModel: 'tiny' } });
        expect(res.status).toBe(201);
      }
    });
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await target.cleanup();
    });

    async function chat(user: string, headers: Record<string, string> = {}) {
      const res = await t.call('/v1/chat/completions', {
        body: { model: 'support', messages: [{ role: 'user', content: 'Where is my parcel?' }] },
        headers: { 'x-ratchet-user-id': user, ...headers },
      });
      return {
        status: res.status,
        body: res.body,
        id: res.headers.get('x-ratchet-interaction-id'),
        variant: res.headers.get('x-ratchet-variant'),
      };
    }

    it("sends a segment's calls to its adapter and the rest to the global model", async () => {
      const put = await t.call('/api/v1/routes/support', {
        method: 'PUT',
        body: { variants: [global, busy, pro] },
      });
      expect(put.status).toBe(200);
      const listed = await t.call('/api/v1/routes');
      expect(listed.body.items[0].variants).toEqual([global, busy, pro]);

      for (const user of ['a', 'b', 'c', 'd']) {
        expect((await chat(user, { 'x-ratchet-segment': 'busy' })).variant).toBe('segment-busy');
        expect((await chat(user, { 'x-ratchet-tags': 'mobile,segment:busy' })).variant).toBe('segment-busy');
        expect((await chat(user, { 'x-ratchet-metadata': '{"plan":"pro"}' })).variant).toBe('segment-pro');
        expect((await chat(user, { 'x-ratchet-segment': 'courteous' })).variant).toBe('production');
        expect((await chat(user)).variant).toBe('production');
      }
      // The segment is on the logged interaction, so the segment's dataset can select its feedback.
      const call = await chat('e', { 'x-ratchet-segment': 'busy', 'x-ratchet-tags': 'mobile' });
      expect(call.body.choices[0].message.content).toBe('bot-busy: hello');
      await t.server.logWriter.flush();
      const logged = await t.call(`/api/v1/interactions/${call.id}`);
      expect(logged.body).toMatchObject({ tags: ['mobile', 'segment:busy'], variant: 'segment-busy' });
    });

    it('rejects bad segments naming the field', async () => {
      const bad = await t.call('/api/v1/routes/support', {
        method: 'PUT',
        body: { variants: [global, { ...busy, segment: { tag: 'x', equals: 1 } }] },
      });
      expect(bad.status).toBe(400);
      expect(bad.body.error.path).toMatch(/^variants\.1\.segment/);
      const header = await chat('a', { 'x-ratchet-segment': 'no spaces' });
      expect([header.status, header.body.error.path]).toEqual([400, 'x-ratchet-segment']);
    });

    it('keeps the segment variants through an experiment on the global model', async () => {
      const started = await t.call('/api/v1/experiments', {
        body: {
          name: 'next',
          route: 'support',
          control: 'production',
          variants: [
            { name: 'production', model: 'bot-global', upstream: 'local', weight: 1 },
            { name: 'candidate', model: 'bot-next', upstream: 'local', weight: 1 },
          ],
        },
      });
      expect(started.status).toBe(201);
      expect((await chat('a', { 'x-ratchet-segment': 'busy' })).variant).toBe('segment-busy');
      const arms = new Set<string | null>();
      for (let u = 0; u < 20; u++) arms.add((await chat(`u${u}`)).variant);
      expect([...arms].sort()).toEqual(['candidate', 'production']);

      const stopped = await t.call('/api/v1/experiments/next/stop', {
        body: { reason: 'ok', keep: 'candidate' },
      });
      expect(stopped.status).toBe(200);
      const route = (await t.call('/api/v1/routes')).body.items[0];
      expect(route.variants.map((v: { name: string }) => v.name)).toEqual([
        'segment-busy',
        'segment-pro',
        'candidate',
      ]);
      expect((await chat('a', { 'x-ratchet-segment': 'busy' })).variant).toBe('segment-busy');
      expect((await chat('a')).variant).toBe('candidate');
    });

    it("serves calls of no segment from the file's route when the database has only segment variants", async () => {
      const put = await t.call('/api/v1/routes/support', { method: 'PUT', body: { variants: [busy] } });
      expect(put.status).toBe(200);
      expect((await chat('a', { 'x-ratchet-segment': 'busy' })).variant).toBe('segment-busy');
      expect((await chat('a')).variant).toBe('file');
    });
  });
}
