import { testDatabases } from '@ratchet/store/testing';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ProviderDouble,
  sendJson,
  sendSse,
  startProviderDouble,
} from '../../testing/provider-double.js';
import { ANSWER, anthropicStream, doubles, type Kind, kinds } from '../../testing/provider-fixtures.js';
import { startTestServer, type TestServer } from '../../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../../testing/upstream.js';
import { parseGatewayConfig } from '../config.js';
import { fromAnthropicMessage } from './anthropic/index.js';
import { fromGeminiResponse } from './gemini/index.js';

const weatherTool = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

const question: OpenAI.Chat.ChatCompletionMessageParam[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'What is weather in Paris?' },
];

describe("finish reasons, every one the providers' SDK types list", () => {
  const finish = (r: Record<string, unknown>) =>
    (r.choices as { finish_reason: unknown }[])[0]?.finish_reason;

  it('maps an answer cut by the context window or a filter as OpenAI names it, and an unknown one as stop', () => {
    const anthropic = (stop_reason: string) =>
      finish(fromAnthropicMessage({ id: 'm', content: [{ type: 'text', text: 'x' }], stop_reason }));
    expect(anthropic('model_context_window_exceeded')).toBe('length');
    expect(anthropic('refusal')).toBe('content_filter');
    expect(anthropic('a_reason_from_the_future')).toBe('stop');
    expect(anthropic('toString')).toBe('stop');
    const gemini = (finishReason: string) =>
      finish(
        fromGeminiResponse({ candidates: [{ content: { parts: [{ text: 'x' }] }, finishReason }] }, 'g'),
      );
    expect(gemini('IMAGE_SAFETY')).toBe('content_filter');
    expect(gemini('MAX_TOKENS')).toBe('length');
    expect(gemini('A_REASON_FROM_THE_FUTURE')).toBe('stop');
  });
});

describe('provider config', () => {
  it('refuses an unknown provider, naming the field', () => {
    expect(() =>
      parseGatewayConfig({ upstreams: { x: { provider: 'bedrock', baseURL: 'http://127.0.0.1:1/v1' } } }),
    ).toThrow(/upstreams\.x\.provider/);
  });
});

for (const target of testDatabases()) {
  describe(`providers behind one interface on ${target.name}, through test doubles of Anthropic, Azure OpenAI and Gemini`, () => {
    let t: TestServer;
    let client: OpenAI;
    let local: LocalUpstream;
    const double = {} as Record<Kind, ProviderDouble>;

    beforeAll(async () => {
      process.env.TEST_PROVIDER_KEY = 'sk-test-provider';
      for (const kind of kinds) {
        double[kind] = await startProviderDouble();
        double[kind].answer(doubles[kind].answer);
      }
      local = await startLocalUpstream({ answer: () => ANSWER });
      t = await startTestServer(await target.create(), {
        config: { logFlushIntervalMs: 60_000 },
        gateway: {
          upstreams: {
            local: { baseURL: local.url },
            anthropic: {
              provider: 'anthropic',
              baseURL: `${double.anthropic.url}/v1`,
              apiKeyEnv: 'TEST_PROVIDER_KEY',
            },
            azure: {
              provider: 'azure',
              baseURL: `${double.azure.url}/openai`,
              apiVersion: '2024-10-21',
              apiKeyEnv: 'TEST_PROVIDER_KEY',
            },
            gemini: {
              provider: 'gemini',
              baseURL: `${double.gemini.url}/v1beta`,
              apiKeyEnv: 'TEST_PROVIDER_KEY',
            },
          },
          routes: Object.fromEntries(
            [...kinds, 'local' as const].map((kind) => [
              `${kind}-bot`,
              {
                variants: [
                  {
                    name: 'only',
                    upstream: kind,
                    model: kind === 'local' ? 'tiny-base' : doubles[kind].model,
                    weight: 1,
                  },
                ],
              },
            ]),
          ),
        },
      });
      client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: t.secretKey, maxRetries: 0 });
    });
    afterAll(async () => {
      await t?.close();
      await local?.close();
      for (const kind of kinds) await double[kind]?.close();
      await target.cleanup();
    });

    const stored = (id: string | null) => t.logged(id);

    it('sends each provider its documented request: path, key header, system apart, tools, max tokens', async () => {
      for (const kind of kinds) {
        double[kind].answer(doubles[kind].answer);
        await client.chat.completions.create({
          model: `${kind}-bot`,
          messages: question,
          max_tokens: 50,
          temperature: 0.2,
          tools: [weatherTool],
          tool_choice: 'auto',
        });
      }
      const a = double.anthropic.received.at(-1)!;
      expect(a.path).toBe(doubles.anthropic.path);
      expect(a.headers['x-api-key']).toBe('sk-test-provider');
      expect(a.headers['anthropic-version']).toBe('2023-06-01');
      expect(a.body).toEqual({
        model: 'claude-sonnet-4-5',
        max_tokens: 50,
        system: 'Be brief.',
        messages: [{ role: 'user', content: [{ type: 'text', text: 'What is weather in Paris?' }] }],
        temperature: 0.2,
        tools: [
          {
            name: 'get_weather',
            description: 'The weather in a city',
            input_schema: weatherTool.function.parameters,
          },
        ],
        tool_choice: { type: 'auto' },
      });
      const z = double.azure.received.at(-1)!;
      expect(z.path).toBe(doubles.azure.path);
      expect(z.headers['api-key']).toBe('sk-test-provider');
      expect(z.headers.authorization).toBeUndefined();
      expect(z.body).toMatchObject({
        messages: question,
        max_tokens: 50,
        tools: [weatherTool],
        tool_choice: 'auto',
      });
      const g = double.gemini.received.at(-1)!;
      expect(g.path).toBe(doubles.gemini.path);
      expect(g.headers['x-goog-api-key']).toBe('sk-test-provider');
      expect(g.body).toEqual({
        systemInstruction: { parts: [{ text: 'Be brief.' }] },
        contents: [{ role: 'user', parts: [{ text: 'What is weather in Paris?' }] }],
        generationConfig: { temperature: 0.2, maxOutputTokens: 50 },
        tools: [
          {
            functionDeclarations: [
              {
                name: 'get_weather',
                description: 'The weather in a city',
                parametersJsonSchema: weatherTool.function.parameters,
              },
            ],
          },
        ],
        toolConfig: { functionCallingConfig: { mode: 'AUTO' } },
      });
    });

    it('logs the same interaction whichever provider answered, streamed or not', async () => {
      const logs: Record<string, unknown>[] = [];
      for (const kind of [...kinds, 'local' as const]) {
        if (kind !== 'local') double[kind].answer(doubles[kind].answer);
        const { data, response } = await client.chat.completions
          .create({ model: `${kind}-bot`, messages: question })
          .withResponse();
        expect(data.choices[0]?.message.content, kind).toBe(ANSWER);
        expect(data.usage, kind).toMatchObject({ prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
        logs.push(await stored(response.headers.get('x-ratchet-interaction-id')!));

        const streamed = await client.chat.completions
          .create({ model: `${kind}-bot`, messages: question, stream: true })
          .withResponse();
        let text = '';
        let sawUsage = false;
        for await (const chunk of streamed.data) {
          text += chunk.choices[0]?.delta.content ?? '';
          if (chunk.usage) sawUsage = true;
        }
        expect(text, kind).toBe(ANSWER);
        // The gateway asked every provider for usage; the client, which did not, gets none.
        expect(sawUsage, kind).toBe(false);
        logs.push(await stored(streamed.response.headers.get('x-ratchet-interaction-id')!));
      }
      for (const log of logs) {
        expect(log).toMatchObject({
          status: 'ok',
          messages: question,
          output: { role: 'assistant', content: ANSWER },
          usage: { inputTokens: 5, outputTokens: 3, totalTokens: 8 },
          metadata: { finishReason: 'stop' },
        });
      }
      expect(logs.map((l) => (l.metadata as Record<string, unknown>).upstream)).toEqual([
        'anthropic',
        'anthropic',
        'azure',
        'azure',
        'gemini',
        'gemini',
        'local',
        'local',
      ]);
    });

    it('returns and logs tool calls from every provider alike, streamed and not, and takes tool results back', async () => {
      for (const kind of kinds) {
        double[kind].answer(doubles[kind].answer);
        const plain = await client.chat.completions.create({
          model: `${kind}-bot`,
          messages: question,
          tools: [weatherTool],
          tool_choice: 'required',
        });
        const call = plain.choices[0]!.message
          .tool_calls![0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
        expect(call.function, kind).toEqual({ name: 'get_weather', arguments: expect.any(String) });
        expect(JSON.parse(call.function.arguments), kind).toEqual({ city: 'Paris' });
        expect(plain.choices[0]!.finish_reason, kind).toBe('tool_calls');

        const stream = await client.chat.completions
          .create({
            model: `${kind}-bot`,
            messages: question,
            tools: [weatherTool],
            tool_choice: 'required',
            stream: true,
          })
          .withResponse();
        let name = '';
        let args = '';
        let finish: string | null = null;
        for await (const chunk of stream.data) {
          const piece = chunk.choices[0]?.delta.tool_calls?.[0];
          name += piece?.function?.name ?? '';
          args += piece?.function?.arguments ?? '';
          finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        expect(name, kind).toBe('get_weather');
        expect(JSON.parse(args), kind).toEqual({ city: 'Paris' });
        expect(finish, kind).toBe('tool_calls');
        const log = await stored(stream.response.headers.get('x-ratchet-interaction-id')!);
        expect(log.output, kind).toMatchObject({
          role: 'assistant',
          tool_calls: [{ id: call.id, type: 'function', function: { name: 'get_weather' } }],
        });

        // The tool's result goes back in each provider's own form.
        await client.chat.completions.create({
          model: `${kind}-bot`,
          messages: [
            ...question,
            { role: 'assistant', content: null, tool_calls: [call] },
            { role: 'tool', tool_call_id: call.id, content: '21 degrees' },
          ],
          tools: [weatherTool],
        });
      }
      const anthropicTurns = double.anthropic.received.at(-1)!.body.messages as unknown[];
      expect(anthropicTurns.slice(1)).toEqual([
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris' } }],
        },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01', content: '21 degrees' }] },
      ]);
      const geminiTurns = double.gemini.received.at(-1)!.body.contents as unknown[];
      expect(geminiTurns.slice(1)).toEqual([
        { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] },
        {
          role: 'user',
          parts: [{ functionResponse: { name: 'get_weather', response: { content: '21 degrees' } } }],
        },
      ]);
      expect((double.azure.received.at(-1)!.body.messages as unknown[]).at(-1)).toEqual({
        role: 'tool',
        tool_call_id: 'call_az',
        content: '21 degrees',
      });
    });

    it("maps each provider's documented errors to OpenAI-shaped errors with their status, logged as failed calls", async () => {
      const cases: { kind: Kind; status: number; body: unknown; expected: number; message: RegExp }[] = [
        {
          kind: 'anthropic',
          status: 400,
          body: {
            type: 'error',
            error: { type: 'invalid_request_error', message: 'max_tokens: must be positive' },
          },
          expected: 400,
          message: /max_tokens: must be positive/,
        },
        {
          kind: 'anthropic',
          status: 529,
          body: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } },
          expected: 503,
          message: /Overloaded/,
        },
        {
          kind: 'azure',
          status: 429,
          body: {
            error: {
              code: '429',
              message: 'Requests to the ChatCompletions_Create Operation have exceeded the rate limit',
            },
          },
          expected: 429,
          message: /exceeded the rate limit/,
        },
        {
          kind: 'gemini',
          status: 400,
          body: {
            error: {
              code: 400,
              message: 'API key not valid. Please pass a valid API key.',
              status: 'INVALID_ARGUMENT',
            },
          },
          expected: 400,
          message: /API key not valid/,
        },
      ];
      for (const c of cases) {
        double[c.kind].answer((_req, res) => sendJson(res, c.status, c.body));
        const err = await client.chat.completions
          .create({ model: `${c.kind}-bot`, messages: question })
          .catch((e) => e);
        expect(err, c.kind).toBeInstanceOf(OpenAI.APIError);
        expect(err.status, c.kind).toBe(c.expected);
        expect(err.message, c.kind).toMatch(c.message);
        expect(err.error, c.kind).toMatchObject({ message: expect.stringMatching(c.message) });
        // Azure's errors are OpenAI's already and pass as they are; the others are translated, with a type.
        if (c.kind !== 'azure') expect(err.error.type, c.kind).toEqual(expect.any(String));
        const log = await stored(err.headers.get('x-ratchet-interaction-id'));
        expect(log.status, c.kind).toBe('error');
        expect(log.error, c.kind).toMatch(c.message);
      }
    });

    it('serves the Responses API from every provider without it, translated, streamed or not, logged like a chat call', async () => {
      // Azure speaks the Responses API itself: proxied natively (responses-native.test.ts).
      for (const kind of kinds.filter((k) => k !== 'azure')) {
        double[kind].answer(doubles[kind].answer);
        const { data, response } = await client.responses
          .create({ model: `${kind}-bot`, instructions: 'Be brief.', input: 'What is weather in Paris?' })
          .withResponse();
        expect(data.output_text, kind).toBe(ANSWER);
        expect(data.usage, kind).toMatchObject({ input_tokens: 5, output_tokens: 3 });
        const log = await stored(response.headers.get('x-ratchet-interaction-id')!);
        expect(log, kind).toMatchObject({
          messages: question,
          output: { role: 'assistant', content: ANSWER },
          metadata: { api: 'responses', upstream: kind },
        });

        const stream = await client.responses
          .create({ model: `${kind}-bot`, input: 'What is weather in Paris?', stream: true })
          .withResponse();
        let text = '';
        for await (const event of stream.data)
          if (event.type === 'response.output_text.delta') text += event.delta;
        expect(text, kind).toBe(ANSWER);
        const streamed = await stored(stream.response.headers.get('x-ratchet-interaction-id')!);
        expect(streamed, kind).toMatchObject({
          usage: { inputTokens: 5, outputTokens: 3 },
          metadata: { streamed: true },
        });
      }
    });

    it('logs a stream the provider breaks off with an error event as failed, with what it had streamed', async () => {
      double.anthropic.answer((_req, res) =>
        sendSse(res, [
          ...anthropicStream([], 'end_turn').slice(0, 2),
          {
            event: 'content_block_start',
            data: {
              type: 'content_block_start',
              index: 0,
              content_block: { type: 'text', text: '', citations: null },
            },
          },
          {
            event: 'content_block_delta',
            data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'It is ' } },
          },
          {
            event: 'error',
            data: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } },
          },
        ]),
      );
      const stream = await client.chat.completions
        .create({ model: 'anthropic-bot', messages: question, stream: true })
        .withResponse();
      let text = '';
      const err = await (async () => {
        for await (const chunk of stream.data) text += chunk.choices[0]?.delta.content ?? '';
      })().catch((e) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect(err.message).toMatch(/Overloaded/);
      expect(text).toBe('It is ');
      const log = await stored(stream.response.headers.get('x-ratchet-interaction-id')!);
      expect(log).toMatchObject({
        status: 'error',
        error: 'upstream error in the stream: Overloaded',
        output: { role: 'assistant', content: 'It is ' },
      });
    });

    it('refuses n > 1 for Anthropic with a 400 naming the field, before calling it', async () => {
      const before = double.anthropic.received.length;
      const err = await client.chat.completions
        .create({ model: 'anthropic-bot', messages: question, n: 2 })
        .catch((e) => e);
      expect(err.status).toBe(400);
      expect(err.error).toMatchObject({ code: 'invalid_request', path: 'n' });
      expect(double.anthropic.received.length).toBe(before);
    });

    it('asks Gemini for n candidates and logs each as a choice', async () => {
      double.gemini.answer((_req, res) =>
        sendJson(res, 200, {
          candidates: [0, 1].map((index) => ({
            content: { role: 'model', parts: [{ text: `answer ${index}` }] },
            finishReason: 'STOP',
            index,
          })),
          usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 4, totalTokenCount: 9 },
        }),
      );
      const { data, response } = await client.chat.completions
        .create({ model: 'gemini-bot', messages: question, n: 2 })
        .withResponse();
      expect(data.choices.map((c) => c.message.content)).toEqual(['answer 0', 'answer 1']);
      expect(double.gemini.received.at(-1)!.body.generationConfig).toEqual({ candidateCount: 2 });
      const log = await stored(response.headers.get('x-ratchet-interaction-id')!);
      expect(log.output).toEqual({ role: 'assistant', content: 'answer 0' });
      expect(log.metadata).toMatchObject({ choices: [{ index: 1, message: { content: 'answer 1' } }] });
    });
  });
}
