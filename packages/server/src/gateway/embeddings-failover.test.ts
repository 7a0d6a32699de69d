import { testDatabases } from '@ratchet/store/testing';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type FailingUpstream,
  refusedURL,
  startSilentServer,
  startStallingServer,
} from '../testing/failing-upstreams.js';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const target of testDatabases()) {
  describe(`POST /v1/embeddings fails over like chat on ${target.name}, with real local upstreams`, () => {
    let t: TestServer;
    let client: OpenAI;
    let backup: LocalUpstream;
    let flaky: LocalUpstream;
    let breaker: LocalUpstream;
    let silent: FailingUpstream;
    let stalling: FailingUpstream;
    /** What the flaky upstream answers next: a status to fail with, or undefined to answer. */
    const failures: number[] = [];
    let breakerStatus: number | undefined = 500;

    beforeAll(async () => {
      backup = await startLocalUpstream();
      flaky = await startLocalUpstream({ failWith: () => failures.shift() });
      breaker = await startLocalUpstream({ failWith: () => breakerStatus });
      silent = await startSilentServer();
      stalling = await startStallingServer();
      const fallback = { fallbacks: [{ upstream: 'backup', model: 'backup-embed' }], backoffMs: 10 };
      const route = (upstream: string, failover: Record<string, unknown> = fallback) => ({
        variants: [{ name: 'main', upstream, model: `${upstream}-embed`, weight: 1 }],
        failover,
      });
      t = await startTestServer(await target.create(), {
        gateway: {
          upstreams: {
            backup: { baseURL: backup.url },
            flaky: { baseURL: flaky.url, circuit: { failures: 50 } },
            breaker: { baseURL: breaker.url, circuit: { failures: 2, openMs: 400 } },
            refused: { baseURL: await refusedURL() },
            alsoRefused: { baseURL: await refusedURL() },
            silent: { baseURL: silent.url, firstTokenTimeoutMs: 300 },
            stalling: { baseURL: stalling.url, totalTimeoutMs: 500 },
            // Anthropic serves no embeddings: a fallback to it is skipped, not tried.
            claude: { provider: 'anthropic', baseURL: backup.url },
          },
          routes: {
            'refused-embed': route('refused', {
              fallbacks: [
                { upstream: 'claude', model: 'claude-x' },
                { upstream: 'backup', model: 'backup-embed' },
              ],
            }),
            'silent-embed': route('silent'),
            'stalling-embed': route('stalling'),
            'flaky-embed': route('flaky'),
            'retry-embed': route('flaky', { ...fallback, retries: 2 }),
            'breaker-embed': route('breaker'),
            'dead-embed': route('refused', { fallbacks: [{ upstream: 'alsoRefused', model: 'm2' }] }),
          },
        },
      });
      client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: t.secretKey, maxRetries: 0 });
    });
    afterAll(async () => {
      await t?.close();
      for (const u of [backup, flaky, breaker, silent, stalling]) await u?.close();
      await target.cleanup();
    });

    /** The call's usage record, once its write (off the response path) has landed. */
    async function usageRecord(id: string | null) {
      let page = await t.call('/api/v1/usage-records?kind=embeddings&limit=100');
      for (let i = 0; i < 50 && !page.body.items.some((r: { id: string }) => r.id === id); i++) {
        await sleep(20);
        page = await t.call('/api/v1/usage-records?kind=embeddings&limit=100');
      }
      return page.body.items.find((r: { id: string }) => r.id === id);
    }

    async function embed(model: string) {
      const { data, response } = await client.embeddings
        .create({ model, input: 'hello', encoding_format: 'float' })
        .withResponse();
      expect(data.data[0]?.embedding).toHaveLength(8);
      return { model: data.model, record: await usageRecord(response.headers.get('x-ratchet-usage-id')) };
    }

    it('falls back when the upstream refuses the connection, skipping a fallback that cannot embed', async () => {
      const before = backup.requests.length;
      const { model, record } = await embed('refused-embed');
      expect(model).toBe('backup-embed');
      expect(record).toMatchObject({ status: 'ok', upstream: 'backup', model: 'backup-embed' });
      expect(backup.requests.length).toBe(before + 1);
      expect(backup.received.some((r) => r.path.endsWith('/messages'))).toBe(false);
    });

    it('falls back when the upstream sends nothing before its first-token timeout', async () => {
      const started = performance.now();
      expect((await embed('silent-embed')).record).toMatchObject({ upstream: 'backup' });
      expect(performance.now() - started).toBeLessThan(3000);
    });

    it('falls back when the answer is not complete by the total timeout', async () => {
      expect((await embed('stalling-embed')).record).toMatchObject({ upstream: 'backup' });
    });

    it('falls back on 429 and on 5xx', async () => {
      for (const status of [429, 500, 503]) {
        failures.push(status);
        expect((await embed('flaky-embed')).model, String(status)).toBe('backup-embed');
      }
    });

    it('retries the same upstream first when the route allows retries', async () => {
      failures.push(503, 429);
      const hits = flaky.requests.length;
      const { model, record } = await embed('retry-embed');
      expect(model).toBe('flaky-embed');
      expect(record).toMatchObject({ upstream: 'flaky', status: 'ok' });
      expect(flaky.requests.length).toBe(hits + 3);
    });

    it('answers 502 naming every try when no upstream answers, and records it', async () => {
      const res = await t.call('/v1/embeddings', { body: { model: 'dead-embed', input: 'x' } });
      expect(res.status).toBe(502);
      expect(res.body.error.message).toMatch(/refused: .*ECONNREFUSED.*alsoRefused: .*ECONNREFUSED/);
      expect(await usageRecord(res.headers.get('x-ratchet-usage-id'))).toMatchObject({
        status: 'error',
        error: expect.stringMatching(/alsoRefused/),
      });
    });

    it('opens the circuit after its failures, skips the upstream, probes it half-open, and closes on success', async () => {
      const gateway = t.server.gateway!;
      breakerStatus = 500;
      for (let i = 0; i < 2; i++) expect((await embed('breaker-embed')).model).toBe('backup-embed');
      expect(gateway.circuitState('breaker')).toBe('open');
      const hits = breaker.requests.length;
      expect((await embed('breaker-embed')).model).toBe('backup-embed');
      expect(breaker.requests.length).toBe(hits);
      await sleep(450);
      expect(gateway.circuitState('breaker')).toBe('half-open');
      breakerStatus = undefined;
      expect((await embed('breaker-embed')).model).toBe('breaker-embed');
      expect(gateway.circuitState('breaker')).toBe('closed');
      expect(breaker.requests.length).toBe(hits + 1);
    });

    it('counts the failed tries in /metrics like chat calls', async () => {
      const text = (await t.call('/metrics', { key: null })).body as string;
      const value = (labels: string) => {
        const line = text
          .split('\n')
          .find((l) => l.startsWith(`ratchet_gateway_upstream_failures_total{${labels}} `));
        return line ? Number(line.split(' ')[1]) : 0;
      };
      expect(value('upstream="refused",reason="connection"')).toBe(2);
      expect(value('upstream="silent",reason="timeout"')).toBe(1);
      expect(value('upstream="stalling",reason="timeout"')).toBe(1);
      expect(value('upstream="flaky",reason="429"')).toBe(2);
      expect(value('upstream="flaky",reason="5xx"')).toBe(3);
      expect(value('upstream="breaker",reason="circuit_open"')).toBe(1);
    });
  });
}
