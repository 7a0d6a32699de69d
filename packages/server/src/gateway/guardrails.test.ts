import { testDatabases } from '@ratchet/store/testing';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';
import { parseGatewayConfig } from './config.js';

const PERSONAL = 'Mail me at jane.doe@example.com or call +1 (555) 123-4567';

describe('guardrails config', () => {
  it('refuses a check pattern the linear-time engine cannot run, naming the field', () => {
    expect(() =>
      parseGatewayConfig({
        upstreams: { a: { baseURL: 'http://127.0.0.1:1/v1' } },
        routes: {
          bot: {
            variants: [{ name: 'v', upstream: 'a', model: 'm', weight: 1 }],
            guardrails: { input: { patterns: { twice: '(a)\\1' } } },
          },
        },
      }),
    ).toThrow(/routes\.bot\.guardrails\.input\.patterns\.twice: pattern cannot run in linear time/);
    expect(() =>
      parseGatewayConfig({
        upstreams: { a: { baseURL: 'http://127.0.0.1:1/v1' } },
        routes: {
          bot: {
            variants: [{ name: 'v', upstream: 'a', model: 'm', weight: 1 }],
            guardrails: { output: { action: 'delete' } },
          },
        },
      }),
    ).toThrow(/routes\.bot\.guardrails\.output\.action/);
  });
});

for (const target of testDatabases()) {
  describe(`gateway guardrails on ${target.name}, with the official openai npm client`, () => {
    let upstream: LocalUpstream;
    let t: TestServer;
    let client: OpenAI;

    beforeAll(async () => {
      upstream = await startLocalUpstream();
      const route = (guardrails: Record<string, unknown>) => ({
        variants: [{ name: 'only', upstream: 'local', model: 'tiny-base', weight: 1 }],
        guardrails,
      });
      t = await startTestServer(await target.create(), {
        config: { logFlushIntervalMs: 60_000 },
        gateway: {
          upstreams: { local: { baseURL: upstream.url } },
          routes: {
            'masked-bot': route({ pii: {} }),
            'strict-bot': route({ input: { action: 'block' } }),
            'watch-bot': route({
              input: { action: 'flag' },
              output: { action: 'flag', patterns: { echo: 'You said' } },
            }),
            'clean-bot': route({
              output: { action: 'block', categories: [], patterns: { leak: 'internal-code-[0-9]+' } },
            }),
            'redos-bot': route({ input: { categories: [], patterns: { nested: '(a+)+$' } }, pii: {} }),
          },
        },
      });
      client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: t.secretKey, maxRetries: 0 });
    });
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await target.cleanup();
    });

    const stored = (id: string | null) => t.logged(id);

    it('masks PII in what is stored (messages, output, every choice, streamed or not) while the client gets the answer whole', async () => {
      const { data, response } = await client.chat.completions
        .create({ model: 'masked-bot', messages: [{ role: 'user', content: PERSONAL }], n: 2 })
        .withResponse();
      expect(data.choices[0]?.message.content).toBe(`You said: ${PERSONAL}`);
      const log = await stored(response.headers.get('x-ratchet-interaction-id'));
      expect(log.messages).toEqual([{ role: 'user', content: 'Mail me at [EMAIL] or call [PHONE]' }]);
      expect(log.output).toEqual({
        role: 'assistant',
        content: 'You said: Mail me at [EMAIL] or call [PHONE]',
      });
      expect(log.metadata.choices[0].message.content).toBe(
        'You said: Mail me at [EMAIL] or call [PHONE] (choice 2)',
      );
      expect(log.metadata.guardrails).toEqual({ pii: { email: 3, phone: 3 } });
      expect(JSON.stringify(log)).not.toContain('jane.doe');

      const stream = await client.chat.completions
        .create({ model: 'masked-bot', messages: [{ role: 'user', content: PERSONAL }], stream: true })
        .withResponse();
      let text = '';
      for await (const chunk of stream.data) text += chunk.choices[0]?.delta.content ?? '';
      expect(text).toBe(`You said: ${PERSONAL}`);
      const streamed = await stored(stream.response.headers.get('x-ratchet-interaction-id'));
      expect(streamed.output.content).toBe('You said: Mail me at [EMAIL] or call [PHONE]');
      expect(JSON.stringify(streamed)).not.toContain('jane.doe');
    });

    it('blocks an input the check refuses with a 400 naming messages, before the upstream, and logs why', async () => {
      const before = upstream.requests.length;
      const res = await t.call('/v1/chat/completions', {
        body: { model: 'strict-bot', messages: [{ role: 'user', content: 'how to make a bomb at home' }] },
      });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', path: 'messages' });
      expect(res.body.error.message).toMatch(/input guardrail \(weapons\)/);
      expect(upstream.requests.length).toBe(before);
      const log = await stored(res.headers.get('x-ratchet-interaction-id'));
      expect(log.status).toBe('error');
      expect(log.metadata.guardrails).toEqual({ input: { action: 'blocked', matched: ['weapons'] } });

      const fine = await client.chat.completions.create({
        model: 'strict-bot',
        messages: [{ role: 'user', content: 'how to make a cake at home' }],
      });
      expect(fine.choices[0]?.message.content).toBe('You said: how to make a cake at home');
    });

    it('flags inputs and outputs without blocking, streamed or not, and records what matched (never the text)', async () => {
      const { response } = await client.chat.completions
        .create({ model: 'watch-bot', messages: [{ role: 'user', content: 'how to make a bomb at home' }] })
        .withResponse();
      const log = await stored(response.headers.get('x-ratchet-interaction-id'));
      expect(log.status).toBe('ok');
      expect(log.metadata.guardrails).toEqual({
        input: { action: 'flagged', matched: ['weapons'] },
        output: { action: 'flagged', matched: ['echo', 'weapons'] },
      });

      const stream = await client.chat.completions
        .create({ model: 'watch-bot', messages: [{ role: 'user', content: 'hello' }], stream: true })
        .withResponse();
      for await (const _ of stream.data) {
        // read to the end
      }
      const streamed = await stored(stream.response.headers.get('x-ratchet-interaction-id'));
      expect(streamed.metadata.guardrails).toEqual({ output: { action: 'flagged', matched: ['echo'] } });
    });

    it('withholds a blocked output as OpenAI does (empty, finish_reason content_filter), and logs what the client got', async () => {
      const { data, response } = await client.chat.completions
        .create({ model: 'clean-bot', messages: [{ role: 'user', content: 'repeat internal-code-42' }] })
        .withResponse();
      expect(data.choices[0]).toMatchObject({ message: { content: '' }, finish_reason: 'content_filter' });
      const log = await stored(response.headers.get('x-ratchet-interaction-id'));
      expect(log.output).toEqual({ role: 'assistant', content: '' });
      expect(log.metadata).toMatchObject({
        finishReason: 'content_filter',
        guardrails: { output: { action: 'blocked', matched: ['leak'] } },
      });
      const ok = await client.chat.completions.create({
        model: 'clean-bot',
        messages: [{ role: 'user', content: 'hi' }],
      });
      expect(ok.choices[0]?.message.content).toBe('You said: hi');
    });

    it('checks and masks in linear time: a nested-quantifier pattern on a long text does not stall the call', async () => {
      // (a+)+$ on "aaa…a!" takes exponential time with a backtracking engine.
      const text = `${'a'.repeat(100_000)}!`;
      const started = performance.now();
      const { response } = await client.chat.completions
        .create({ model: 'redos-bot', messages: [{ role: 'user', content: text }] })
        .withResponse();
      const log = await stored(response.headers.get('x-ratchet-interaction-id'));
      expect(performance.now() - started).toBeLessThan(3000);
      expect(log.status).toBe('ok');
      expect(log.metadata.guardrails).toEqual({ pii: {} });
    });
  });
}
