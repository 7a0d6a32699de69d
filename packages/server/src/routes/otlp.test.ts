import { SpanStatusCode } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';

describe('OTLP/HTTP JSON ingest from the official OpenTelemetry exporter', () => {
  const db = sqliteTestDatabase();
  let t: TestServer;
  let provider: BasicTracerProvider;

  beforeAll(async () => {
    t = await startTestServer(await db.create());
    const exporter = new OTLPTraceExporter({
      url: `${t.url}/v1/traces`,
      headers: { authorization: `Bearer ${t.secretKey}` },
    });
    provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'support-app' }),
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
  });
  afterAll(async () => {
    await provider?.shutdown();
    await t?.close();
    await db.cleanup();
  });

  it('turns GenAI spans of current and older conventions into interactions and ignores other spans', async () => {
    const tracer = provider.getTracer('test');
    const current = tracer.startSpan('chat tiny-support', {
      startTime: new Date('2026-11-01T10:00:00.000Z'),
      attributes: {
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'openai',
        'gen_ai.request.model': 'tiny-support',
        'gen_ai.request.temperature': 0.2,
        'gen_ai.usage.input_tokens': 11,
        'gen_ai.usage.output_tokens': 7,
        'gen_ai.conversation.id': 'conv-1',
        'enduser.id': 'dana',
        'gen_ai.input.messages': JSON.stringify([
          { role: 'user', parts: [{ type: 'text', content: 'Is my order late?' }] },
        ]),
        'gen_ai.output.messages': JSON.stringify([
          {
            role: 'assistant',
            parts: [{ type: 'text', content: 'It arrives today.' }],
            finish_reason: 'stop',
          },
        ]),
        'ratchet.route': 'support-bot',
        'ratchet.tags': ['otel', 'beta'],
      },
    });
    current.end(new Date('2026-11-01T10:00:00.250Z'));

    const older = tracer.startSpan('chat legacy', {
      attributes: { 'gen_ai.system': 'openai', 'gen_ai.request.model': 'legacy-model' },
    });
    older.addEvent('gen_ai.user.message', { content: 'Hello?' });
    older.addEvent('gen_ai.choice', { index: 0, content: 'Hi there.' });
    older.setStatus({ code: SpanStatusCode.ERROR, message: 'cut off' });
    older.end();

    const indexed = tracer.startSpan('openai.chat', {
      attributes: {
        'gen_ai.request.model': 'm3',
        'gen_ai.prompt.0.role': 'user',
        'gen_ai.prompt.0.content': 'q',
        'gen_ai.completion.0.content': 'a',
      },
    });
    indexed.end();

    tracer.startSpan('GET /orders', { attributes: { 'http.method': 'GET' } }).end();
    await provider.forceFlush();

    const list = await t.call('/api/v1/interactions?source=otlp&limit=10');
    expect(list.status).toBe(200);
    expect(list.body.items).toHaveLength(3);
    const byModel = Object.fromEntries(list.body.items.map((i: { model: string }) => [i.model, i]));
    expect(byModel['tiny-support']).toMatchObject({
      route: 'support-bot',
      userId: 'dana',
      sessionId: 'conv-1',
      messages: [{ role: 'user', content: 'Is my order late?' }],
      output: { role: 'assistant', content: 'It arrives today.' },
      usage: { inputTokens: 11, outputTokens: 7 },
      parameters: { temperature: 0.2 },
      latencyMs: 250,
      tags: ['otel', 'beta'],
      metadata: { provider: 'openai', service: 'support-app' },
      createdAt: Date.parse('2026-11-01T10:00:00.000Z'),
    });
    expect(byModel['legacy-model']).toMatchObject({
      status: 'error',
      error: 'cut off',
      messages: [{ role: 'user', content: 'Hello?' }],
      output: { content: 'Hi there.' },
    });
    expect(byModel.m3).toMatchObject({
      messages: [{ role: 'user', content: 'q' }],
      output: { content: 'a' },
    });
    // Span ids make the ingest idempotent: the exporter retrying a batch adds nothing.
    const one = byModel.m3;
    const again = await t.call('/v1/traces', {
      body: {
        resourceSpans: [
          {
            scopeSpans: [
              {
                spans: [
                  {
                    traceId: one.traceId,
                    spanId: one.spanId,
                    attributes: [
                      { key: 'gen_ai.request.model', value: { stringValue: 'm3' } },
                      { key: 'gen_ai.prompt.0.content', value: { stringValue: 'q' } },
                    ],
                  },
                ],
              },
            ],
          },
        ],
      },
    });
    expect(again.status).toBe(200);
    expect((await t.call('/api/v1/interactions?source=otlp&limit=10')).body.items).toHaveLength(3);
  });

  it('reports GenAI spans it cannot use as OTLP partial success, keeping the good ones', async () => {
    const res = await t.call('/v1/traces', {
      body: {
        resourceSpans: [
          {
            scopeSpans: [
              {
                spans: [
                  {
                    traceId: 'aa',
                    spanId: 'bb',
                    attributes: [{ key: 'gen_ai.operation.name', value: { stringValue: 'chat' } }],
                  },
                  {
                    traceId: 'aa',
                    spanId: 'cc',
                    attributes: [
                      { key: 'gen_ai.request.model', value: { stringValue: 'ok-model' } },
                      { key: 'gen_ai.prompt.0.content', value: { stringValue: 'hi' } },
                    ],
                  },
                ],
              },
            ],
          },
        ],
      },
    });
    expect(res.status).toBe(200);
    expect(res.body.partialSuccess).toMatchObject({ rejectedSpans: 1 });
    expect(res.body.partialSuccess.errorMessage).toContain('model');
    expect((await t.call('/api/v1/interactions?model=ok-model')).body.items).toHaveLength(1);
  });

  it('refuses protobuf with 415, asking for JSON', async () => {
    const res = await t.call('/v1/traces', {
      body: 'x',
      headers: { 'content-type': 'application/x-protobuf' },
    });
    expect(res).toMatchObject({ status: 415, body: { error: { code: 'unsupported_media_type' } } });
  });
});
