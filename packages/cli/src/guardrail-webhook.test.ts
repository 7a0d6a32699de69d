import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  lookAtOpenWatches,
  lookAtPromotionWatch,
  signatureHeader,
  type WebhookDelivery,
} from '@ratchet/loop';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './test-utils/process.js';
import { plantHarm } from './test-utils/watch.js';

const secret = 'whsec-retry';

/** A real HTTP receiver that answers each POST with the next status of `statuses` (the last one repeats). */
async function startReceiver(statuses: number[]) {
  const received: { at: number; signature: string; body: string }[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ at: Date.now(), signature: String(req.headers[signatureHeader]), body });
      res.writeHead(statuses[Math.min(received.length - 1, statuses.length - 1)]!).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return { url, received, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const signedBy = (r: { signature: string; body: string }) => {
  const [, ts, mac] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(r.signature) ?? [];
  return mac !== undefined && createHmac('sha256', secret).update(`${ts}.${r.body}`).digest('hex') === mac;
};

/** Fast retries for the test: the backoff before retry n is 40·2^(n-1) ms, half of it jitter. */
const retry = { attempts: 4, baseDelayMs: 40, maxDelayMs: 1000, timeoutMs: 2000 };

/**
 * The rollback webhook's retries against real local HTTP receivers: a receiver that fails twice
 * (503) gets the same signed event a third time and the delivery is recorded as delivered after
 * three attempts, spaced by the backoff; a receiver that always fails (500, or nothing listening)
 * is recorded as failed after the bounded attempts while the rollback itself stands; a 4xx
 * refusal is not retried.
 */
for (const target of testDatabases()) {
  describe(`the guardrail's rollback webhook is retried on ${target.name}`, () => {
    let url: string;
    let store: Store;
    let projectId: string;

    beforeAll(async () => {
      url = await target.create();
      store = await Store.open(url);
      projectId = (await store.projects.create('hooked')).id;
    }, 60_000);
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    const recorded = async (watchId: string) =>
      (
        await store.audit.list(projectId, {
          subjectType: 'watch',
          subjectId: watchId,
          action: 'watch.webhook',
        })
      ).map((e) => e.details as WebhookDelivery);

    it('a receiver that fails twice with 503 gets the event on the third attempt, after backoff', async () => {
      const receiver = await startReceiver([503, 503, 200]);
      try {
        const watch = await plantHarm(store, projectId, 'flaky');
        const out = await lookAtPromotionWatch(store, watch, {
          webhook: { url: receiver.url, secret, retry },
        });
        expect(out.decision).toBe('rollback');
        expect(out.webhook).toMatchObject({ delivered: true, status: 200 });
        expect(out.webhook!.attempts.map((a) => a.status)).toEqual([503, 503, 200]);
        // The same event each time, each signed with the shared secret.
        expect(receiver.received).toHaveLength(3);
        expect(new Set(receiver.received.map((r) => r.body)).size).toBe(1);
        expect(receiver.received.every(signedBy)).toBe(true);
        expect(JSON.parse(receiver.received[0]!.body)).toMatchObject({ route: 'flaky', watch: watch.id });
        // Backoff: at least half of 40 ms before the first retry and of 80 ms before the second.
        const [a, b, c] = receiver.received.map((r) => r.at);
        expect(b! - a!).toBeGreaterThanOrEqual(19);
        expect(c! - b!).toBeGreaterThanOrEqual(39);
        // Recorded: one audit entry with every attempt; `ratchet watch status` shows it.
        const [delivery, ...more] = await recorded(watch.id);
        expect(more).toEqual([]);
        expect(delivery).toMatchObject({ delivered: true, status: 200, url: receiver.url });
        expect(delivery!.attempts).toHaveLength(3);
        const status = await runCli(['watch', 'status', '--project', 'hooked', '--all', '--route', 'flaky'], {
          RATCHET_DATABASE_URL: url,
        });
        expect(status.stdout).toContain('webhook: 200 after 3 attempts');
      } finally {
        await receiver.close();
      }
    }, 60_000);

    it('a receiver that always fails is recorded as failed after the bounded attempts; the rollback stands', async () => {
      const receiver = await startReceiver([500]);
      try {
        const watch = await plantHarm(store, projectId, 'down');
        const out = await lookAtPromotionWatch(store, watch, {
          webhook: { url: receiver.url, secret, retry },
        });
        expect(out.decision).toBe('rollback');
        expect(out.webhook).toMatchObject({ delivered: false, status: 500 });
        expect(receiver.received).toHaveLength(retry.attempts);
        // Nothing else broke: the registry, the route and the watch are rolled back.
        expect((await store.models.production(projectId, 'down'))?.name).toBe('down-good');
        expect((await store.routes.get(projectId, 'down'))?.variants.map((v) => v.model)).toEqual([
          'down-good',
        ]);
        expect((await store.watches.get(projectId, watch.id))?.status).toBe('rolled_back');
        const [delivery] = await recorded(watch.id);
        expect(delivery).toMatchObject({ delivered: false, status: 500 });
        expect(delivery!.attempts.map((a) => a.status)).toEqual([500, 500, 500, 500]);
        // The next pass goes on as usual (the watch is closed, nothing is sent again).
        expect(await lookAtOpenWatches(store, { webhook: { url: receiver.url, secret, retry } })).toEqual([]);
        expect(receiver.received).toHaveLength(retry.attempts);
      } finally {
        await receiver.close();
      }
    }, 60_000);

    it('nothing listening (a network error) is retried too and recorded with the error', async () => {
      const gone = await startReceiver([200]);
      await gone.close(); // the port is free now: every connection is refused
      const watch = await plantHarm(store, projectId, 'nohost');
      const out = await lookAtPromotionWatch(store, watch, { webhook: { url: gone.url, secret, retry } });
      expect(out.decision).toBe('rollback');
      expect(out.webhook?.delivered).toBe(false);
      expect(out.webhook!.attempts).toHaveLength(retry.attempts);
      expect(out.webhook!.error).toMatch(/ECONNREFUSED/);
      expect((await store.models.production(projectId, 'nohost'))?.name).toBe('nohost-good');
      const [delivery] = await recorded(watch.id);
      expect(delivery).toMatchObject({ delivered: false, error: expect.stringMatching(/ECONNREFUSED/) });
    }, 60_000);

    it('a shutdown cuts the retries short: the rollback stands, the delivery is recorded as not delivered', async () => {
      const receiver = await startReceiver([503]);
      try {
        const watch = await plantHarm(store, projectId, 'stopping');
        const stop = new AbortController();
        const started = Date.now();
        setTimeout(() => stop.abort(), 300);
        const out = await lookAtPromotionWatch(store, watch, {
          webhook: { url: receiver.url, secret, retry: { ...retry, baseDelayMs: 20_000 } },
          signal: stop.signal,
        });
        // Without the abort the first retry alone would wait at least 10 s.
        expect(Date.now() - started).toBeLessThan(5000);
        expect(out.decision).toBe('rollback');
        expect(out.webhook).toMatchObject({
          delivered: false,
          error: 'not sent: the server is shutting down',
        });
        expect(out.webhook!.attempts.map((a) => a.status ?? a.error)).toEqual([
          503,
          'not sent: the server is shutting down',
        ]);
        expect((await store.models.production(projectId, 'stopping'))?.name).toBe('stopping-good');
        expect((await recorded(watch.id))[0]).toMatchObject({ delivered: false });
      } finally {
        await receiver.close();
      }
    }, 60_000);

    it('a 4xx refusal is not retried: the receiver rejected the event, not the moment', async () => {
      const receiver = await startReceiver([401, 200]);
      try {
        const watch = await plantHarm(store, projectId, 'refused');
        const out = await lookAtPromotionWatch(store, watch, {
          webhook: { url: receiver.url, secret, retry },
        });
        expect(out.webhook).toMatchObject({ delivered: false, status: 401 });
        expect(receiver.received).toHaveLength(1);
      } finally {
        await receiver.close();
      }
    }, 60_000);
  });
}
