import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI } from '@langchain/openai';
import {
  type LocalUpstream,
  type OpenAIResponsesDouble,
  startLocalUpstream,
  startOpenAIResponsesDouble,
} from '@ratchet/server/testing';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { generateText, streamText } from 'ai';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exited, freePort, startServeProcess } from './test-utils/process.js';

const INTERACTION_HEADER = 'x-ratchet-interaction-id';

/** The parts of a stored interaction (GET /api/v1/interactions/:id) these tests read. */
interface Logged {
  status: string;
  output: { content: string; tool_calls?: unknown[] };
  messages: { role: string; content: unknown }[];
  metadata: {
    api?: string;
    streamed?: boolean;
    choices?: unknown[];
    native?: boolean;
    responses?: { id?: string; previousInteractionId?: string; conversationId?: string };
  };
}

/**
 * The clients apps use, unmodified, against `ratchet serve` (the CLI in its own process, as a
 * user runs it): the official openai npm client, the Vercel AI SDK (its default provider call,
 * which speaks the Responses API, and `.chat`) and LangChain JS. Each call's answer is the
 * upstream's, the call is logged as an interaction under the id the client was handed, and
 * feedback on that id is accepted. The upstream is a real local HTTP server (no model runs here).
 */
for (const target of testDatabases()) {
  describe(`unmodified clients through ratchet serve on ${target.name}`, () => {
    let upstream: LocalUpstream;
    let slow: LocalUpstream;
    let responsesApi: OpenAIResponsesDouble;
    let server: ChildProcess;
    let url: string;
    let key: string;
    let openai: OpenAI;

    beforeAll(async () => {
      upstream = await startLocalUpstream({ models: ['tiny-base', 'text-embed-small'] });
      // A slow upstream for the stream a client stops midway.
      slow = await startLocalUpstream({
        chunkDelayMs: 40,
        answer: () => 'one two three four five six seven eight nine ten',
      });
      // OpenAI itself cannot be reached from here: its Responses API is a test double.
      responsesApi = await startOpenAIResponsesDouble();
      const gatewayFile = join(mkdtempSync(join(tmpdir(), 'ratchet-clients-')), 'gateway.json');
      const only = (upstreamName: string, model: string) => ({
        variants: [{ name: 'only', upstream: upstreamName, model, weight: 1 }],
      });
      writeFileSync(
        gatewayFile,
        JSON.stringify({
          upstreams: {
            local: { baseURL: upstream.url },
            slow: { baseURL: slow.url },
            openai: { provider: 'openai', baseURL: responsesApi.url },
          },
          routes: {
            assistant: only('openai', 'gpt-test'),
            'support-bot': only('local', 'tiny-base'),
            'slow-bot': only('slow', 'tiny-slow'),
            embedder: only('local', 'text-embed-small'),
          },
          defaultUpstream: 'local',
        }),
      );
      const databaseUrl = await target.create();
      const store = await Store.open(databaseUrl);
      const project = await store.projects.create('clients');
      key = (await store.projects.createKey(project.id, 'secret')).key;
      await store.close();
      const port = await freePort();
      server = await startServeProcess({ RATCHET_DATABASE_URL: databaseUrl }, port, [
        '--gateway-config',
        gatewayFile,
      ]);
      url = `http://127.0.0.1:${port}`;
      openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 });
    }, 180_000);
    afterAll(async () => {
      server?.kill('SIGTERM');
      if (server) await exited(server);
      await upstream?.close();
      await slow?.close();
      await responsesApi?.close();
      await target.cleanup();
    });

    async function api(path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
      const res = await fetch(`${url}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    }

    /** The stored interaction once the gateway's buffered write has landed, then a thumb on it. */
    async function loggedAndRated(id: string | null | undefined): Promise<Logged> {
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      let got = await api(`/api/v1/interactions/${id}`);
      for (let i = 0; i < 200 && got.status === 404; i++) {
        await new Promise((r) => setTimeout(r, 25));
        got = await api(`/api/v1/interactions/${id}`);
      }
      expect(got.status).toBe(200);
      const feedback = await api('/api/v1/feedback', {
        kind: 'thumbs',
        interactionId: id,
        value: 'up',
        raterId: 'client-test',
      });
      expect(feedback.status).toBe(201);
      return got.body as Logged;
    }

    describe('the official openai npm client', () => {
      it('chat completions, with every choice of n=2 logged', async () => {
        const { data, response } = await openai.chat.completions
          .create({
            model: 'support-bot',
            n: 2,
            messages: [{ role: 'user', content: 'Where is my parcel?' }],
          })
          .withResponse();
        expect(data.choices.map((c) => c.message.content)).toEqual([
          'You said: Where is my parcel?',
          'You said: Where is my parcel? (choice 2)',
        ]);
        const stored = await loggedAndRated(response.headers.get(INTERACTION_HEADER));
        expect(stored.output.content).toBe('You said: Where is my parcel?');
        expect(stored.metadata.choices).toEqual([
          {
            index: 1,
            message: { role: 'assistant', content: 'You said: Where is my parcel? (choice 2)' },
            finishReason: 'stop',
          },
        ]);
      });

      it('a streamed tool call, logged as the same tool call', async () => {
        const { data: stream, response } = await openai.chat.completions
          .create({
            model: 'support-bot',
            stream: true,
            messages: [{ role: 'user', content: 'Weather in Oslo?' }],
            tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }],
          })
          .withResponse();
        let name = '';
        let args = '';
        for await (const chunk of stream) {
          const call = chunk.choices[0]?.delta.tool_calls?.[0];
          name += call?.function?.name ?? '';
          args += call?.function?.arguments ?? '';
        }
        expect(name).toBe('get_weather');
        expect(JSON.parse(args)).toEqual({ query: 'Weather in Oslo?', choice: 0 });
        const stored = await loggedAndRated(response.headers.get(INTERACTION_HEADER));
        expect(stored.output.tool_calls).toEqual([
          { id: 'call_0_0', type: 'function', function: { name: 'get_weather', arguments: args } },
        ]);
        expect(stored.metadata.streamed).toBe(true);
      });

      it('a stream the client aborts is logged aborted with what was sent, and takes feedback', async () => {
        const { data: stream, response } = await openai.chat.completions
          .create({ model: 'slow-bot', stream: true, messages: [{ role: 'user', content: 'Count' }] })
          .withResponse();
        let read = '';
        for await (const chunk of stream) {
          read += chunk.choices[0]?.delta.content ?? '';
          if (read.split(' ').length > 3) {
            stream.controller.abort(); // the "stop" button
            break;
          }
        }
        const stored = await loggedAndRated(response.headers.get(INTERACTION_HEADER));
        expect(stored.status).toBe('aborted');
        expect(stored.output.content.startsWith(read)).toBe(true);
        expect(stored.output.content.length).toBeLessThan(
          'one two three four five six seven eight nine ten'.length,
        );
      });

      it('the Responses API, streamed and not', async () => {
        const { data, response } = await openai.responses
          .create({ model: 'support-bot', instructions: 'Be brief.', input: 'Refund please' })
          .withResponse();
        expect(data.output_text).toBe('You said: Refund please');
        const stored = await loggedAndRated(response.headers.get(INTERACTION_HEADER));
        expect(stored.metadata.api).toBe('responses');

        const { data: stream, response: streamed } = await openai.responses
          .create({ model: 'support-bot', input: 'And my invoice?', stream: true })
          .withResponse();
        let text = '';
        for await (const event of stream)
          if (event.type === 'response.output_text.delta') text += event.delta;
        expect(text).toBe('You said: And my invoice?');
        const storedStream = await loggedAndRated(streamed.headers.get(INTERACTION_HEADER));
        expect(storedStream.output.content).toBe(text);
      });

      it('the Responses API proxied natively, two turns by previous_response_id, streamed and not', async () => {
        for (const stream of [false, true]) {
          const ask = async (input: string, previous?: string) => {
            const body = {
              model: 'assistant',
              input,
              ...(previous ? { previous_response_id: previous } : {}),
            };
            if (!stream) {
              const { data, response } = await openai.responses.create(body).withResponse();
              return {
                id: data.id,
                text: data.output_text,
                interaction: response.headers.get(INTERACTION_HEADER),
              };
            }
            const { data, response } = await openai.responses
              .create({ ...body, stream: true })
              .withResponse();
            let id = '';
            let text = '';
            for await (const event of data) {
              if (event.type === 'response.output_text.delta') text += event.delta;
              if (event.type === 'response.completed') id = event.response.id;
            }
            return { id, text, interaction: response.headers.get(INTERACTION_HEADER) };
          };
          const first = await ask('Where is my parcel?');
          const second = await ask('When will it come?', first.id);
          // The upstream held the conversation: the second turn is its second.
          expect(second.text).toBe('You said: When will it come? (turn 2)');
          const one = await loggedAndRated(first.interaction);
          const two = await loggedAndRated(second.interaction);
          expect(one.metadata).toMatchObject({ native: true, streamed: stream, responses: { id: first.id } });
          expect(two.messages).toEqual([{ role: 'user', content: 'When will it come?' }]);
          expect(two.output.content).toBe(second.text);
          expect(two.metadata.responses).toMatchObject({
            id: second.id,
            previousInteractionId: first.interaction,
            conversationId: first.interaction,
          });
        }
      });

      it('models and embeddings', async () => {
        const ids = [];
        for await (const model of openai.models.list()) ids.push(model.id);
        expect(ids).toEqual(expect.arrayContaining(['support-bot', 'slow-bot', 'embedder', 'tiny-base']));
        const { data, response } = await openai.embeddings
          .create({ model: 'embedder', input: ['refund policy', 'parcel'] })
          .withResponse();
        expect(data.data.map((d) => d.embedding.length)).toEqual([8, 8]);
        // Embeddings are usage, never an interaction to rate.
        expect(response.headers.get(INTERACTION_HEADER)).toBeNull();
        expect(response.headers.get('x-ratchet-usage-id')).toMatch(/^[0-9a-f-]{36}$/);
      });
    });

    describe('the Vercel AI SDK', () => {
      const provider = () => createOpenAI({ baseURL: `${url}/v1`, apiKey: key });

      it('generateText with the default provider call (the Responses API) and with .chat', async () => {
        for (const [model, api] of [
          [provider()('support-bot'), 'responses'],
          [provider().chat('support-bot'), undefined],
        ] as const) {
          const result = await generateText({ model, prompt: 'Where is my parcel?', maxRetries: 0 });
          expect(result.text).toBe('You said: Where is my parcel?');
          const stored = await loggedAndRated(result.response.headers?.[INTERACTION_HEADER]);
          expect(stored.output.content).toBe(result.text);
          expect(stored.metadata.api).toBe(api);
        }
      });

      it('streamText with the default provider call and with .chat', async () => {
        for (const model of [provider()('support-bot'), provider().chat('support-bot')]) {
          const result = streamText({ model, prompt: 'Is it raining?', maxRetries: 0 });
          let text = '';
          for await (const piece of result.textStream) text += piece;
          expect(text).toBe('You said: Is it raining?');
          const stored = await loggedAndRated((await result.response).headers?.[INTERACTION_HEADER]);
          expect(stored.output.content).toBe(text);
          expect(stored.metadata.streamed).toBe(true);
        }
      });
    });

    describe('LangChain JS (ChatOpenAI)', () => {
      /** LangChain hides the HTTP response: a fetch that keeps the headers the gateway sent. */
      function chat() {
        const ids: (string | null)[] = [];
        const model = new ChatOpenAI({
          model: 'support-bot',
          apiKey: key,
          maxRetries: 0,
          configuration: {
            baseURL: `${url}/v1`,
            fetch: async (input: string | URL | Request, init?: RequestInit) => {
              const res = await fetch(input, init);
              ids.push(res.headers.get(INTERACTION_HEADER));
              return res;
            },
          },
        });
        return { model, ids };
      }

      it('invoke', async () => {
        const { model, ids } = chat();
        const answer = await model.invoke('Where is my parcel?');
        expect(answer.content).toBe('You said: Where is my parcel?');
        expect(ids).toHaveLength(1);
        const stored = await loggedAndRated(ids[0]);
        expect(stored.output.content).toBe(answer.content);
      });

      it('stream', async () => {
        const { model, ids } = chat();
        let text = '';
        for await (const chunk of await model.stream('Is it raining?')) text += chunk.content;
        expect(text).toBe('You said: Is it raining?');
        expect(ids).toHaveLength(1);
        const stored = await loggedAndRated(ids[0]);
        expect(stored.output.content).toBe(text);
        expect(stored.metadata.streamed).toBe(true);
      });
    });
  });
}
