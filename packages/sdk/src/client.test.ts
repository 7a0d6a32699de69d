import { RatchetError } from '@ratchet/core';
import { startTestServer, type TestServer } from '@ratchet/server/testing';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Ratchet, type RatchetOptions } from './client.js';
import { RatchetApiError, RatchetDeliveryError, RatchetFlushError, type RatchetSdkError } from './errors.js';
import { type FlakyProxy, startFlakyProxy } from './test-utils/flaky-proxy.js';
import { backoffDelay, parseRetryAfter } from './transport.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function interaction(i: number, extra: Record<string, unknown> = {}) {
  return {
    model: 'tiny-chat',
    messages: [{ role: 'user' as const, content: `question ${i}` }],
    output: `answer ${i}`,
    ...extra,
  };
}

async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const target of testDatabases()) {
  describe(`Ratchet client on ${target.name}`, () => {
    let t: TestServer;
    let proxy: FlakyProxy;
    const clients: Ratchet[] = [];
    let errors: RatchetSdkError[] = [];

    /** A client that talks to the server through the flaky proxy, with fast retries. */
    const client = (options: Partial<RatchetOptions> = {}) => {
      const c = new Ratchet({
        baseUrl: proxy.url,
        apiKey: t.secretKey,
        retryBaseDelayMs: 5,
        flushOnExit: false,
        onError: (e) => errors.push(e),
        ...options,
      });
      clients.push(c);
      return c;
    };
    const counts = async () => ({
      interactions: await t.store.interactions.count(t.projectId),
      feedback: await t.store.feedback.count(t.projectId),
    });
    const requestsSince = (n: number) => proxy.requests.slice(n);

    beforeAll(async () => {
      t = await startTestServer(await target.create());
      proxy = await startFlakyProxy(t.url);
    });
    afterEach(async () => {
      proxy.heal();
      await Promise.all(clients.splice(0).map((c) => c.shutdown().catch(() => undefined)));
      errors = [];
    });
    afterAll(async () => {
      await proxy?.close();
      await t?.close();
      await target.cleanup();
    });

    it('batches queued writes in the background, interactions first, and everything reads back', async () => {
      const ratchet = client({ maxBatchSize: 25, flushIntervalMs: 20 });
      const before = await counts();
      const firstRequest = proxy.requests.length;
      const ids: string[] = [];
      for (let i = 0; i < 100; i++) {
        const id = ratchet.logInteraction(interaction(i, { userId: `user-${i % 5}`, tags: ['batched'] }));
        ids.push(id);
        ratchet.feedback({ kind: 'thumbs', interactionId: id, value: i % 2 ? 'up' : 'down' });
        if (i % 10 === 0) ratchet.feedback({ kind: 'comment', interactionId: id, text: `note ${i}` });
      }
      expect(ids.every((id) => UUID_V7.test(id))).toBe(true);
      expect(new Set(ids).size).toBe(100);

      await waitFor(async () => (await counts()).feedback === before.feedback + 110);
      expect(await counts()).toEqual({
        interactions: before.interactions + 100,
        feedback: before.feedback + 110,
      });
      const sent = requestsSince(firstRequest);
      expect(sent.length).toBeGreaterThanOrEqual(9);
      expect(sent.every((r) => r.items >= 1 && r.items <= 25)).toBe(true);
      expect(errors).toEqual([]);

      const got = await t.call(`/api/v1/interactions/${ids[7]}`);
      expect(got.body).toMatchObject({
        id: ids[7],
        model: 'tiny-chat',
        userId: 'user-2',
        tags: ['batched'],
        source: 'sdk',
        output: { role: 'assistant', content: 'answer 7' },
        feedback: [{ kind: 'thumbs', label: 'up', raterId: 'user-2', current: true }],
      });
    });

    it('sends an interaction before feedback on it even when each write flushes at once', async () => {
      const ratchet = client({ maxBatchSize: 1 });
      const firstRequest = proxy.requests.length;
      for (let i = 0; i < 5; i++) {
        const id = ratchet.logInteraction(interaction(i));
        ratchet.feedback({ kind: 'stars', interactionId: id, value: 4 });
      }
      await ratchet.flush();
      expect(errors).toEqual([]);
      const paths = requestsSince(firstRequest).map((r) => r.path);
      expect(paths.filter((p) => p === '/api/v1/feedback')).toHaveLength(5);
      expect(paths.indexOf('/api/v1/interactions')).toBeLessThan(paths.indexOf('/api/v1/feedback'));
    });

    it('retries 503s with backoff and writes every item exactly once', async () => {
      const ratchet = client({ maxRetries: 5, flushIntervalMs: 60_000 });
      const before = await counts();
      const firstRequest = proxy.requests.length;
      proxy.failNext(3, 'refuse');
      for (let i = 0; i < 10; i++) {
        const id = ratchet.logInteraction(interaction(i));
        ratchet.feedback({ kind: 'thumbs', interactionId: id, value: 'up' });
      }
      await ratchet.flush();
      expect(requestsSince(firstRequest).map((r) => r.mode)).toEqual([
        'refuse',
        'refuse',
        'refuse',
        'forward',
        'forward',
      ]);
      expect(await counts()).toEqual({
        interactions: before.interactions + 10,
        feedback: before.feedback + 10,
      });
      expect(errors).toEqual([]);
    });

    it('retries a write whose answer was lost without writing it twice', async () => {
      const ratchet = client({ flushIntervalMs: 60_000 });
      const before = await counts();
      const ids = [0, 1, 2, 3, 4].map((i) => ratchet.logInteraction(interaction(i)));
      proxy.failNext(2, 'lose-answer');
      await ratchet.flush();
      for (const id of ids) ratchet.feedback({ kind: 'implicit', interactionId: id, signal: 'copied' });
      proxy.failNext(2, 'lose-answer');
      await ratchet.flush();
      // Each batch reached the server three times; the idempotency of ids and keys kept one copy.
      expect(await counts()).toEqual({
        interactions: before.interactions + 5,
        feedback: before.feedback + 5,
      });
      expect(errors).toEqual([]);
    });

    it('honors retry-after on a 429', async () => {
      const ratchet = client({ retryBaseDelayMs: 1, flushIntervalMs: 60_000 });
      proxy.failNext(1, 'refuse', { status: 429, retryAfter: '1' });
      const firstRequest = proxy.requests.length;
      ratchet.logInteraction(interaction(1));
      await ratchet.flush();
      const [refused, accepted] = requestsSince(firstRequest);
      expect(refused?.mode).toBe('refuse');
      expect(accepted!.at - refused!.at).toBeGreaterThanOrEqual(950);
    });

    it('surfaces a rejected item without retrying it, and writes the rest of its batch', async () => {
      const ratchet = client({ flushIntervalMs: 60_000 });
      const ids = [0, 1, 2].map((i) => ratchet.logInteraction(interaction(i)));
      await ratchet.flush();
      const before = await counts();
      const firstRequest = proxy.requests.length;
      ratchet.feedback({ kind: 'thumbs', interactionId: ids[0]!, value: 'up' });
      const badKey = ratchet.feedback({ kind: 'stars', interactionId: ids[1]!, value: 9 });
      ratchet.feedback({ kind: 'thumbs', interactionId: ids[2]!, value: 'down' });

      const err = await ratchet.flush().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RatchetFlushError);
      const [rejected] = (err as RatchetFlushError).errors;
      expect(rejected).toBeInstanceOf(RatchetApiError);
      expect(rejected).toMatchObject({ status: 400, code: 'invalid_request', path: 'items.1.value' });
      expect(rejected!.items).toMatchObject([{ kind: 'stars', value: 9, idempotencyKey: badKey }]);
      expect(errors).toEqual([rejected]);
      // One rejected request, one with the two good items; the bad one was never sent again.
      expect(requestsSince(firstRequest).map((r) => r.items)).toEqual([3, 2]);
      expect(await counts()).toEqual({ ...before, feedback: before.feedback + 2 });
      expect(ratchet.pending).toEqual({ interactions: 0, feedback: 0 });
    });

    it.each([
      { key: 'rk_sec_not-a-key', status: 401, code: 'unauthorized' },
      { key: 'public', status: 403, code: 'forbidden' },
    ])('reports a $status ($code) once, without retrying', async ({ key, status, code }) => {
      const ratchet = client({ apiKey: key === 'public' ? t.publicKey : key, flushIntervalMs: 60_000 });
      const before = await counts();
      const firstRequest = proxy.requests.length;
      ratchet.logInteraction(interaction(1));
      const err = (await ratchet.flush().catch((e: unknown) => e)) as RatchetFlushError;
      expect(err.errors).toHaveLength(1);
      expect(err.errors[0]).toMatchObject({ status, code });
      expect(errors).toHaveLength(1);
      expect(requestsSince(firstRequest)).toHaveLength(1);
      expect(await counts()).toEqual(before);
    });

    it('keeps writes queued while the server is unreachable and sends them once it is back', async () => {
      const ratchet = client({ maxRetries: 2, flushIntervalMs: 60_000 });
      const before = await counts();
      proxy.failAll('refuse');
      const id = ratchet.logInteraction(interaction(1));
      ratchet.feedback({ kind: 'thumbs', interactionId: id, value: 'up' });
      const err = (await ratchet.flush().catch((e: unknown) => e)) as RatchetFlushError;
      expect(err.errors[0]).toBeInstanceOf(RatchetDeliveryError);
      expect(err.errors[0]).toMatchObject({ attempts: 3, status: 503 });
      expect(ratchet.pending).toEqual({ interactions: 1, feedback: 1 });
      expect(await counts()).toEqual(before);

      proxy.heal();
      await ratchet.flush();
      expect(ratchet.pending).toEqual({ interactions: 0, feedback: 0 });
      expect(await counts()).toEqual({
        interactions: before.interactions + 1,
        feedback: before.feedback + 1,
      });
    });

    it('drops what it cannot deliver at shutdown, and reports it', async () => {
      const ratchet = client({ maxRetries: 1, flushIntervalMs: 60_000 });
      proxy.failAll('refuse');
      ratchet.logInteraction(interaction(1));
      const err = (await ratchet.shutdown().catch((e: unknown) => e)) as RatchetFlushError;
      expect(err.errors[0]).toBeInstanceOf(RatchetDeliveryError);
      expect(err.errors[0]!.items).toHaveLength(1);
      expect(ratchet.pending).toEqual({ interactions: 0, feedback: 0 });
    });

    it('sends directly, awaiting the answer, idempotently', async () => {
      const ratchet = client();
      const [written] = await ratchet.sendInteractions([interaction(1)]);
      expect(written).toMatchObject({ created: true, feedbackToken: expect.stringMatching(/^ft1\./) });
      expect(written!.id).toMatch(UUID_V7);

      const comment = {
        kind: 'comment',
        interactionId: written!.id,
        text: 'helpful',
        idempotencyKey: 'c-1',
      } as const;
      const first = await ratchet.sendFeedback(comment);
      const again = await ratchet.sendFeedback(comment);
      expect(first.created).toBe(true);
      expect(again).toEqual({ id: first.id, created: false });

      await expect(
        ratchet.sendFeedback({ kind: 'thumbs', interactionId: 'no-such-interaction', value: 'up' }),
      ).rejects.toMatchObject({ status: 404, code: 'not_found', path: 'items.0.interactionId' });

      // Feedback on an interaction still in the queue sends the interaction first.
      const queued = ratchet.logInteraction(interaction(2));
      expect(
        await ratchet.sendFeedback({ kind: 'thumbs', interactionId: queued, value: 'up' }),
      ).toMatchObject({
        created: true,
      });
      expect(errors).toEqual([]);
    });

    it('holds feedback on a reserved id until that interaction is logged', async () => {
      const ratchet = client({ flushIntervalMs: 60_000 });
      const id = ratchet.reserveInteractionId();
      ratchet.feedback({ kind: 'thumbs', interactionId: id, value: 'down' });
      await ratchet.flush();
      expect(ratchet.pending).toEqual({ interactions: 0, feedback: 1 });

      ratchet.logInteraction({ id, ...interaction(1) });
      await ratchet.flush();
      expect(ratchet.pending).toEqual({ interactions: 0, feedback: 0 });
      const got = await t.call(`/api/v1/interactions/${id}`);
      expect(got.body.feedback).toMatchObject([{ kind: 'thumbs', label: 'down' }]);
      expect(errors).toEqual([]);
    });

    it('rejects invalid input where it is made, naming the field', () => {
      const ratchet = client();
      const badStars = () =>
        ratchet.feedback({ kind: 'stars', interactionId: 'x', value: 'five' as unknown as number });
      expect(badStars).toThrow(RatchetError);
      expect(badStars).toThrow(/^value:/);
      expect(() => ratchet.logInteraction({ model: 'm', messages: [], output: 'x' })).toThrow(/^messages:/);
      expect(ratchet.pending).toEqual({ interactions: 0, feedback: 0 });
    });

    it('sends what is left at shutdown and refuses writes after it', async () => {
      const ratchet = client({ flushIntervalMs: 60_000 });
      const before = await counts();
      const id = ratchet.logInteraction(interaction(1));
      ratchet.feedback({ kind: 'correction', interactionId: id, text: 'a better answer' });
      await ratchet.shutdown();
      expect(await counts()).toEqual({
        interactions: before.interactions + 1,
        feedback: before.feedback + 1,
      });
      ratchet.logInteraction(interaction(2));
      expect(errors.map((e) => e.message)).toEqual(['logInteraction after shutdown(); not sent']);
    });
  });
}

describe('retry timing', () => {
  const policy = { maxRetries: 5, baseDelayMs: 100, maxDelayMs: 1000 };

  it('grows exponentially with jitter, up to the cap', () => {
    expect(backoffDelay(0, policy, () => 0)).toBe(50);
    expect(backoffDelay(0, policy, () => 1)).toBe(100);
    expect(backoffDelay(3, policy, () => 0.5)).toBe(600);
    expect(backoffDelay(10, policy, () => 1)).toBe(1000);
  });

  it('reads retry-after as seconds or a date, within a minute', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 7_000)).toBe(3000);
    expect(parseRetryAfter('3600')).toBe(60_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});
