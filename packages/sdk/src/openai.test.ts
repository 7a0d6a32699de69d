import {
  type LocalUpstream,
  startLocalUpstream,
  startTestServer,
  type TestServer,
} from '@ratchet/server/testing';
import { testDatabases } from '@ratchet/store/testing';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Ratchet } from './client.js';
import type { RatchetSdkError } from './errors.js';
import {
  feedbackTokenOf,
  interactionIdOf,
  ratchetFeedbackToken,
  ratchetInteractionId,
  wrapOpenAI,
} from './openai.js';

for (const target of testDatabases()) {
  describe(`wrapOpenAI and the gateway with the official openai client, on ${target.name}`, () => {
    let upstream: LocalUpstream;
    let t: TestServer;
    let ratchet: Ratchet;
    let errors: RatchetSdkError[] = [];

    /** The official client, wrapped, calling the local upstream directly (as an app calling a provider). */
    const wrappedClient = () =>
      wrapOpenAI(new OpenAI({ baseURL: upstream.url, apiKey: 'sk-local', maxRetries: 0 }), ratchet, {
        route: 'support-bot',
        tags: ['wrapped'],
      });

    beforeAll(async () => {
      upstream = await startLocalUpstream({ failWith: (b) => (b.model === 'overloaded' ? 429 : undefined) });
      t = await startTestServer(await target.create(), {
        gateway: { upstreams: { local: { baseURL: upstream.url } }, defaultUpstream: 'local' },
      });
    });
    afterEach(async () => {
      await ratchet?.shutdown().catch(() => undefined);
      errors = [];
    });
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await target.cleanup();
    });
    const newRatchet = (apiKey = t.secretKey) => {
      ratchet = new Ratchet({
        baseUrl: t.url,
        apiKey,
        flushIntervalMs: 60_000,
        flushOnExit: false,
        onError: (e) => errors.push(e),
      });
      return ratchet;
    };

    it('logs a non-streaming call with messages, output, usage, user and parameters', async () => {
      newRatchet();
      const openai = wrappedClient();
      const completion = await openai.chat.completions.create({
        model: 'tiny-chat',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Where is my parcel?' },
        ],
        temperature: 0.2,
        user: 'alice',
      });
      expect(completion.choices[0]?.message.content).toBe('You said: Where is my parcel?');
      const id = ratchetInteractionId(completion)!;
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      // The attached id does not change what the completion serializes to.
      expect(JSON.stringify(completion)).not.toContain('_ratchet');

      await ratchet.flush();
      const got = await t.call(`/api/v1/interactions/${id}`);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({
        route: 'support-bot',
        model: 'tiny-chat',
        source: 'sdk',
        status: 'ok',
        userId: 'alice',
        tags: ['wrapped'],
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Where is my parcel?' },
        ],
        output: { role: 'assistant', content: 'You said: Where is my parcel?' },
        parameters: { temperature: 0.2 },
        usage: { inputTokens: 4, outputTokens: 6, totalTokens: 10 },
        metadata: { finishReason: 'stop' },
      });
      expect(got.body.output).not.toHaveProperty('refusal');
      expect(got.body.latencyMs).toBeGreaterThan(0);
      expect(errors).toEqual([]);
    });

    it('keeps .withResponse() working on a wrapped call', async () => {
      newRatchet();
      const { data, response } = await wrappedClient()
        .chat.completions.create({ model: 'tiny-chat', messages: [{ role: 'user', content: 'hi' }] })
        .withResponse();
      expect(response.status).toBe(200);
      expect(data.choices[0]?.message.content).toBe('You said: hi');
      expect(ratchetInteractionId(data)).toBeDefined();
    });

    it('logs a streamed call with the assembled answer, holding early feedback until it ends', async () => {
      newRatchet();
      const stream = await wrappedClient().chat.completions.create({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: 'tell me about refunds please' }],
        stream: true,
        stream_options: { include_usage: true },
        user: 'bob',
      });
      // The id is known before the answer, so a rating can be queued while the text still arrives.
      const id = ratchetInteractionId(stream)!;
      ratchet.feedback({ kind: 'thumbs', interactionId: id, value: 'up' });
      await ratchet.flush();
      expect(ratchet.pending.feedback).toBe(1);

      let text = '';
      let chunks = 0;
      for await (const chunk of stream) {
        chunks++;
        text += chunk.choices[0]?.delta.content ?? '';
      }
      expect(text).toBe('You said: tell me about refunds please');
      expect(chunks).toBeGreaterThan(5);

      await ratchet.flush();
      const got = await t.call(`/api/v1/interactions/${id}`);
      expect(got.body).toMatchObject({
        userId: 'bob',
        output: { role: 'assistant', content: text },
        usage: { inputTokens: 5, outputTokens: 7, totalTokens: 12 },
        metadata: { streamed: true, finishReason: 'stop' },
        parameters: { stream_options: { include_usage: true } },
      });
      expect(got.body.metadata.timeToFirstChunkMs).toBeGreaterThanOrEqual(0);
      expect(got.body.feedback).toMatchObject([{ kind: 'thumbs', label: 'up', raterId: 'bob' }]);
      expect(errors).toEqual([]);
    });

    it('logs what the app read of a stream it abandoned', async () => {
      newRatchet();
      const stream = await wrappedClient().chat.completions.create({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: 'one two three four five six' }],
        stream: true,
      });
      let text = '';
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? '';
        if (text.length > 10) break;
      }
      await ratchet.flush();
      const got = await t.call(`/api/v1/interactions/${ratchetInteractionId(stream)}`);
      expect(got.body).toMatchObject({
        status: 'aborted',
        output: { content: text },
        metadata: { abandoned: true },
      });
    });

    it('keeps tee() working on a wrapped stream and logs the answer once', async () => {
      newRatchet();
      const stream = await wrappedClient().chat.completions.create({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: 'split me' }],
        stream: true,
      });
      const [left, right] = stream.tee();
      const read = async (s: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>) => {
        let text = '';
        for await (const chunk of s) text += chunk.choices[0]?.delta.content ?? '';
        return text;
      };
      expect(await Promise.all([read(left), read(right)])).toEqual([
        'You said: split me',
        'You said: split me',
      ]);
      await ratchet.flush();
      const listed = await t.call('/api/v1/interactions?model=tiny-chat&limit=1000');
      const logged = listed.body.items.filter(
        (i: { messages: { content: string }[] }) => i.messages[0]?.content === 'split me',
      );
      expect(logged).toHaveLength(1);
      expect(logged[0].output.content).toBe('You said: split me');
    });

    it('logs a failed call as an error and still throws the provider error to the app', async () => {
      newRatchet();
      const err = await wrappedClient()
        .chat.completions.create({ model: 'overloaded', messages: [{ role: 'user', content: 'x' }] })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(429);
      await ratchet.flush();
      const listed = await t.call('/api/v1/interactions?model=overloaded');
      expect(listed.body.items[0]).toMatchObject({ status: 'error', source: 'sdk' });
      expect(listed.body.items[0].error).toContain('429');
    });

    it('records x-ratchet-* request headers as context and keeps them from the provider', async () => {
      newRatchet();
      const sentHeaders: Headers[] = [];
      const openai = wrapOpenAI(
        new OpenAI({
          baseURL: upstream.url,
          apiKey: 'sk-local',
          maxRetries: 0,
          fetch: (url, init) => {
            sentHeaders.push(new Headers(init?.headers));
            return fetch(url, init);
          },
        }),
        ratchet,
        { tags: ['wrapped'] },
      );
      const completion = await openai.chat.completions.create(
        { model: 'tiny-chat', messages: [{ role: 'user', content: 'context' }] },
        {
          headers: {
            'x-ratchet-user-id': 'carol',
            'x-ratchet-session-id': 's-1',
            'x-ratchet-tags': 'vip, mobile',
            'x-ratchet-metadata': '{"plan":"pro"}',
          },
        },
      );
      await ratchet.flush();
      const got = await t.call(`/api/v1/interactions/${ratchetInteractionId(completion)}`);
      expect(got.body).toMatchObject({
        userId: 'carol',
        sessionId: 's-1',
        tags: ['wrapped', 'vip', 'mobile'],
        metadata: { plan: 'pro' },
      });
      expect(sentHeaders).toHaveLength(1);
      expect([...sentHeaders[0]!.keys()].filter((h) => h.startsWith('x-ratchet-'))).toEqual([]);
    });

    it('wrapOpenAI exposes the feedback token, and a browser with the public key rates as the end user', async () => {
      newRatchet();
      const completion = await wrappedClient().chat.completions.create({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: 'wrapped token' }],
        user: 'erin',
      });
      const interactionId = ratchetInteractionId(completion)!;
      // Still queued: asking for the token sends the interaction first.
      const feedbackToken = (await ratchetFeedbackToken(completion))!;
      expect(feedbackToken).toMatch(/^ft1\./);
      expect(await ratchet.feedbackToken(interactionId)).toBe(feedbackToken);
      const browser = new Ratchet({ baseUrl: t.url, apiKey: t.publicKey, flushOnExit: false, maxRetries: 0 });
      try {
        await expect(
          browser.sendFeedback({ kind: 'thumbs', interactionId, value: 'up' }),
        ).rejects.toMatchObject({
          status: 401,
          path: 'items.0.feedbackToken',
        });
        expect(
          await browser.sendFeedback({ kind: 'thumbs', interactionId, value: 'up', feedbackToken }),
        ).toMatchObject({ created: true });
      } finally {
        await browser.shutdown();
      }
      const got = await t.call(`/api/v1/interactions/${interactionId}`);
      expect(got.body.feedback).toMatchObject([{ kind: 'thumbs', raterId: 'erin', source: 'user' }]);
      expect(errors).toEqual([]);
    });

    it('gateway: the plain client gets the interaction id and feedback token, and the public key rates it', async () => {
      const openai = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: t.secretKey, maxRetries: 0 });
      const browser = newRatchet(t.publicKey);

      const plain = await openai.chat.completions
        .create({ model: 'tiny-chat', messages: [{ role: 'user', content: 'via gateway' }], user: 'dave' })
        .withResponse();
      const plainId = interactionIdOf(plain)!;
      expect(plainId).toMatch(/^[0-9a-f-]{36}$/);
      expect(interactionIdOf(plain.response)).toBe(plainId);
      const plainToken = feedbackTokenOf(plain)!;
      expect(feedbackTokenOf(plain.response)).toBe(plainToken);
      // Sent right away: the server finds the interaction even if the gateway has not written it yet.
      expect(
        await browser.sendFeedback({
          kind: 'stars',
          interactionId: plainId,
          value: 5,
          feedbackToken: plainToken,
        }),
      ).toMatchObject({
        created: true,
      });

      const { data: stream, response } = await openai.chat.completions
        .create({
          model: 'tiny-chat',
          messages: [{ role: 'user', content: 'stream via gateway' }],
          stream: true,
        })
        .withResponse();
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      const streamId = interactionIdOf(response)!;
      browser.feedback({
        kind: 'comment',
        interactionId: streamId,
        text: 'clear answer',
        feedbackToken: feedbackTokenOf(response)!,
      });
      await browser.flush();

      await t.server.logWriter.flush();
      const first = await t.call(`/api/v1/interactions/${plainId}`);
      expect(first.body).toMatchObject({
        source: 'gateway',
        userId: 'dave',
        output: { content: 'You said: via gateway' },
        feedback: [{ kind: 'stars', value: 5, raterId: 'dave', source: 'user' }],
      });
      const second = await t.call(`/api/v1/interactions/${streamId}`);
      expect(second.body).toMatchObject({
        output: { content: text },
        // No end user on this call: the rater is this interaction's own anonymous one.
        feedback: [{ kind: 'comment', text: 'clear answer', raterId: `anonymous:${streamId}` }],
      });
      expect(errors).toEqual([]);
    });
  });
}
