import { Store, signFeedbackToken } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { sql } from 'kysely';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../app.js';
import { loadServerConfig } from '../config.js';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

const interaction = (id: string, userId?: string) => ({
  id,
  model: 'tiny',
  route: 'support-bot',
  messages: [{ role: 'user', content: `question ${id}` }],
  output: `answer ${id}`,
  ...(userId ? { userId } : {}),
});

async function feedbackRows(t: TestServer): Promise<number> {
  const r = await sql<{ n: number }>`select count(*) as n from feedback`.execute(t.store.db);
  return Number(r.rows[0]!.n);
}

for (const target of testDatabases()) {
  describe(`feedback tokens on ${target.name}: what the public key may write`, () => {
    let t: TestServer;
    let upstream: LocalUpstream;
    let databaseUrl: string;
    /** The token the capture API returned for each logged interaction. */
    const token = new Map<string, string>();

    const log = async (items: ReturnType<typeof interaction>[], key?: string) => {
      const res = await t.call('/api/v1/interactions', { body: { items }, ...(key ? { key } : {}) });
      expect(res.status).toBe(201);
      for (const r of res.body.items) token.set(r.id, r.feedbackToken);
    };
    /** Sends feedback with the public key; expects nothing written unless it succeeded. */
    const publicFeedback = async (body: unknown) => {
      const before = await feedbackRows(t);
      const res = await t.call('/api/v1/feedback', { key: t.publicKey, body });
      if (res.status >= 400) expect(await feedbackRows(t)).toBe(before);
      return res;
    };
    const refusal = (res: { status: number; body: { error?: { code: string; path?: string } } }) => [
      res.status,
      res.body.error?.code,
      res.body.error?.path,
    ];

    beforeAll(async () => {
      upstream = await startLocalUpstream();
      databaseUrl = await target.create();
      t = await startTestServer(databaseUrl, {
        config: { publicFeedbackPerSecond: 0.01, publicFeedbackBurst: 8, logFlushIntervalMs: 60_000 },
        gateway: { upstreams: { local: { baseURL: upstream.url } }, defaultUpstream: 'local' },
      });
      await log([
        interaction('a1', 'alice'),
        interaction('a2', 'alice'),
        interaction('b1', 'bob'),
        interaction('anon-1'),
        interaction('anon-2'),
        interaction('m1', 'mallory'),
        interaction('f1', 'flood'),
        interaction('w1', 'wanda'),
      ]);
    });
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await target.cleanup();
    });

    it('refuses the public key without a token, naming the field (one item and each batch item)', async () => {
      expect(refusal(await publicFeedback({ kind: 'thumbs', interactionId: 'a1', value: 'up' }))).toEqual([
        401,
        'unauthorized',
        'feedbackToken',
      ]);
      const batch = await publicFeedback({
        items: [
          { kind: 'thumbs', interactionId: 'a1', value: 'up', feedbackToken: token.get('a1') },
          { kind: 'stars', interactionId: 'a1', value: 4 },
        ],
      });
      expect(refusal(batch)).toEqual([401, 'unauthorized', 'items.1.feedbackToken']);
      expect(
        refusal(
          await publicFeedback({
            kind: 'thumbs',
            interactionId: 'a1',
            value: 'up',
            feedbackToken: 'rk_pub_x',
          }),
        ),
      ).toEqual([401, 'unauthorized', 'feedbackToken']);
    });

    it('with a token writes every kind as the end user, source user, at server time', async () => {
      const before = Date.now();
      const items = [
        { kind: 'thumbs', value: 'down', createdAt: 1000 },
        { kind: 'stars', value: 4 },
        { kind: 'criteria', scores: { accuracy: 4 } },
        { kind: 'comment', text: 'close, but no' },
        { kind: 'correction', text: 'It ships on Monday.' },
        { kind: 'preference', other: 'a2', choice: 'other' },
        { kind: 'implicit', signal: 'copied' },
        { kind: 'thumbs', value: 'up', raterId: 'alice', source: 'user' },
      ].map((f) => ({ ...f, interactionId: 'a1', feedbackToken: token.get('a1') }));
      const res = await publicFeedback({ items });
      expect(res.status).toBe(201);
      const got = await t.call('/api/v1/interactions/a1');
      expect(got.body.feedback).toHaveLength(items.length);
      for (const f of got.body.feedback) {
        expect(f).toMatchObject({ raterId: 'alice', source: 'user' });
        expect(f.createdAt).toBeGreaterThanOrEqual(before);
        expect(f.createdAt).toBeLessThanOrEqual(Date.now());
      }
    });

    it('rates an interaction without an end user as a rater of that interaction alone', async () => {
      for (const id of ['anon-1', 'anon-2']) {
        const res = await publicFeedback({
          kind: 'thumbs',
          interactionId: id,
          value: 'up',
          feedbackToken: token.get(id),
        });
        expect(res.status).toBe(201);
        const got = await t.call(`/api/v1/interactions/${id}`);
        expect(got.body.feedback).toMatchObject([{ raterId: `anonymous:${id}`, source: 'user' }]);
      }
      // With no end user, no other interaction can be shown to be the same person's.
      const pref = await publicFeedback({
        kind: 'preference',
        interactionId: 'anon-1',
        other: 'anon-2',
        choice: 'this',
        feedbackToken: token.get('anon-1'),
      });
      expect(refusal(pref)).toEqual([403, 'forbidden', 'other']);
    });

    it('refuses a forged source or a foreign rater with 403 naming the field, and writes nothing', async () => {
      const base = { kind: 'thumbs', interactionId: 'm1', value: 'up', feedbackToken: token.get('m1') };
      for (const source of ['judge', 'annotator', 'implicit'])
        expect(refusal(await publicFeedback({ ...base, source }))).toEqual([403, 'forbidden', 'source']);
      expect(refusal(await publicFeedback({ ...base, raterId: 'alice' }))).toEqual([
        403,
        'forbidden',
        'raterId',
      ]);
      expect(
        refusal(await publicFeedback({ items: [base, { ...base, raterId: 'annotator:7', source: 'user' }] })),
      ).toEqual([403, 'forbidden', 'items.1.raterId']);
      // A preference or ranking that drags in another user's answer.
      expect(
        refusal(
          await publicFeedback({
            ...base,
            kind: 'preference',
            other: 'a1',
            choice: 'this',
            value: undefined,
          }),
        ),
      ).toEqual([403, 'forbidden', 'other']);
      expect(
        refusal(
          await publicFeedback({ ...base, kind: 'preference', ranking: ['m1', 'b1'], value: undefined }),
        ),
      ).toEqual([403, 'forbidden', 'ranking']);
      expect((await t.call('/api/v1/interactions/m1')).body.feedback).toEqual([]);
    });

    it('a token works only on its own interaction and project, unaltered and unexpired', async () => {
      const onB1 = { kind: 'thumbs', interactionId: 'b1', value: 'up' };
      expect(refusal(await publicFeedback({ ...onB1, feedbackToken: token.get('a1') }))).toEqual([
        403,
        'forbidden',
        'feedbackToken',
      ]);
      // A guessed id with someone's token: refused the same way whether or not it exists.
      expect(
        refusal(
          await publicFeedback({ ...onB1, interactionId: 'no-such-id', feedbackToken: token.get('a1') }),
        ),
      ).toEqual([403, 'forbidden', 'feedbackToken']);
      const good = token.get('b1')!;
      // One character of the MAC changed.
      const at = good.length - 5;
      const flipped = good.slice(0, at) + (good[at] === 'a' ? 'b' : 'a') + good.slice(at + 1);
      expect(refusal(await publicFeedback({ ...onB1, feedbackToken: flipped }))).toEqual([
        403,
        'forbidden',
        'feedbackToken',
      ]);
      const key = await t.store.projects.feedbackTokenKey(t.projectId);
      const expired = signFeedbackToken(key, {
        projectId: t.projectId,
        interactionId: 'b1',
        endUserId: 'bob',
        expiresAt: Date.now() - 1000,
      });
      expect(refusal(await publicFeedback({ ...onB1, feedbackToken: expired }))).toEqual([
        401,
        'unauthorized',
        'feedbackToken',
      ]);

      // Another project logs an interaction with the same id: neither token works in the other.
      const other = await t.store.projects.create(`other-${target.name}`);
      const otherSecret = await t.store.projects.createKey(other.id, 'secret');
      const otherPublic = await t.store.projects.createKey(other.id, 'public');
      const logged = await t.call('/api/v1/interactions', {
        key: otherSecret.key,
        body: interaction('b1', 'bob'),
      });
      const otherToken = logged.body.feedbackToken as string;
      expect(otherToken).not.toBe(good);
      expect(refusal(await publicFeedback({ ...onB1, feedbackToken: otherToken }))).toEqual([
        403,
        'forbidden',
        'feedbackToken',
      ]);
      const cross = await t.call('/api/v1/feedback', {
        key: otherPublic.key,
        body: { ...onB1, feedbackToken: good },
      });
      expect(refusal(cross)).toEqual([403, 'forbidden', 'feedbackToken']);
      expect(
        (
          await t.call('/api/v1/feedback', {
            key: otherPublic.key,
            body: { ...onB1, feedbackToken: otherToken },
          })
        ).status,
      ).toBe(201);
      expect((await publicFeedback({ ...onB1, feedbackToken: good })).status).toBe(201);
    });

    it('refuses a future createdAt from the public key too (400), and ignores a past one', async () => {
      const res = await publicFeedback({
        kind: 'thumbs',
        interactionId: 'w1',
        value: 'up',
        createdAt: 2 ** 53 - 1,
        feedbackToken: token.get('w1'),
      });
      expect(refusal(res)).toEqual([400, 'invalid_request', 'createdAt']);
    });

    it('limits each end user: 429 in the one error shape, while other users still write', async () => {
      const one = { kind: 'thumbs', interactionId: 'f1', value: 'up', feedbackToken: token.get('f1') };
      const statuses: number[] = [];
      for (let i = 0; i < 10; i++) statuses.push((await publicFeedback(one)).status);
      expect(statuses.slice(0, 8).every((s) => s === 201)).toBe(true);
      const limited = await publicFeedback(one);
      expect(limited.status).toBe(429);
      expect(limited.body.error).toMatchObject({
        code: 'rate_limited',
        message: expect.stringContaining('end user'),
      });
      expect(limited.headers.get('retry-after')).toBe('1');
      expect(
        (
          await publicFeedback({
            kind: 'thumbs',
            interactionId: 'w1',
            value: 'up',
            feedbackToken: token.get('w1'),
          })
        ).status,
      ).toBe(201);
    });

    it('the gateway hands out the token: the openai client reads it with .withResponse(), the browser rates with it', async () => {
      const client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: t.secretKey, maxRetries: 0 });
      const { response } = await client.chat.completions
        .create({ model: 'tiny', messages: [{ role: 'user', content: 'hello' }], user: 'gina' })
        .withResponse();
      const interactionId = response.headers.get('x-ratchet-interaction-id')!;
      const feedbackToken = response.headers.get('x-ratchet-feedback-token')!;
      // The log buffer is not flushed yet (60 s interval): the write still finds the interaction.
      const sent = await publicFeedback({ kind: 'stars', value: 5, interactionId, feedbackToken });
      expect(sent.status).toBe(201);
      const got = await t.call(`/api/v1/interactions/${interactionId}`);
      expect(got.body.feedback).toMatchObject([{ kind: 'stars', raterId: 'gina', source: 'user' }]);
      // The same token on a forged rater is still refused.
      expect(
        refusal(
          await publicFeedback({ kind: 'stars', value: 1, interactionId, feedbackToken, raterId: 'x' }),
        ),
      ).toEqual([403, 'forbidden', 'raterId']);
    });

    it('every server on the database verifies the tokens any of them issued', async () => {
      const store = await Store.open(databaseUrl);
      const second = await buildServer({
        store,
        config: loadServerConfig({ port: 0, logLevel: 'silent' }, {}),
      });
      try {
        const url = await second.listen();
        const res = await fetch(`${url}/api/v1/feedback`, {
          method: 'POST',
          headers: { authorization: `Bearer ${t.publicKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            kind: 'thumbs',
            interactionId: 'a2',
            value: 'up',
            feedbackToken: token.get('a2'),
          }),
        });
        expect(res.status).toBe(201);
      } finally {
        await second.close();
        await store.close();
      }
    });

    it("no read of the API returns the project's token key", async () => {
      const key = await t.store.projects.feedbackTokenKey(t.projectId);
      const spec = await t.call('/openapi.json', { key: null });
      const reads = Object.entries(spec.body.paths as Record<string, Record<string, unknown>>)
        .filter(([path, methods]) => methods.get && !path.includes('{'))
        .map(([path]) => path);
      expect(reads.length).toBeGreaterThan(10);
      for (const path of reads) {
        const res = await t.call(path);
        expect({ path, leaks: JSON.stringify(res.body).includes(key) }).toEqual({ path, leaks: false });
      }
    });

    it('documents feedbackToken in /openapi.json', async () => {
      const spec = await t.call('/openapi.json', { key: null });
      expect(JSON.stringify(spec.body.paths['/api/v1/feedback'].post.requestBody)).toContain('feedbackToken');
      expect(JSON.stringify(spec.body.paths['/api/v1/interactions'].post.responses)).toContain(
        'feedbackToken',
      );
    });
  });
}
