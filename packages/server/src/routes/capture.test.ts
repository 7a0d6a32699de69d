import { testDatabases } from '@ratchet/store/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';

const interaction = (over: Record<string, unknown> = {}) => ({
  model: 'tiny-llama',
  route: 'support-bot',
  messages: [{ role: 'user', content: 'Where is my order?' }],
  output: 'It ships tomorrow.',
  userId: 'u-1',
  ...over,
});

/** Every row in every table that capture writes, to prove a rejected request wrote nothing. */
async function rowCounts(t: TestServer): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of [
    'interactions',
    'interaction_tags',
    'feedback',
    'feedback_current',
    'raters',
    'score_configs',
  ]) {
    const r = await sql<{ n: number }>`select count(*) as n from ${sql.table(table)}`.execute(t.store.db);
    out[table] = Number(r.rows[0]!.n);
  }
  return out;
}

for (const target of testDatabases()) {
  describe(`capture API on ${target.name}`, () => {
    let t: TestServer;
    let foreign: { key: string; interactionId: string };
    /** The feedback token the capture API returned for `known-1`. */
    let knownToken: string;

    beforeAll(async () => {
      t = await startTestServer(await target.create(), { config: { bodyLimit: 64 * 1024 } });
      const other = await t.store.projects.create('other');
      const otherKey = await t.store.projects.createKey(other.id, 'secret');
      await t.store.interactions.insert(other.id, [
        {
          ...interaction({ id: 'foreign-1' }),
          output: { role: 'assistant', content: 'x' },
          status: 'ok',
          source: 'api',
        },
      ]);
      foreign = { key: otherKey.key, interactionId: 'foreign-1' };
      const res = await t.call('/api/v1/interactions', { body: interaction({ id: 'known-1' }) });
      expect(res.status).toBe(201);
      knownToken = res.body.feedbackToken;
    });
    afterAll(async () => {
      await t?.close();
      await target.cleanup();
    });

    it('logs an interaction, then a repeat of its id writes nothing', async () => {
      const first = await t.call('/api/v1/interactions', { body: interaction({ id: 'abc', tags: ['vip'] }) });
      expect(first).toMatchObject({ status: 201, body: { id: 'abc', created: true } });
      const repeat = await t.call('/api/v1/interactions', {
        body: interaction({ id: 'abc', model: 'changed' }),
      });
      expect(repeat).toMatchObject({ status: 200, body: { id: 'abc', created: false } });
      const got = await t.call('/api/v1/interactions/abc');
      expect(got.body).toMatchObject({
        model: 'tiny-llama',
        tags: ['vip'],
        output: { role: 'assistant', content: 'It ships tomorrow.' },
      });
    });

    it('writes batches and lists them with filters and a cursor', async () => {
      const items = Array.from({ length: 30 }, (_, i) =>
        interaction({ id: `b-${i}`, userId: `batch-user`, createdAt: 1_700_000_000_000 + i }),
      );
      const res = await t.call('/api/v1/interactions', { body: { items } });
      expect(res.status).toBe(201);
      expect(res.body.items).toHaveLength(30);
      const ids: string[] = [];
      let cursor: string | null = null;
      do {
        const page = await t.call(
          `/api/v1/interactions?userId=batch-user&limit=7${cursor ? `&cursor=${cursor}` : ''}`,
        );
        expect(page.status).toBe(200);
        ids.push(...page.body.items.map((i: { id: string }) => i.id));
        cursor = page.body.nextCursor;
      } while (cursor);
      expect(ids).toEqual(items.map((i) => i.id).reverse());
    });

    it('takes every kind of feedback from the secret key, as given, and shows history with the current one', async () => {
      await t.call('/api/v1/interactions', { body: interaction({ id: 'pair-b' }) });
      const batch = [
        { kind: 'thumbs', interactionId: 'known-1', value: 'down', raterId: 'r-1', createdAt: 1000 },
        { kind: 'thumbs', interactionId: 'known-1', value: 'up', raterId: 'r-1', createdAt: 2000 },
        { kind: 'stars', interactionId: 'known-1', value: 5, raterId: 'r-1' },
        {
          kind: 'criteria',
          interactionId: 'known-1',
          scores: { relevance: 4, accuracy: 5, helpfulness: 3 },
          raterId: 'r-2',
          source: 'annotator',
        },
        { kind: 'comment', interactionId: 'known-1', text: 'Good but slow', raterId: 'r-2' },
        {
          kind: 'correction',
          interactionId: 'known-1',
          text: 'It ships tomorrow by 5pm.',
          raterId: 'r-2',
          source: 'annotator',
        },
        { kind: 'preference', interactionId: 'known-1', other: 'pair-b', choice: 'this', raterId: 'r-2' },
        { kind: 'implicit', interactionId: 'known-1', signal: 'copied', source: 'implicit' },
      ];
      const res = await t.call('/api/v1/feedback', { body: { items: batch } });
      expect(res.status).toBe(201);
      expect(res.body.items.every((r: { created: boolean }) => r.created)).toBe(true);
      const got = await t.call('/api/v1/interactions/known-1');
      const thumbs = got.body.feedback.filter((f: { kind: string }) => f.kind === 'thumbs');
      expect(thumbs.map((f: { label: string; current: boolean }) => [f.label, f.current])).toEqual([
        ['down', false],
        ['up', true],
      ]);
      expect(new Set(got.body.feedback.map((f: { kind: string }) => f.kind))).toEqual(
        new Set(['thumbs', 'stars', 'criteria', 'comment', 'correction', 'preference', 'implicit']),
      );
    });

    it('makes a feedback idempotency key return the first event', async () => {
      const body = {
        kind: 'thumbs',
        interactionId: 'known-1',
        value: 'up',
        idempotencyKey: 'click-42',
        feedbackToken: knownToken,
      };
      const a = await t.call('/api/v1/feedback', { body, key: t.publicKey });
      const b = await t.call('/api/v1/feedback', { body: { ...body, value: 'down' }, key: t.publicKey });
      expect(a.status).toBe(201);
      expect(b).toMatchObject({ status: 200, body: { id: a.body.id, created: false } });
    });

    const oversized = { kind: 'comment', interactionId: 'known-1', text: 'x'.repeat(70 * 1024) };
    const badCases: {
      name: string;
      path: string;
      body?: unknown;
      raw?: string;
      key?: 'public' | 'wrong' | 'none' | 'foreign';
      headers?: Record<string, string>;
      method?: string;
      status: number;
      code: string;
      field?: string;
    }[] = [
      {
        name: 'wrong type in an interaction',
        path: '/api/v1/interactions',
        body: interaction({ model: 42 }),
        status: 400,
        code: 'invalid_request',
        field: 'model',
      },
      {
        name: 'messages missing',
        path: '/api/v1/interactions',
        body: { model: 'm', output: 'x' },
        status: 400,
        code: 'invalid_request',
        field: 'messages',
      },
      {
        name: 'unknown field',
        path: '/api/v1/interactions',
        body: interaction({ modle: 'typo' }),
        status: 400,
        code: 'invalid_request',
        field: 'modle',
      },
      {
        name: 'bad id characters',
        path: '/api/v1/interactions',
        body: interaction({ id: 'has space' }),
        status: 400,
        code: 'invalid_request',
        field: 'id',
      },
      {
        name: 'batch with one bad item',
        path: '/api/v1/interactions',
        body: { items: [interaction({ id: 'ok-1' }), interaction({ id: 'ok-2', latencyMs: -1 })] },
        status: 400,
        code: 'invalid_request',
        field: 'items.1.latencyMs',
      },
      {
        name: 'unknown feedback kind',
        path: '/api/v1/feedback',
        body: { kind: 'likes', interactionId: 'known-1' },
        status: 400,
        code: 'invalid_request',
        field: 'kind',
      },
      {
        name: 'thumbs with a wrong value',
        path: '/api/v1/feedback',
        body: { kind: 'thumbs', interactionId: 'known-1', value: 1 },
        status: 400,
        code: 'invalid_request',
        field: 'value',
      },
      {
        name: 'stars out of scale',
        path: '/api/v1/feedback',
        body: { kind: 'stars', interactionId: 'known-1', value: 7 },
        status: 400,
        code: 'invalid_request',
        field: 'value',
      },
      {
        name: 'stars on an unknown scale',
        path: '/api/v1/feedback',
        body: { kind: 'stars', interactionId: 'known-1', value: 3, scale: 'moons' },
        status: 400,
        code: 'invalid_request',
        field: 'scale',
      },
      {
        name: 'unknown criterion',
        path: '/api/v1/feedback',
        body: { kind: 'criteria', interactionId: 'known-1', scores: { wit: 3 } },
        status: 400,
        code: 'invalid_request',
        field: 'scores.wit',
      },
      {
        name: 'criterion out of scale',
        path: '/api/v1/feedback',
        body: { kind: 'criteria', interactionId: 'known-1', scores: { accuracy: 0 } },
        status: 400,
        code: 'invalid_request',
        field: 'scores.accuracy',
      },
      {
        name: 'unknown implicit signal',
        path: '/api/v1/feedback',
        body: { kind: 'implicit', interactionId: 'known-1', signal: 'liked' },
        status: 400,
        code: 'invalid_request',
        field: 'signal',
      },
      {
        name: 'preference without a choice',
        path: '/api/v1/feedback',
        body: { kind: 'preference', interactionId: 'known-1', other: 'pair-b' },
        status: 400,
        code: 'invalid_request',
        field: 'choice',
      },
      {
        name: 'feedback dated in the future (beyond clock skew), even from the secret key',
        path: '/api/v1/feedback',
        body: {
          items: [
            { kind: 'thumbs', interactionId: 'known-1', value: 'up', raterId: 'r-9' },
            { kind: 'thumbs', interactionId: 'known-1', value: 'up', createdAt: Date.now() + 3_600_000 },
          ],
        },
        status: 400,
        code: 'invalid_request',
        field: 'items.1.createdAt',
      },
      {
        name: 'feedback pinned at the largest timestamp',
        path: '/api/v1/feedback',
        body: { kind: 'thumbs', interactionId: 'known-1', value: 'up', createdAt: 2 ** 53 - 1 },
        status: 400,
        code: 'invalid_request',
        field: 'createdAt',
      },
      {
        name: 'missing interaction',
        path: '/api/v1/feedback',
        body: { kind: 'thumbs', interactionId: 'no-such', value: 'up' },
        status: 404,
        code: 'not_found',
        field: 'interactionId',
      },
      {
        name: 'batch where the last item rates a missing interaction',
        path: '/api/v1/feedback',
        body: {
          items: [
            { kind: 'thumbs', interactionId: 'known-1', value: 'up', raterId: 'batch-x' },
            { kind: 'thumbs', interactionId: 'nope', value: 'up' },
          ],
        },
        status: 404,
        code: 'not_found',
        field: 'items.1.interactionId',
      },
      {
        name: 'foreign project interaction',
        path: '/api/v1/feedback',
        body: { kind: 'thumbs', interactionId: 'foreign-1', value: 'up' },
        status: 404,
        code: 'not_found',
        field: 'interactionId',
      },
      {
        name: 'reading a foreign project interaction',
        path: '/api/v1/interactions/foreign-1',
        status: 404,
        code: 'not_found',
      },
      {
        name: 'feedback from the foreign key on our interaction',
        path: '/api/v1/feedback',
        key: 'foreign',
        body: { kind: 'thumbs', interactionId: 'known-1', value: 'up' },
        status: 404,
        code: 'not_found',
        field: 'interactionId',
      },
      {
        name: 'oversized body',
        path: '/api/v1/feedback',
        body: oversized,
        status: 413,
        code: 'payload_too_large',
        field: 'body',
      },
      {
        name: 'malformed JSON',
        path: '/api/v1/feedback',
        raw: '{"kind": "thumbs",',
        status: 400,
        code: 'invalid_request',
        field: 'body',
      },
      {
        name: 'not JSON',
        path: '/api/v1/feedback',
        raw: 'kind=thumbs',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        status: 415,
        code: 'unsupported_media_type',
      },
      {
        name: 'a JSON array instead of an object',
        path: '/api/v1/feedback',
        body: [{ kind: 'thumbs' }],
        status: 400,
        code: 'invalid_request',
        field: 'body',
      },
      {
        name: 'empty batch',
        path: '/api/v1/feedback',
        body: { items: [] },
        status: 400,
        code: 'invalid_request',
        field: 'items',
      },
      {
        name: 'wrong key',
        path: '/api/v1/feedback',
        key: 'wrong',
        body: { kind: 'thumbs', interactionId: 'known-1', value: 'up' },
        status: 401,
        code: 'unauthorized',
        field: 'authorization',
      },
      {
        name: 'no key',
        path: '/api/v1/interactions',
        key: 'none',
        body: interaction(),
        status: 401,
        code: 'unauthorized',
        field: 'authorization',
      },
      {
        name: 'public key writing an interaction',
        path: '/api/v1/interactions',
        key: 'public',
        body: interaction(),
        status: 403,
        code: 'forbidden',
        field: 'authorization',
      },
      {
        name: 'public key listing interactions',
        path: '/api/v1/interactions',
        key: 'public',
        status: 403,
        code: 'forbidden',
      },
      {
        name: 'public key reading an interaction',
        path: '/api/v1/interactions/known-1',
        key: 'public',
        status: 403,
        code: 'forbidden',
      },
      {
        name: 'public key on the gateway',
        path: '/v1/chat/completions',
        key: 'public',
        body: { model: 'x', messages: [{ role: 'user', content: 'hi' }] },
        status: 403,
        code: 'forbidden',
      },
      {
        name: 'public key on OTLP ingest',
        path: '/v1/traces',
        key: 'public',
        body: { resourceSpans: [] },
        status: 403,
        code: 'forbidden',
      },
      {
        name: 'bad cursor',
        path: '/api/v1/interactions?cursor=nonsense',
        status: 400,
        code: 'invalid_request',
        field: 'cursor',
      },
      {
        name: 'limit out of range',
        path: '/api/v1/interactions?limit=5000',
        status: 400,
        code: 'invalid_request',
        field: 'limit',
      },
      { name: 'unknown route', path: '/api/v1/nothing', status: 404, code: 'not_found' },
    ];

    it.each(badCases)('rejects $name with $status and leaves the store unchanged', async (c) => {
      const before = await rowCounts(t);
      const key =
        c.key === 'public'
          ? t.publicKey
          : c.key === 'wrong'
            ? 'rk_sec_wrongwrongwrong'
            : c.key === 'none'
              ? null
              : c.key === 'foreign'
                ? foreign.key
                : undefined;
      const res = await t.call(c.path, { body: c.raw ?? c.body, key, headers: c.headers, method: c.method });
      expect(res.status).toBe(c.status);
      expect(res.body.error.code).toBe(c.code);
      expect(typeof res.body.error.message).toBe('string');
      if (c.field) expect(res.body.error.path).toBe(c.field);
      expect(await rowCounts(t)).toEqual(before);
    });

    it('serves an OpenAPI document naming every capture endpoint', async () => {
      const res = await t.call('/openapi.json', { key: null });
      expect(res.status).toBe(200);
      expect(res.body.openapi).toMatch(/^3\./);
      for (const path of [
        '/api/v1/interactions',
        '/api/v1/interactions/{id}',
        '/api/v1/feedback',
        '/v1/traces',
        '/v1/chat/completions',
      ]) {
        expect(Object.keys(res.body.paths)).toContain(path);
      }
      const feedbackSchema = JSON.stringify(res.body.paths['/api/v1/feedback'].post.requestBody);
      for (const kind of ['thumbs', 'stars', 'criteria', 'comment', 'correction', 'preference', 'implicit'])
        expect(feedbackSchema).toContain(kind);
    });

    it('answers health and Prometheus metrics', async () => {
      expect(await t.call('/healthz', { key: null })).toMatchObject({
        status: 200,
        body: { status: 'ok', database: target.name },
      });
      const metrics = await t.call('/metrics', { key: null });
      expect(metrics.status).toBe(200);
      expect(metrics.body).toContain('ratchet_feedback_written_total');
      expect(metrics.body).toMatch(
        /ratchet_http_requests_total\{route="\/api\/v1\/feedback",method="POST",status="201"\} \d+/,
      );
    });
  });
}

describe('rate limit', () => {
  it('answers 429 with retry-after once a key exceeds its rate, per key', async () => {
    const [db] = testDatabases();
    const t = await startTestServer(await db!.create(), {
      config: { rateLimitPerSecond: 1, rateLimitBurst: 3 },
    });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await t.call('/api/v1/interactions?limit=1')).status);
      expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
      expect(statuses.slice(3)).toContain(429);
      const limited = await t.call('/api/v1/interactions?limit=1');
      expect(limited.headers.get('retry-after')).toBe('1');
      // Another key has its own bucket: refused for its missing token, not for the rate.
      const other = await t.call('/api/v1/feedback', {
        key: t.publicKey,
        body: { kind: 'thumbs', interactionId: 'x', value: 'up' },
      });
      expect(other.status).toBe(401);
      expect(other.body.error.path).toBe('feedbackToken');
    } finally {
      await t.close();
      await db!.cleanup();
    }
  });
});
