import { Transform } from 'node:stream';
import {
  type AssembledChoice,
  ChatMessage,
  extraChoicesMetadata,
  InteractionInput,
  newId,
  type OpenAIUsage,
  type ParsedInteraction,
  parseInput,
  RatchetError,
  SseChatStream,
  storableIssue,
  Tags,
  toUsage,
} from '@ratchet/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { FeedbackTokens } from '../feedback-tokens.js';
import type { Metrics } from '../metrics.js';
import type { RouteTable } from '../routing.js';
import type { GatewayConfig, UpstreamConfig } from './config.js';
import type { InteractionLogWriter } from './log-writer.js';
import { createOpenAICompatibleProvider } from './providers/openai-compatible/index.js';
import type { Provider, ProviderFactory } from './providers/types.js';
import { assign, type DatabaseRoutes } from './router.js';

/**
 * What the gateway reads from a chat request; everything else is forwarded untouched. `model` and
 * `user` are logged (and indexed), so they have the capture API's caps: a longer value would be
 * stored on SQLite but refused by PostgreSQL's index.
 */
const ChatRequest = z.looseObject({
  model: InteractionInput.shape.model,
  messages: z.array(ChatMessage).min(1),
  stream: z.boolean().optional(),
  user: InteractionInput.shape.userId,
});

/** Fields that describe the call rather than parameterize the model; not logged as parameters. */
const notParameters = new Set(['model', 'messages', 'stream', 'user']);

type LogCall = (output: ChatMessage, extra: Partial<ParsedInteraction>) => void;

const EMPTY_ANSWER: ChatMessage = { role: 'assistant', content: '' };

function clientAskedForUsage(body: Record<string, unknown>): boolean {
  const options = body.stream_options;
  return (
    typeof options === 'object' &&
    options !== null &&
    (options as Record<string, unknown>).include_usage === true
  );
}

/**
 * A stream is always asked for its usage (`stream_options.include_usage`), so every streamed
 * call is logged with its tokens; the usage chunk is stripped from the answer when the client did
 * not ask for it (`relayStream`). Other stream options the client sent are kept.
 */
function streamOptions(body: Record<string, unknown>): Record<string, unknown> {
  if (body.stream !== true) return {};
  const options = body.stream_options;
  const kept = typeof options === 'object' && options !== null && !Array.isArray(options) ? options : {};
  return { stream_options: { ...kept, include_usage: true } };
}

/** The choices of a non-streamed completion by index; a choice whose message is not a chat message is logged empty. */
function completionChoices(choices: unknown): AssembledChoice[] {
  if (!Array.isArray(choices)) return [];
  return choices
    .filter((c): c is Record<string, unknown> => typeof c === 'object' && c !== null)
    .map((c, position) => {
      const message = ChatMessage.safeParse(c.message);
      const choice: AssembledChoice = {
        index: Number.isSafeInteger(c.index) ? (c.index as number) : position,
        message: message.success ? message.data : EMPTY_ANSWER,
      };
      if (typeof c.finish_reason === 'string') choice.finishReason = c.finish_reason;
      return choice;
    })
    .sort((a, b) => a.index - b.index);
}

function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * A logged header's value, held to the capture API's schema for the same field (its caps) and to
 * the storable rule, so that a header can neither break the log nor differ from the API: a bad
 * one is a 400 naming the header, before the upstream is called.
 */
function headerField<T extends z.ZodType>(name: string, schema: T, value: unknown): z.output<T> {
  const parsed = parseInput(schema, value, name);
  const issue = storableIssue(parsed, name);
  if (issue) throw new RatchetError('invalid_request', `${issue.path}: ${issue.message}`, issue.path);
  return parsed;
}

function metadataHeader(request: FastifyRequest): Record<string, unknown> | undefined {
  const text = header(request, 'x-ratchet-metadata');
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new RatchetError(
      'invalid_request',
      'x-ratchet-metadata: must be a JSON object',
      'x-ratchet-metadata',
    );
  }
  return headerField('x-ratchet-metadata', InteractionInput.shape.metadata.unwrap(), value);
}

/** Ratchet's own per-call fields travel in headers, so the body stays exactly what upstreams accept. */
function callContext(request: FastifyRequest) {
  const tagsHeader = header(request, 'x-ratchet-tags');
  const sessionId = header(request, 'x-ratchet-session-id');
  const userId = header(request, 'x-ratchet-user-id');
  const metadata = metadataHeader(request);
  const tags =
    tagsHeader === undefined
      ? undefined
      : headerField(
          'x-ratchet-tags',
          InteractionInput.shape.tags,
          tagsHeader
            .split(',')
            .map((t) => t.trim())
            .filter(Boolean),
        );
  return {
    sessionId:
      sessionId === undefined
        ? undefined
        : headerField('x-ratchet-session-id', InteractionInput.shape.sessionId, sessionId),
    userId:
      userId === undefined
        ? undefined
        : headerField('x-ratchet-user-id', InteractionInput.shape.userId, userId),
    tags: withSegmentTag(tags, header(request, 'x-ratchet-segment')),
    metadata,
  };
}

/**
 * `x-ratchet-segment: busy` is the tag `segment:busy`: the interaction is logged with it (so a
 * segment's dataset can select its feedback) and variants with `segment: { tag: 'segment:busy' }`
 * serve the call.
 */
function withSegmentTag(tags: string[] | undefined, segment: string | undefined): string[] | undefined {
  if (segment === undefined) return tags;
  const tag = parseInput(Tags.element, `segment:${segment.trim()}`, 'x-ratchet-segment');
  if (!/^segment:[A-Za-z0-9._-]+$/.test(tag))
    throw new RatchetError(
      'invalid_request',
      'x-ratchet-segment: letters, digits, dot, dash or underscore only',
      'x-ratchet-segment',
    );
  return tags?.includes(tag) ? tags : [...(tags ?? []), tag];
}

export class Gateway {
  private readonly providers = new Map<string, Provider>();

  constructor(
    private config: GatewayConfig,
    private readonly logWriter: InteractionLogWriter,
    private readonly metrics: Metrics,
    private readonly providerFactory: ProviderFactory = createOpenAICompatibleProvider,
    /** Routes kept in the database (experiments), consulted before the file's. */
    readonly databaseRoutes?: DatabaseRoutes,
    /** Signs the x-ratchet-feedback-token each answer carries (none without it). */
    private readonly feedbackTokens?: FeedbackTokens,
  ) {}

  /** The upstreams the gateway file defines (database routes may only name these). */
  upstreamNames(): string[] {
    return Object.keys(this.config.upstreams);
  }

  defaultUpstreamName(): string | undefined {
    return this.config.defaultUpstream;
  }

  /** One upstream of the gateway file (URL, key variable, headers): for server-side callers only. */
  upstream(name: string): UpstreamConfig | undefined {
    return Object.hasOwn(this.config.upstreams, name) ? this.config.upstreams[name] : undefined;
  }

  /** Swaps in a new routes file (e.g. new weights) without dropping calls in flight. */
  reload(config: GatewayConfig): void {
    const old = [...this.providers.values()];
    this.providers.clear();
    this.config = config;
    setTimeout(() => void Promise.all(old.map((p) => p.close())), 60_000).unref();
  }

  private provider(name: string): Provider {
    let p = this.providers.get(name);
    if (!p) {
      p = this.providerFactory(name, this.config.upstreams[name]!);
      this.providers.set(name, p);
    }
    return p;
  }

  async handle(request: FastifyRequest, reply: FastifyReply, projectId: string): Promise<FastifyReply> {
    const started = performance.now();
    const createdAt = Date.now();
    const body = parseInput(ChatRequest, request.body);
    const ctx = callContext(request);
    const userId = ctx.userId ?? body.user;
    // Only the first calls after start can find the database routes not yet loaded.
    if (this.databaseRoutes && !this.databaseRoutes.loaded) await this.databaseRoutes.ready;
    const target = assign(
      this.config,
      body.model,
      userId,
      this.databaseRoutes?.lookup(projectId, body.model),
      ctx,
    );
    if (!target)
      throw new RatchetError(
        'not_found',
        `model: "${body.model}" is neither a route nor servable by a default upstream`,
        'model',
      );

    const id = newId(createdAt);
    const abort = new AbortController();
    // The response's close before it finished is the client going away (a "stop" button).
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) abort.abort();
    });
    const parameters = Object.fromEntries(Object.entries(body).filter(([k]) => !notParameters.has(k)));
    const streamed = body.stream === true;
    let logged = false;
    // Exactly once, however the call ends (answered, failed, or closed by the client mid-stream).
    const log: LogCall = (output, { metadata: more, ...extra }) => {
      if (logged) return;
      logged = true;
      this.logWriter.enqueue(projectId, {
        id,
        route: target.route ?? undefined,
        variant: target.variant ?? undefined,
        model: target.model,
        messages: body.messages,
        output,
        parameters,
        latencyMs: performance.now() - started,
        sessionId: ctx.sessionId,
        userId,
        metadata: { ...ctx.metadata, upstream: target.upstreamName, streamed, ...more },
        tags: ctx.tags,
        status: 'ok',
        source: 'gateway',
        createdAt,
        ...extra,
      });
    };

    reply.header('x-ratchet-interaction-id', id);
    // What the application hands its browser so the user (and only they) can rate this answer.
    if (this.feedbackTokens)
      reply.header(
        'x-ratchet-feedback-token',
        await this.feedbackTokens.issue(projectId, id, userId ?? null),
      );
    if (target.route) reply.header('x-ratchet-route', target.route);
    if (target.variant) reply.header('x-ratchet-variant', target.variant);

    let upstream: Awaited<ReturnType<Provider['chatCompletions']>>;
    try {
      upstream = await this.provider(target.upstreamName).chatCompletions(
        { ...body, model: target.model, ...streamOptions(body) },
        abort.signal,
      );
    } catch (err) {
      const message = `upstream "${target.upstreamName}" failed: ${err instanceof Error ? err.message : String(err)}`;
      this.metrics.upstreamDuration.observe(
        { upstream: target.upstreamName, status: 'error' },
        (performance.now() - started) / 1000,
      );
      if (abort.signal.aborted) {
        log(EMPTY_ANSWER, { status: 'aborted', error: 'the client closed the connection before the answer' });
        return reply;
      }
      log(EMPTY_ANSWER, { status: 'error', error: message });
      throw new RatchetError('upstream_error', message);
    }
    this.metrics.upstreamDuration.observe(
      { upstream: target.upstreamName, status: String(upstream.status) },
      (performance.now() - started) / 1000,
    );
    reply.status(upstream.status);
    if (upstream.contentType) reply.header('content-type', upstream.contentType);

    const streaming = upstream.status === 200 && (upstream.contentType ?? '').includes('text/event-stream');
    if (streaming) {
      const stripUsage = streamed && !clientAskedForUsage(body);
      return this.relayStream(reply, upstream.body, abort.signal, stripUsage, log);
    }

    const chunks: Buffer[] = [];
    try {
      for await (const chunk of upstream.body) chunks.push(chunk as Buffer);
    } catch (err) {
      const aborted = abort.signal.aborted;
      log(EMPTY_ANSWER, {
        status: aborted ? 'aborted' : 'error',
        error: `${aborted ? 'the client closed the connection' : 'upstream body broke'}: ${err instanceof Error ? err.message : String(err)}`,
      });
      if (aborted) return reply;
      throw new RatchetError('upstream_error', `upstream "${target.upstreamName}" broke off its answer`);
    }
    const raw = Buffer.concat(chunks);
    reply.send(raw);
    // Parsing for the log happens after the response is on its way.
    setImmediate(() => this.logCompletion(raw, upstream.status, log));
    return reply;
  }

  /**
   * Relays the upstream's SSE bytes as they come while the shared assembler rebuilds every choice.
   * When the gateway asked for usage the client did not (`stripUsage`), the usage chunk is taken
   * out of what the client receives. A client that closes early gets its partial answer logged
   * as `aborted`.
   */
  private relayStream(
    reply: FastifyReply,
    body: NodeJS.ReadableStream,
    aborted: AbortSignal,
    stripUsage: boolean,
    log: LogCall,
  ): FastifyReply {
    const sse = new SseChatStream(stripUsage);
    const logAssembled = (extra: Partial<ParsedInteraction>) => {
      const choices = sse.assembler.choices();
      const finishReason = choices[0]?.finishReason;
      log(choices[0]!.message, {
        usage: sse.assembler.usage,
        ...extra,
        metadata: { ...(finishReason ? { finishReason } : {}), ...extraChoicesMetadata(choices) },
      });
    };
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        const forward = sse.push(chunk);
        done(null, stripUsage ? forward : chunk);
      },
      flush(done) {
        const rest = sse.end();
        logAssembled({});
        done(null, stripUsage ? rest : undefined);
      },
    });
    const onAbort = () =>
      logAssembled({ status: 'aborted', error: 'the client closed the stream before its end' });
    if (aborted.aborted) onAbort();
    else aborted.addEventListener('abort', onAbort, { once: true });
    body.once('error', (err) => {
      if (aborted.aborted) onAbort();
      else logAssembled({ status: 'error', error: `stream broke: ${err.message}` });
      tap.destroy(err);
    });
    body.pipe(tap);
    reply.header('cache-control', 'no-cache');
    reply.send(tap);
    return reply;
  }

  private logCompletion(raw: Buffer, status: number, log: LogCall): void {
    let parsed: Record<string, unknown> | undefined;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      parsed = undefined;
    }
    if (status >= 400 || !parsed || typeof parsed !== 'object') {
      log(EMPTY_ANSWER, {
        status: 'error',
        error: `upstream status ${status}: ${raw.toString('utf8').slice(0, 2000)}`,
      });
      return;
    }
    const choices = completionChoices(parsed.choices);
    const finishReason = choices[0]?.finishReason;
    log(choices[0]?.message ?? EMPTY_ANSWER, {
      usage: toUsage(parsed.usage as OpenAIUsage | undefined),
      metadata: { ...(finishReason ? { finishReason } : {}), ...extraChoicesMetadata(choices) },
    });
  }

  async close(): Promise<void> {
    this.databaseRoutes?.close();
    await Promise.all([...this.providers.values()].map((p) => p.close()));
    this.providers.clear();
  }
}

export function registerGatewayRoutes(routes: RouteTable, gateway: () => Gateway | undefined): void {
  routes.add({
    method: 'POST',
    url: '/v1/chat/completions',
    access: 'secret',
    tag: 'gateway',
    summary:
      'OpenAI-compatible chat completions (streaming or not). `model` names a route or an upstream model; every call is logged and answered with x-ratchet-interaction-id and x-ratchet-feedback-token.',
    bodyDoc: ChatRequest,
    repairsBody: true,
    handler: async ({ request, reply, principal }) => {
      const gw = gateway();
      if (!gw)
        throw new RatchetError(
          'not_found',
          'the gateway has no configuration: start the server with a gateway config file (RATCHET_GATEWAY_CONFIG)',
        );
      return gw.handle(request, reply, principal.projectId);
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/upstreams',
    access: 'secret',
    tag: 'gateway',
    summary:
      "The gateway file's upstreams by name, the names evaluations and routes may use (never their URLs, headers or keys).",
    handler: async () => {
      const gw = gateway();
      const fallback = gw?.defaultUpstreamName();
      return { items: (gw?.upstreamNames() ?? []).map((name) => ({ name, default: name === fallback })) };
    },
  });
}
