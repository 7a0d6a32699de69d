import { testDatabases } from '@ratchet/store/testing';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

const weatherTool = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { query: { type: 'string' } } },
  },
};

for (const target of testDatabases()) {
  describe(`faithful gateway logs on ${target.name}, with the official openai npm client`, () => {
    let upstream: LocalUpstream;
    let slow: LocalUpstream;
    let t: TestServer;
    let client: OpenAI;

    beforeAll(async () => {
      upstream = await startLocalUpstream();
      // Slow enough between chunks that the client can stop reading halfway.
      slow = await startLocalUpstream({
        chunkDelayMs: 40,
        answer: () => 'one two three four five six seven eight nine ten eleven twelve',
      });
      t = await startTestServer(await target.create(), {
        config: { logFlushIntervalMs: 60_000 },
        gateway: {
          upstreams: { local: { baseURL: upstream.url }, slow: { baseURL: slow.url } },
          routes: {
            'support-bot': { variants: [{ name: 'only', upstream: 'local', model: 'tiny-base', weight: 1 }] },
            'slow-bot': { variants: [{ name: 'only', upstream: 'slow', model: 'tiny-slow', weight: 1 }] },
          },
          defaultUpstream: 'local',
        },
      });
      client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: t.secretKey, maxRetries: 0 });
    });
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await slow?.close();
      await target.cleanup();
    });

    const stored = (id: string | null) => t.logged(id);

    it('logs both choices of n: 2, not streamed: choice 0 as output, choice 1 in metadata.choices', async () => {
      const { data, response } = await client.chat.completions
        .create({ model: 'support-bot', messages: [{ role: 'user', content: 'hello there' }], n: 2 })
        .withResponse();
      expect(data.choices.map((c) => c.message.content)).toEqual([
        'You said: hello there',
        'You said: hello there (choice 2)',
      ]);
      const got = await stored(response.headers.get('x-ratchet-interaction-id')!);
      expect(got.output).toMatchObject({ role: 'assistant', content: 'You said: hello there' });
      expect(got.metadata).toMatchObject({
        streamed: false,
        finishReason: 'stop',
        choices: [
          {
            index: 1,
            message: { role: 'assistant', content: 'You said: hello there (choice 2)' },
            finishReason: 'stop',
          },
        ],
      });
    });

    it('assembles a streamed n: 2 by choice index, as the client sees each choice', async () => {
      const { data: stream, response } = await client.chat.completions
        .create({
          model: 'support-bot',
          messages: [{ role: 'user', content: 'tell me more' }],
          n: 2,
          stream: true,
        })
        .withResponse();
      const seen = ['', ''];
      for await (const chunk of stream) for (const c of chunk.choices) seen[c.index] += c.delta.content ?? '';
      expect(seen).toEqual(['You said: tell me more', 'You said: tell me more (choice 2)']);
      const got = await stored(response.headers.get('x-ratchet-interaction-id')!);
      expect(got.output).toEqual({ role: 'assistant', content: seen[0] });
      expect(got.metadata.streamed).toBe(true);
      expect(got.metadata.choices).toEqual([
        { index: 1, message: { role: 'assistant', content: seen[1] }, finishReason: 'stop' },
      ]);
    });

    it('stores tool calls of n: 2 identically streamed and not (no glued names)', async () => {
      const request = {
        model: 'support-bot',
        messages: [{ role: 'user' as const, content: 'weather in Paris?' }],
        tools: [weatherTool],
        n: 2,
      };
      const plain = await client.chat.completions.create(request).withResponse();
      const streamed = await client.chat.completions.create({ ...request, stream: true }).withResponse();
      for await (const _ of streamed.data) {
        // read to the end
      }
      const a = await stored(plain.response.headers.get('x-ratchet-interaction-id')!);
      const b = await stored(streamed.response.headers.get('x-ratchet-interaction-id')!);
      expect(a.output.tool_calls).toEqual([
        {
          id: 'call_0_0',
          type: 'function',
          function: { name: 'get_weather', arguments: '{"query":"weather in Paris?","choice":0}' },
        },
      ]);
      expect(a.output.content).toBeNull();
      expect(b.output).toEqual(a.output);
      expect(a.metadata.choices[0].message.tool_calls[0].function.name).toBe('get_weather');
      expect(b.metadata.choices).toEqual(a.metadata.choices);
      expect(a.metadata.finishReason).toBe('tool_calls');
      expect(b.metadata.finishReason).toBe('tool_calls');
    });

    it('logs usage for a stream whose client did not ask for it, and hands the client no usage chunk', async () => {
      const { data: stream, response } = await client.chat.completions
        .create({
          model: 'support-bot',
          messages: [{ role: 'user', content: 'count my tokens' }],
          stream: true,
        })
        .withResponse();
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      // The gateway asked the upstream for usage on the client's behalf...
      expect(upstream.requests.at(-1)?.stream_options).toEqual({ include_usage: true });
      // ...and took it out of the answer: no usage-only chunk, no usage on any chunk.
      expect(chunks.length).toBeGreaterThan(3);
      expect(chunks.filter((c) => c.choices.length === 0)).toEqual([]);
      expect(chunks.filter((c) => c.usage != null)).toEqual([]);
      const got = await stored(response.headers.get('x-ratchet-interaction-id')!);
      expect(got.usage).toEqual({ inputTokens: 3, outputTokens: 5, totalTokens: 8 });
      expect(got.parameters).toEqual({});
    });

    it('hands usage to a stream client that asked for it', async () => {
      const stream = await client.chat.completions.create({
        model: 'support-bot',
        messages: [{ role: 'user', content: 'count my tokens' }],
        stream: true,
        stream_options: { include_usage: true },
      });
      const usages = [];
      for await (const chunk of stream) if (chunk.usage) usages.push(chunk.usage);
      expect(usages).toEqual([{ prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 }]);
    });

    it('logs a stream the client stops midway as aborted with its partial output, and takes feedback on it', async () => {
      const controller = new AbortController();
      const { data: stream, response } = await client.chat.completions
        .create(
          { model: 'slow-bot', messages: [{ role: 'user', content: 'count' }], stream: true },
          { signal: controller.signal },
        )
        .withResponse();
      const id = response.headers.get('x-ratchet-interaction-id')!;
      let read = '';
      // The openai client ends the iteration quietly when its signal aborts.
      for await (const chunk of stream) {
        read += chunk.choices[0]?.delta.content ?? '';
        if (read.split(' ').length > 3) controller.abort(); // the "stop" button
      }
      expect(controller.signal.aborted).toBe(true);
      // The gateway notices the closed connection on its own schedule: wait for the log.
      let got: Awaited<ReturnType<TestServer['call']>> | undefined;
      for (let i = 0; i < 50 && got?.status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 20));
        await t.server.logWriter.flush();
        got = await t.call(`/api/v1/interactions/${id}`);
      }
      if (!got) throw new Error('never looked');
      expect(got.status).toBe(200);
      const full = 'one two three four five six seven eight nine ten eleven twelve';
      expect(got.body).toMatchObject({ status: 'aborted', metadata: { streamed: true } });
      const partial: string = got.body.output.content;
      expect(full.startsWith(partial)).toBe(true);
      expect(partial.length).toBeGreaterThanOrEqual(read.length);
      expect(partial.length).toBeLessThan(full.length);
      // The call counts in the request metrics although it never finished.
      const metrics = await t.call('/metrics');
      expect(metrics.body).toMatch(
        /ratchet_http_requests_total\{route="\/v1\/chat\/completions",method="POST",status="499"\} [1-9]/,
      );
      const fb = await t.call('/api/v1/feedback', {
        body: { kind: 'thumbs', interactionId: id, value: 'down', raterId: 'alice' },
      });
      expect(fb.status).toBe(201);
    });
  });
}
