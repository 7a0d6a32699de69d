import { testDatabases } from '@ratchet/store/testing';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

for (const target of testDatabases()) {
  describe(`gateway on ${target.name}, called by the official openai npm client`, () => {
    let upstream: LocalUpstream;
    let t: TestServer;
    let client: OpenAI;

    beforeAll(async () => {
      upstream = await startLocalUpstream({ failWith: (b) => (b.model === 'overloaded' ? 429 : undefined) });
      t = await startTestServer(await target.create(), {
        // A long flush interval: feedback sent right after a call must still find its interaction.
        config: { logFlushIntervalMs: 60_000 },
        gateway: {
          upstreams: {
            local: { baseURL: upstream.url },
            down: { baseURL: 'http://127.0.0.1:9/v1', timeoutMs: 2000 },
          },
          routes: {
            'support-bot': {
              variants: [
                { name: 'production', upstream: 'local', model: 'tiny-base', weight: 50 },
                { name: 'candidate', upstream: 'local', model: 'tiny-cand', weight: 50 },
              ],
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

    it('answers a non-streaming call and logs it as an interaction that takes feedback', async () => {
      const { data, response } = await client.chat.completions
        .create({
          model: 'support-bot',
          messages: [{ role: 'user', content: 'Where is my parcel?' }],
          user: 'alice',
          temperature: 0.3,
        })
        .withResponse();
      expect(data.choices[0]?.message.content).toBe('You said: Where is my parcel?');
      const id = response.headers.get('x-ratchet-interaction-id')!;
      const variant = response.headers.get('x-ratchet-variant');
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect(['production', 'candidate']).toContain(variant);
      expect(upstream.requests.at(-1)?.model).toBe(variant === 'production' ? 'tiny-base' : 'tiny-cand');

      // The browser gets the id and the token from the application and rates as alice.
      const feedbackToken = response.headers.get('x-ratchet-feedback-token')!;
      expect(feedbackToken).toMatch(/^ft1\.[0-9a-z]+\.[A-Za-z0-9_-]{43}$/);
      const fb = await t.call('/api/v1/feedback', {
        key: t.publicKey,
        body: { kind: 'thumbs', interactionId: id, value: 'up', feedbackToken },
      });
      expect(fb.status).toBe(201);
      const got = await t.call(`/api/v1/interactions/${id}`);
      expect(got.body).toMatchObject({
        route: 'support-bot',
        variant,
        userId: 'alice',
        source: 'gateway',
        status: 'ok',
        messages: [{ role: 'user', content: 'Where is my parcel?' }],
        output: { role: 'assistant', content: 'You said: Where is my parcel?' },
        parameters: { temperature: 0.3 },
        usage: { inputTokens: 4, outputTokens: 6, totalTokens: 10 },
      });
      expect(got.body.feedback).toMatchObject([
        { kind: 'thumbs', label: 'up', raterId: 'alice', source: 'user', current: true },
      ]);
    });

    it('relays a stream chunk by chunk and logs the assembled answer', async () => {
      const { data: stream, response } = await client.chat.completions
        .create({
          model: 'support-bot',
          messages: [{ role: 'user', content: 'tell me about refunds please' }],
          stream: true,
          stream_options: { include_usage: true },
          user: 'bob',
        })
        .withResponse();
      const id = response.headers.get('x-ratchet-interaction-id')!;
      let text = '';
      let chunks = 0;
      for await (const chunk of stream) {
        chunks++;
        text += chunk.choices[0]?.delta.content ?? '';
      }
      expect(text).toBe('You said: tell me about refunds please');
      expect(chunks).toBeGreaterThan(5);
      await t.server.logWriter.flush();
      const got = await t.call(`/api/v1/interactions/${id}`);
      expect(got.body).toMatchObject({
        output: { content: text },
        userId: 'bob',
        usage: { inputTokens: 5 },
        metadata: { finishReason: 'stop' },
      });
    });

    it('keeps each end user on one variant and spreads users over both', async () => {
      const seen = new Map<string, Set<string>>();
      for (let u = 0; u < 16; u++) {
        for (let k = 0; k < 3; k++) {
          const { response } = await client.chat.completions
            .create({ model: 'support-bot', messages: [{ role: 'user', content: 'hi' }], user: `user-${u}` })
            .withResponse();
          const set = seen.get(`user-${u}`) ?? new Set();
          set.add(response.headers.get('x-ratchet-variant')!);
          seen.set(`user-${u}`, set);
        }
      }
      expect([...seen.values()].every((s) => s.size === 1)).toBe(true);
      const variants = new Set([...seen.values()].map((s) => [...s][0]));
      expect(variants).toEqual(new Set(['production', 'candidate']));
    });

    it('passes a model that names no route to the default upstream unchanged', async () => {
      const res = await client.chat.completions.create({
        model: 'gpt-local',
        messages: [{ role: 'user', content: 'x' }],
      });
      expect(res.choices[0]?.message.content).toBe('You said: x');
      expect(upstream.requests.at(-1)?.model).toBe('gpt-local');
    });

    it('passes upstream errors through with their status, and logs the failed call', async () => {
      const err = await client.chat.completions
        .create({ model: 'overloaded', messages: [{ role: 'user', content: 'x' }] })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(429);
      expect((err as InstanceType<typeof OpenAI.APIError>).message).toContain('upstream refused with 429');
      await t.server.logWriter.flush();
      const logged = await t.call('/api/v1/interactions?model=overloaded');
      expect(logged.body.items[0]).toMatchObject({ status: 'error' });
    });

    it('answers 502 naming the upstream when it cannot be reached', async () => {
      const err = await client.chat.completions
        .create({ model: 'broken', messages: [{ role: 'user', content: 'x' }] })
        .catch((e: unknown) => e);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
      expect(String((err as Error).message)).toContain('upstream "down" failed');
    });

    it('rejects a malformed chat request before calling upstream', async () => {
      const before = upstream.requests.length;
      const res = await t.call('/v1/chat/completions', { body: { model: 'support-bot', messages: [] } });
      expect(res).toMatchObject({ status: 400, body: { error: { path: 'messages' } } });
      expect(upstream.requests.length).toBe(before);
    });

    it('records tags, session and metadata sent as x-ratchet-* headers', async () => {
      const { response } = await client.chat.completions
        .create(
          { model: 'support-bot', messages: [{ role: 'user', content: 'x' }] },
          {
            headers: {
              'x-ratchet-tags': 'vip,mobile',
              'x-ratchet-session-id': 's-9',
              'x-ratchet-metadata': '{"plan":"pro"}',
              'x-ratchet-user-id': 'carol',
            },
          },
        )
        .withResponse();
      await t.server.logWriter.flush();
      const got = await t.call(`/api/v1/interactions/${response.headers.get('x-ratchet-interaction-id')}`);
      expect(got.body).toMatchObject({
        tags: ['vip', 'mobile'],
        sessionId: 's-9',
        userId: 'carol',
        metadata: { plan: 'pro', upstream: 'local' },
      });
    });
  });
}
