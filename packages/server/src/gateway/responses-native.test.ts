import { testDatabases } from '@ratchet/store/testing';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type OpenAIResponsesDouble,
  startOpenAIResponsesDouble,
} from '../testing/openai-responses-double.js';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

for (const target of testDatabases()) {
  describe(`POST /v1/responses proxied natively on ${target.name} (OpenAI's Responses API is a test double)`, () => {
    let openai: OpenAIResponsesDouble;
    let down: OpenAIResponsesDouble;
    let slow: OpenAIResponsesDouble;
    let azure: OpenAIResponsesDouble;
    let chatOnly: LocalUpstream;
    let t: TestServer;
    let client: OpenAI;

    beforeAll(async () => {
      openai = await startOpenAIResponsesDouble();
      down = await startOpenAIResponsesDouble({ failWith: () => 503 });
      slow = await startOpenAIResponsesDouble({ eventDelayMs: 30 });
      azure = await startOpenAIResponsesDouble();
      chatOnly = await startLocalUpstream();
      process.env.RATCHET_TEST_AZURE_KEY = 'azure-secret';
      t = await startTestServer(await target.create(), {
        config: { logFlushIntervalMs: 60_000 },
        gateway: {
          upstreams: {
            openai: { provider: 'openai', baseURL: openai.url },
            down: { provider: 'openai', baseURL: down.url },
            slow: { provider: 'openai', baseURL: slow.url },
            azure: {
              provider: 'azure',
              baseURL: `${azure.url.replace(/\/v1$/, '')}/openai`,
              apiKeyEnv: 'RATCHET_TEST_AZURE_KEY',
            },
            local: { baseURL: chatOnly.url },
          },
          routes: {
            assistant: { variants: [{ name: 'only', upstream: 'openai', model: 'gpt-test', weight: 1 }] },
            'slow-assistant': {
              variants: [{ name: 'only', upstream: 'slow', model: 'gpt-slow', weight: 1 }],
            },
            'azure-assistant': {
              variants: [{ name: 'only', upstream: 'azure', model: 'my-deployment', weight: 1 }],
            },
            'failing-assistant': {
              failover: {
                // The chat-only upstream cannot continue a Responses conversation: it is skipped.
                fallbacks: [
                  { upstream: 'local', model: 'tiny-base' },
                  { upstream: 'openai', model: 'gpt-fallback' },
                ],
              },
              variants: [{ name: 'only', upstream: 'down', model: 'gpt-down', weight: 1 }],
            },
            'chat-only': { variants: [{ name: 'only', upstream: 'local', model: 'tiny-base', weight: 1 }] },
          },
        },
      });
      client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: t.secretKey, maxRetries: 0 });
    });
    afterAll(async () => {
      await t?.close();
      await Promise.all([openai, down, slow, azure, chatOnly].map((u) => u?.close()));
      await target.cleanup();
    });

    const stored = (id: string | null) => t.logged(id);

    async function thumbsUp(response: globalThis.Response) {
      const fb = await t.call('/api/v1/feedback', {
        key: t.publicKey,
        body: {
          kind: 'thumbs',
          interactionId: response.headers.get('x-ratchet-interaction-id'),
          value: 'up',
          feedbackToken: response.headers.get('x-ratchet-feedback-token'),
        },
      });
      expect(fb.status).toBe(201);
    }

    it('passes two turns through, the second continuing the first by previous_response_id, and links them in the log', async () => {
      const first = await client.responses
        .create(
          { model: 'assistant', instructions: 'Be brief.', input: 'Where is my parcel?', user: 'alice' },
          { headers: { 'x-ratchet-session-id': 'chat-1' } },
        )
        .withResponse();
      expect(first.data.output_text).toBe('You said: Where is my parcel? (turn 1)');
      expect(openai.requests.at(-1)?.body).toMatchObject({
        model: 'gpt-test',
        instructions: 'Be brief.',
        input: 'Where is my parcel?',
      });
      const second = await client.responses
        .create({
          model: 'assistant',
          input: [{ role: 'user', content: 'And when will it come?' }],
          previous_response_id: first.data.id,
          user: 'alice',
        })
        .withResponse();
      // The upstream held the conversation: it saw two user turns.
      expect(second.data.output_text).toBe('You said: And when will it come? (turn 2)');
      expect(second.data.previous_response_id).toBe(first.data.id);
      expect(openai.requests.at(-1)?.body.previous_response_id).toBe(first.data.id);

      const firstId = first.response.headers.get('x-ratchet-interaction-id')!;
      const secondLogged = await stored(second.response.headers.get('x-ratchet-interaction-id')!);
      const firstLogged = await stored(firstId);
      expect(firstLogged).toMatchObject({
        model: 'gpt-test',
        sessionId: 'chat-1',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Where is my parcel?' },
        ],
        output: { role: 'assistant', content: 'You said: Where is my parcel? (turn 1)' },
        usage: { inputTokens: 4, outputTokens: 8, totalTokens: 12 },
        metadata: {
          api: 'responses',
          native: true,
          streamed: false,
          responses: { id: first.data.id, conversationId: firstId, store: true },
        },
      });
      expect(secondLogged).toMatchObject({
        // The turn's own input items; the upstream holds the rest of the conversation.
        messages: [{ role: 'user', content: 'And when will it come?' }],
        output: { content: 'You said: And when will it come? (turn 2)' },
        sessionId: 'chat-1',
        metadata: {
          responses: {
            id: second.data.id,
            previousResponseId: first.data.id,
            previousInteractionId: firstId,
            conversationId: firstId,
          },
        },
      });
      // The link is in the database too (it holds across restarts and servers).
      expect(await t.store.responseLinks.find(t.projectId, second.data.id)).toMatchObject({
        interactionId: secondLogged.id,
        conversationId: firstId,
        sessionId: 'chat-1',
      });
      await thumbsUp(first.response);
      await thumbsUp(second.response);
    });

    it('relays a stream event for event, across two turns, and logs each turn with its usage', async () => {
      const turns: { id: string; text: string; types: string[]; response: globalThis.Response }[] = [];
      let previous: string | undefined;
      for (const text of ['Hello there', 'Tell me more']) {
        const { data: stream, response } = await client.responses
          .create({
            model: 'assistant',
            input: text,
            stream: true,
            ...(previous ? { previous_response_id: previous } : {}),
          })
          .withResponse();
        const types: string[] = [];
        let id = '';
        let out = '';
        for await (const event of stream) {
          types.push(event.type);
          if (event.type === 'response.completed') id = event.response.id;
          if (event.type === 'response.output_text.delta') out += event.delta;
        }
        turns.push({ id, text: out, types, response });
        previous = id;
      }
      expect(turns[0]!.types).toEqual([
        'response.created',
        'response.in_progress',
        'response.output_item.added',
        'response.content_part.added',
        ...Array(6).fill('response.output_text.delta'),
        'response.output_text.done',
        'response.content_part.done',
        'response.output_item.done',
        'response.completed',
      ]);
      expect(turns[1]!.text).toBe('You said: Tell me more (turn 2)');
      const firstId = turns[0]!.response.headers.get('x-ratchet-interaction-id')!;
      const second = await stored(turns[1]!.response.headers.get('x-ratchet-interaction-id')!);
      expect(second).toMatchObject({
        status: 'ok',
        output: { content: 'You said: Tell me more (turn 2)' },
        usage: { inputTokens: 5, outputTokens: 7, totalTokens: 12 },
        metadata: {
          native: true,
          streamed: true,
          responses: { id: turns[1]!.id, previousInteractionId: firstId, conversationId: firstId },
        },
      });
      await thumbsUp(turns[0]!.response);
      await thumbsUp(turns[1]!.response);
    });

    it('logs a function call the same streamed and not', async () => {
      const tools = [{ type: 'function' as const, name: 'track', parameters: {}, strict: false }];
      const plain = await client.responses
        .create({ model: 'assistant', input: 'parcel 42', tools })
        .withResponse();
      const stream = await client.responses
        .create({ model: 'assistant', input: 'parcel 42', tools, stream: true })
        .withResponse();
      for await (const _ of stream.data) {
        // read to the end
      }
      const a = await stored(plain.response.headers.get('x-ratchet-interaction-id')!);
      const b = await stored(stream.response.headers.get('x-ratchet-interaction-id')!);
      const call = { type: 'function', function: { name: 'track', arguments: '{"query":"parcel 42"}' } };
      expect(a.output).toMatchObject({ role: 'assistant', content: null, tool_calls: [call] });
      expect(b.output).toEqual({ ...a.output, tool_calls: [{ ...call, id: expect.any(String) }] });
    });

    it('keeps no link for store: false, and passes the upstream refusing an unknown previous response', async () => {
      const unstored = await client.responses.create({
        model: 'assistant',
        input: 'forget me',
        store: false,
      });
      expect(await t.store.responseLinks.find(t.projectId, unstored.id)).toBeUndefined();
      const res = await t.call('/v1/responses', {
        body: { model: 'assistant', input: 'again', previous_response_id: unstored.id },
      });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('previous_response_not_found');
      const logged = await stored(res.headers.get('x-ratchet-interaction-id')!);
      expect(logged).toMatchObject({
        status: 'error',
        metadata: { responses: { previousResponseId: unstored.id } },
      });
    });

    it("deletes an interaction's link with it", async () => {
      const { data, response } = await client.responses
        .create({ model: 'assistant', input: 'mine' })
        .withResponse();
      const id = response.headers.get('x-ratchet-interaction-id')!;
      await stored(id);
      expect(await t.store.responseLinks.find(t.projectId, data.id)).toMatchObject({ interactionId: id });
      expect((await t.call(`/api/v1/interactions/${id}`, { method: 'DELETE' })).status).toBe(200);
      expect(await t.store.responseLinks.find(t.projectId, data.id)).toBeUndefined();
      // The next turn still reaches the upstream's conversation, but links to nothing deleted.
      const next = await client.responses
        .create({ model: 'assistant', input: 'again', previous_response_id: data.id })
        .withResponse();
      const logged = await stored(next.response.headers.get('x-ratchet-interaction-id')!);
      expect(logged.metadata.responses.previousResponseId).toBe(data.id);
      expect(logged.metadata.responses.previousInteractionId).toBeUndefined();
    });

    it('logs a native stream the client stops midway as aborted, with its partial answer', async () => {
      const controller = new AbortController();
      const { data: stream, response } = await client.responses
        .create(
          { model: 'slow-assistant', input: 'one two three four five six', stream: true },
          { signal: controller.signal },
        )
        .withResponse();
      let read = '';
      for await (const event of stream) {
        if (event.type === 'response.output_text.delta') read += event.delta;
        if (read.split(' ').length > 3) controller.abort();
      }
      const got = await stored(response.headers.get('x-ratchet-interaction-id')!);
      expect(got).toMatchObject({ status: 'aborted', metadata: { native: true, streamed: true } });
      const whole = 'You said: one two three four five six (turn 1)';
      expect(whole.startsWith(got.output.content)).toBe(true);
      expect(got.output.content.length).toBeGreaterThanOrEqual(read.length);
      expect(got.output.content.length).toBeLessThan(whole.length);
    });

    it('passes built-in tools to an upstream that speaks Responses (a translated call refuses them)', async () => {
      const res = await client.responses.create({
        model: 'assistant',
        input: 'news today',
        tools: [{ type: 'web_search' }],
      });
      expect(res.output_text).toBe('You said: news today (turn 1)');
      expect(openai.requests.at(-1)?.body.tools).toEqual([{ type: 'web_search' }]);
      const refused = await t.call('/v1/responses', {
        body: { model: 'chat-only', input: 'hi', tools: [{ type: 'web_search' }] },
      });
      expect(refused.status).toBe(400);
      expect(refused.body.error.path).toBe('tools.0.type');
    });

    it("speaks Azure's v1 Responses path with the deployment as model and the api-key header", async () => {
      const res = await client.responses.create({ model: 'azure-assistant', input: 'hi' });
      expect(res.output_text).toBe('You said: hi (turn 1)');
      expect(azure.requests.at(-1)).toMatchObject({
        path: '/openai/v1/responses',
        body: { model: 'my-deployment' },
      });
    });

    it('fails over only to upstreams that speak Responses, and records the tries', async () => {
      const { data, response } = await client.responses
        .create({ model: 'failing-assistant', input: 'are you there' })
        .withResponse();
      expect(data.output_text).toBe('You said: are you there (turn 1)');
      expect(openai.requests.at(-1)?.body.model).toBe('gpt-fallback');
      expect(chatOnly.requests.some((r) => r.model === 'tiny-base' && 'input' in r)).toBe(false);
      const got = await stored(response.headers.get('x-ratchet-interaction-id')!);
      expect(got.metadata.attempts).toMatchObject([
        { upstream: 'down', model: 'gpt-down', status: 503 },
        { upstream: 'openai', model: 'gpt-fallback', status: 200 },
      ]);
    });

    it('still translates for an upstream that does not speak Responses, and refuses previous_response_id there', async () => {
      const res = await client.responses.create({ model: 'chat-only', input: 'hi' });
      expect(res.output_text).toBe('You said: hi');
      expect(chatOnly.requests.at(-1)).toMatchObject({ messages: [{ role: 'user', content: 'hi' }] });
      const refused = await t.call('/v1/responses', {
        body: { model: 'chat-only', input: 'hi', previous_response_id: res.id },
      });
      expect(refused.status).toBe(400);
      expect(refused.body.error.path).toBe('previous_response_id');
    });
  });
}
