import { testDatabases } from '@ratchet/store/testing';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type FailingUpstream,
  refusedURL,
  startBreakingStream,
  startSilentServer,
  startStallingServer,
} from '../testing/failing-upstreams.js';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';
import { parseGatewayConfig } from './config.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('failover config', () => {
  it('refuses a fallback to an unknown upstream, naming the field', () => {
    expect(() =>
      parseGatewayConfig({
        upstreams: { a: { baseURL: 'http://127.0.0.1:1/v1' } },
        routes: {
          bot: {
            variants: [{ name: 'v', upstream: 'a', model: 'm', weight: 1 }],
            failover: { fallbacks: [{ upstream: 'nowhere', model: 'm' }] },
          },
        },
      }),
    ).toThrow(/routes\.bot\.failover\.fallbacks\.0\.upstream: unknown upstream "nowhere"/);
    expect(() =>
      parseGatewayConfig({
        upstreams: { a: { baseURL: 'http://127.0.0.1:1/v1', circuit: { failures: 0 } } },
      }),
    ).toThrow(/upstreams\.a\.circuit\.failures/);
  });
});

for (const target of testDatabases()) {
  describe(`gateway failover on ${target.name}, with real local upstreams and the official openai npm client`, () => {
    let t: TestServer;
    let client: OpenAI;
    let backup: LocalUpstream;
    let flaky: LocalUpstream;
    let breaker: LocalUpstream;
    let silent: FailingUpstream;
    let breaking: FailingUpstream;
    let stalling: FailingUpstream;
    /** What the flaky upstream answers next: a status to fail with, or undefined to answer. */
    const failures: number[] = [];
    let breakerStatus: number | undefined = 500;

    beforeAll(async () => {
      backup = await startLocalUpstream({ answer: () => 'from backup' });
      flaky = await startLocalUpstream({ answer: () => 'from flaky', failWith: () => failures.shift() });
      breaker = await startLocalUpstream({ answer: () => 'from breaker', failWith: () => breakerStatus });
      silent = await startSilentServer();
      breaking = await startBreakingStream();
      stalling = await startStallingServer();
      const fallback = { fallbacks: [{ upstream: 'backup', model: 'backup-model' }], backoffMs: 10 };
      const route = (upstream: string, failover: Record<string, unknown> = fallback) => ({
        variants: [{ name: 'main', upstream, model: `${upstream}-model`, weight: 1 }],
        failover,
      });
      t = await startTestServer(await target.create(), {
        config: { logFlushIntervalMs: 60_000 },
        gateway: {
          upstreams: {
            backup: { baseURL: backup.url },
            // Tests fail it many times in a row; its circuit must stay closed for the retry test.
            flaky: { baseURL: flaky.url, circuit: { failures: 50 } },
            breaker: { baseURL: breaker.url, circuit: { failures: 2, openMs: 400 } },
            refused: { baseURL: await refusedURL() },
            alsoRefused: { baseURL: await refusedURL() },
            silent: { baseURL: silent.url, firstTokenTimeoutMs: 300 },
            silentHead: { baseURL: silent.url, timeoutMs: 300 },
            breaking: { baseURL: breaking.url },
            stalling: { baseURL: stalling.url, totalTimeoutMs: 500 },
          },
          routes: {
            'refused-bot': route('refused'),
            'silent-bot': route('silent'),
            'silent-head-bot': route('silentHead'),
            'flaky-bot': route('flaky'),
            'retry-bot': route('flaky', { ...fallback, retries: 2 }),
            'breaker-bot': route('breaker'),
            'breaking-bot': route('breaking'),
            'stalling-bot': route('stalling'),
            'dead-bot': route('refused', { fallbacks: [{ upstream: 'alsoRefused', model: 'm2' }] }),
          },
        },
      });
      client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: t.secretKey, maxRetries: 0 });
    });
    afterAll(async () => {
      await t?.close();
      for (const u of [backup, flaky, breaker, silent, breaking, stalling]) await u?.close();
      await target.cleanup();
    });

    const stored = async (id: string | null) =>
      (await t.logged(id)) as {
        status: string;
        model: string;
        error?: string;
        metadata: Record<string, unknown>;
      };

    async function ask(model: string) {
      const { data, response } = await client.chat.completions
        .create({ model, messages: [{ role: 'user', content: 'hello' }] })
        .withResponse();
      return {
        text: data.choices[0]?.message.content,
        log: await stored(response.headers.get('x-ratchet-interaction-id')),
      };
    }

    it('falls back when the upstream refuses the connection, and logs both attempts', async () => {
      const { text, log } = await ask('refused-bot');
      expect(text).toBe('from backup');
      expect(log.status).toBe('ok');
      expect(log.model).toBe('backup-model');
      expect(log.metadata.upstream).toBe('backup');
      expect(log.metadata.attempts).toEqual([
        {
          upstream: 'refused',
          model: 'refused-model',
          error: expect.stringMatching(/ECONNREFUSED/),
          durationMs: expect.any(Number),
        },
        { upstream: 'backup', model: 'backup-model', status: 200, durationMs: expect.any(Number) },
      ]);
    });

    it('falls back when the upstream sends nothing before its first-token timeout', async () => {
      const started = Date.now();
      const before = silent.hits();
      const { text, log } = await ask('silent-bot');
      expect(text).toBe('from backup');
      expect(silent.hits()).toBe(before + 1);
      // The 300 ms first-token timeout, not the 120 s total one, ended the first try.
      expect(Date.now() - started).toBeLessThan(5000);
      const [first, second] = log.metadata.attempts as Record<string, unknown>[];
      expect(first).toMatchObject({ upstream: 'silent', error: 'timeout: no first byte in 300 ms' });
      expect(first!.durationMs).toBeGreaterThanOrEqual(290);
      expect(second).toMatchObject({ upstream: 'backup', status: 200 });

      // Without a first-token timeout, the head timeout (timeoutMs, undici's) ends the try.
      const head = await ask('silent-head-bot');
      expect(head.text).toBe('from backup');
      expect(head.log.metadata.attempts).toMatchObject([
        { upstream: 'silentHead', error: expect.stringMatching(/^timeout: UND_ERR_HEADERS_TIMEOUT/) },
        { upstream: 'backup', status: 200 },
      ]);
    });

    it('stops trying when the client goes away before any answer: logged aborted, no fallback called', async () => {
      const before = backup.requests.length;
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const pending = client.chat.completions
        .create(
          { model: 'silent-bot', messages: [{ role: 'user', content: 'hello' }] },
          { signal: controller.signal },
        )
        .catch((e) => e);
      expect(await pending).toBeInstanceOf(Error);
      // Past the silent upstream's 300 ms first-token timeout: a fallback would have been called by now.
      await sleep(500);
      expect(backup.requests.length).toBe(before);
      await t.server.logWriter.flush();
      const listed = await t.call('/api/v1/interactions?route=silent-bot');
      const last = listed.body.items[0];
      expect(last.status).toBe('aborted');
      expect((await stored(last.id)).metadata.attempts).toEqual([
        {
          upstream: 'silent',
          model: 'silent-model',
          error: 'the client closed the connection',
          durationMs: expect.any(Number),
        },
      ]);
    });

    it('falls back when an answer is not complete by the total timeout, though its first bytes came', async () => {
      const { text, log } = await ask('stalling-bot');
      expect(text).toBe('from backup');
      const [first, second] = log.metadata.attempts as Record<string, unknown>[];
      expect(first).toMatchObject({
        upstream: 'stalling',
        status: 200,
        error: 'timeout: no complete answer in 500 ms',
      });
      expect(first!.durationMs).toBeGreaterThanOrEqual(490);
      expect(second).toMatchObject({ upstream: 'backup', status: 200 });
    });

    it('falls back on 429 and on 5xx, streamed and not, before the client gets a byte', async () => {
      for (const status of [429, 500, 503]) {
        failures.push(status);
        const { text, log } = await ask('flaky-bot');
        expect(text, String(status)).toBe('from backup');
        expect(log.metadata.attempts, String(status)).toMatchObject([
          { upstream: 'flaky', status, error: expect.stringContaining(`upstream refused with ${status}`) },
          { upstream: 'backup', status: 200 },
        ]);
      }
      failures.push(502);
      const stream = await client.chat.completions
        .create({ model: 'flaky-bot', messages: [{ role: 'user', content: 'hello' }], stream: true })
        .withResponse();
      let text = '';
      for await (const chunk of stream.data) text += chunk.choices[0]?.delta.content ?? '';
      expect(text).toBe('from backup');
      const log = await stored(stream.response.headers.get('x-ratchet-interaction-id'));
      expect(log).toMatchObject({
        status: 'ok',
        model: 'backup-model',
        metadata: { streamed: true, upstream: 'backup' },
      });
      expect(log.metadata.attempts).toMatchObject([
        { upstream: 'flaky', status: 502 },
        { upstream: 'backup', status: 200 },
      ]);
    });

    it('retries the same upstream first when the route allows retries', async () => {
      failures.push(503, 429);
      const { text, log } = await ask('retry-bot');
      expect(text).toBe('from flaky');
      expect(log.metadata.attempts).toMatchObject([
        { upstream: 'flaky', status: 503 },
        { upstream: 'flaky', status: 429 },
        { upstream: 'flaky', status: 200 },
      ]);
    });

    it('does not fall back once a stream has sent its first byte: the break is logged as an error', async () => {
      const before = backup.requests.length;
      const stream = await client.chat.completions
        .create({ model: 'breaking-bot', messages: [{ role: 'user', content: 'hello' }], stream: true })
        .withResponse();
      let text = '';
      const err = await (async () => {
        for await (const chunk of stream.data) text += chunk.choices[0]?.delta.content ?? '';
      })().catch((e) => e);
      expect(err).toBeInstanceOf(Error);
      expect(text).toBe('Half an ');
      expect(backup.requests.length).toBe(before);
      const log = await stored(stream.response.headers.get('x-ratchet-interaction-id'));
      expect(log.status).toBe('error');
      expect(log.metadata.attempts).toMatchObject([{ upstream: 'breaking', status: 200 }]);
    });

    it('answers 502 naming every attempt when no upstream answers, and logs them', async () => {
      const res = await t.call('/v1/chat/completions', {
        body: { model: 'dead-bot', messages: [{ role: 'user', content: 'hello' }] },
      });
      expect(res.status).toBe(502);
      expect(res.body.error.code).toBe('upstream_error');
      expect(res.body.error.message).toMatch(/refused: .*ECONNREFUSED.*alsoRefused: .*ECONNREFUSED/);
      const log = await stored(res.headers.get('x-ratchet-interaction-id'));
      expect(log.status).toBe('error');
      expect(log.metadata.attempts).toMatchObject([{ upstream: 'refused' }, { upstream: 'alsoRefused' }]);
    });

    it('opens the circuit after its failures, skips the upstream, probes it half-open, and closes on success', async () => {
      const gateway = t.server.gateway!;
      breakerStatus = 500;
      for (let i = 0; i < 2; i++) expect((await ask('breaker-bot')).text).toBe('from backup');
      expect(gateway.circuitState('breaker')).toBe('open');
      const hits = breaker.requests.length;
      const skipped = await ask('breaker-bot');
      expect(skipped.text).toBe('from backup');
      expect(breaker.requests.length).toBe(hits);
      expect(skipped.log.metadata.attempts).toMatchObject([
        { upstream: 'breaker', error: 'circuit open', durationMs: 0 },
        { upstream: 'backup', status: 200 },
      ]);

      // After openMs one probe goes through; it fails, so the circuit opens again.
      await sleep(450);
      expect(gateway.circuitState('breaker')).toBe('half-open');
      expect((await ask('breaker-bot')).log.metadata.attempts).toMatchObject([
        { upstream: 'breaker', status: 500 },
        { upstream: 'backup' },
      ]);
      expect(breaker.requests.length).toBe(hits + 1);
      expect(gateway.circuitState('breaker')).toBe('open');

      // The upstream recovers: the next probe succeeds and closes the circuit.
      breakerStatus = undefined;
      await sleep(450);
      const probe = await ask('breaker-bot');
      expect(probe.text).toBe('from breaker');
      expect(gateway.circuitState('breaker')).toBe('closed');
      expect((await ask('breaker-bot')).text).toBe('from breaker');
      expect(breaker.requests.length).toBe(hits + 3);
    });

    it('counts every failed or skipped try by upstream and reason in /metrics', async () => {
      const text = (await t.call('/metrics', { key: null })).body as string;
      const value = (labels: string) => {
        const line = text
          .split('\n')
          .find((l) => l.startsWith(`ratchet_gateway_upstream_failures_total{${labels}} `));
        return line ? Number(line.split(' ')[1]) : 0;
      };
      // The tests above, in order: refused-bot and dead-bot, silent-bot, flaky-bot and retry-bot, breaker-bot.
      expect(value('upstream="refused",reason="connection"')).toBe(2);
      expect(value('upstream="alsoRefused",reason="connection"')).toBe(1);
      expect(value('upstream="silent",reason="timeout"')).toBe(1);
      expect(value('upstream="silentHead",reason="timeout"')).toBe(1);
      expect(value('upstream="stalling",reason="timeout"')).toBe(1);
      expect(value('upstream="flaky",reason="429"')).toBe(2);
      expect(value('upstream="flaky",reason="5xx"')).toBe(4);
      expect(value('upstream="breaker",reason="5xx"')).toBe(3);
      expect(value('upstream="breaker",reason="circuit_open"')).toBe(1);
    });
  });
}
