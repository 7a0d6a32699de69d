import { testDatabases } from '@ratchet/store/testing';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

const weatherTool = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'The weather in a city',
  parameters: { type: 'object', properties: { query: { type: 'string' } } },
  strict: false,
};

for (const target of testDatabases()) {
  describe(`POST /v1/responses on ${target.name}, with the official openai npm client`, () => {
    let upstream: LocalUpstream;
    let slow: LocalUpstream;
    let t: TestServer;
    let client: OpenAI;

    beforeAll(async () => {
      upstream = await startLocalUpstream();
      slow = await startLocalUpstream({
        chunkDelayMs: 40,
        answer: () => 'one two three four five six seven eight',
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

    it('answers a text input with instructions, logs it as an interaction, and takes feedback from its end user', async () => {
      const { data, response } = await client.responses
        .create({
          model: 'support-bot',
          instructions: 'Be brief.',
          input: 'Where is my parcel?',
          user: 'alice',
        })
        .withResponse();
      expect(data.object).toBe('response');
      expect(data.status).toBe('completed');
      expect(data.output_text).toBe('You said: Where is my parcel?');
      expect(data.usage).toMatchObject({ input_tokens: 4, output_tokens: 6, total_tokens: 10 });
      expect(upstream.requests.at(-1)).toMatchObject({
        model: 'tiny-base',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Where is my parcel?' },
        ],
      });
      const id = response.headers.get('x-ratchet-interaction-id')!;
      const feedbackToken = response.headers.get('x-ratchet-feedback-token')!;
      const fb = await t.call('/api/v1/feedback', {
        key: t.publicKey,
        body: { kind: 'thumbs', interactionId: id, value: 'up', feedbackToken },
      });
      expect(fb.status).toBe(201);
      const got = await stored(id);
      expect(got).toMatchObject({
        route: 'support-bot',
        userId: 'alice',
        status: 'ok',
        output: { role: 'assistant', content: 'You said: Where is my parcel?' },
        usage: { inputTokens: 4, outputTokens: 6, totalTokens: 10 },
        metadata: { api: 'responses', streamed: false, responseId: data.id },
      });
    });

    it('streams the Responses events the client assembles, and logs the answer with usage', async () => {
      const { data: stream, response } = await client.responses
        .create({ model: 'support-bot', input: 'tell me about refunds', stream: true })
        .withResponse();
      const types: string[] = [];
      let text = '';
      let completed: OpenAI.Responses.Response | undefined;
      for await (const event of stream) {
        types.push(event.type);
        if (event.type === 'response.output_text.delta') text += event.delta;
        if (event.type === 'response.completed') completed = event.response;
      }
      expect(text).toBe('You said: tell me about refunds');
      expect(types[0]).toBe('response.created');
      expect(types).toContain('response.output_item.added');
      expect(types.at(-1)).toBe('response.completed');
      expect(completed?.usage).toMatchObject({ input_tokens: 4, output_tokens: 6 });
      expect(completed?.output).toMatchObject([
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text }] },
      ]);
      const got = await stored(response.headers.get('x-ratchet-interaction-id')!);
      expect(got).toMatchObject({
        output: { content: text },
        usage: { inputTokens: 4, outputTokens: 6 },
        metadata: { api: 'responses', streamed: true, finishReason: 'stop' },
      });
    });

    it('calls function tools streamed and not alike, and takes their output back as input items', async () => {
      const request = { model: 'support-bot', input: 'weather in Paris?', tools: [weatherTool] };
      const plain = await client.responses.create(request);
      const streamed = await client.responses.stream(request).finalResponse();
      const call = {
        type: 'function_call',
        name: 'get_weather',
        call_id: 'call_0_0',
        arguments: '{"query":"weather in Paris?","choice":0}',
      };
      expect(plain.output).toMatchObject([call]);
      expect(streamed.output).toMatchObject([call]);
      expect(upstream.requests.at(-1)?.tools).toEqual([
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'The weather in a city',
            parameters: weatherTool.parameters,
            strict: false,
          },
        },
      ]);

      await client.responses.create({
        model: 'support-bot',
        input: [
          { role: 'user', content: 'weather in Paris?' },
          { type: 'function_call', call_id: 'call_0_0', name: 'get_weather', arguments: '{}' },
          { type: 'function_call_output', call_id: 'call_0_0', output: 'sunny' },
        ],
        tools: [weatherTool],
        tool_choice: 'none',
      });
      expect(upstream.requests.at(-1)).toMatchObject({
        tool_choice: 'none',
        messages: [
          { role: 'user', content: 'weather in Paris?' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              { id: 'call_0_0', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
            ],
          },
          { role: 'tool', tool_call_id: 'call_0_0', content: 'sunny' },
        ],
      });
    });

    it('passes structured output (text.format json_schema) as response_format', async () => {
      const schema = { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] };
      await client.responses.create({
        model: 'support-bot',
        input: 'hi',
        text: { format: { type: 'json_schema', name: 'reply', schema, strict: true } },
        max_output_tokens: 50,
      });
      expect(upstream.requests.at(-1)).toMatchObject({
        response_format: { type: 'json_schema', json_schema: { name: 'reply', schema, strict: true } },
        max_tokens: 50,
      });
    });

    it('logs a streamed response the client stops midway as aborted, with its partial answer', async () => {
      const controller = new AbortController();
      const { data: stream, response } = await client.responses
        .create({ model: 'slow-bot', input: 'count', stream: true }, { signal: controller.signal })
        .withResponse();
      const id = response.headers.get('x-ratchet-interaction-id')!;
      let read = '';
      for await (const event of stream) {
        if (event.type === 'response.output_text.delta') read += event.delta;
        if (read.split(' ').length > 3) controller.abort();
      }
      let got: Awaited<ReturnType<TestServer['call']>> | undefined;
      for (let i = 0; i < 50 && got?.status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 20));
        await t.server.logWriter.flush();
        got = await t.call(`/api/v1/interactions/${id}`);
      }
      expect(got?.body).toMatchObject({ status: 'aborted', metadata: { api: 'responses', streamed: true } });
      const partial: string = got?.body.output.content;
      expect('one two three four five six seven eight'.startsWith(partial)).toBe(true);
      expect(partial.length).toBeGreaterThanOrEqual(read.length);
      expect(partial.length).toBeLessThan('one two three four five six seven eight'.length);
    });

    it('refuses what it cannot translate, naming the field', async () => {
      const previous = await t.call('/v1/responses', {
        body: { model: 'support-bot', input: 'hi', previous_response_id: 'resp_1' },
      });
      expect(previous.status).toBe(400);
      expect(previous.body.error.path).toBe('previous_response_id');
      const builtIn = await t.call('/v1/responses', {
        body: { model: 'support-bot', input: 'hi', tools: [{ type: 'web_search' }] },
      });
      expect(builtIn.status).toBe(400);
      expect(builtIn.body.error.path).toMatch(/^tools\.0/);
    });
  });
}
