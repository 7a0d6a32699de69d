import { Transform } from 'node:stream';
import {
  type AssembledChoice,
  ChatMessage,
  type ChatStreamAssembler,
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
  type Usage,
} from '@ratchet/core';
import type { NewUsageRecord } from '@ratchet/store';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { FeedbackTokens } from '../feedback-tokens.js';
import type { Metrics } from '../metrics.js';
import type { RouteTable } from '../routing.js';
import type { GatewayConfig, UpstreamConfig } from './config.js';
import {
  type Answered,
  type Attempt,
  type Candidate,
  ClientGone,
  Failover,
  FailoverExhausted,
  failureReason,
  readAll,
} from './failover.js';
import { type CheckResult, type PiiRecord, RouteGuardrails } from './guardrails.js';
import type { InteractionLogWriter } from './log-writer.js';
import { createProvider } from './providers/index.js';
import type { Provider, ProviderFactory } from './providers/types.js';
import { ResponseLinks } from './response-links.js';
import {
  nativeOutputMessage,
  nativeUsage,
  newResponseId,
  outputItems,
  ResponsesEventWriter,
  ResponsesRequest,
  ResponsesStreamLog,
  responseObject,
  responsesMessages,
  responsesToChat,
} from './responses.js';
import { type Assignment, assign, type CallSegmentInfo, type DatabaseRoutes } from './router.js';

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

/** Records a usage-only call off the response path (it must not throw: it logs its own failures). */
export type UsageLog = (projectId: string, id: string, record: NewUsageRecord) => void;

/**
 * What the gateway reads from an embeddings request; the rest passes through. `input` is any of
 * OpenAI's forms (text, texts, tokens, token arrays); the upstream judges it.
 */
const EmbeddingsRequest = z.looseObject({
  model: InteractionInput.shape.model,
  input: z.union([
    z.string(),
    z.array(z.string()).min(1),
    z.array(z.number()).min(1),
    z.array(z.array(z.number())).min(1),
  ]),
  user: InteractionInput.shape.userId,
});

/** How many inputs an embeddings request holds: one text or token array, or the array's length. */
function inputCount(input: z.output<typeof EmbeddingsRequest>['input']): number {
  if (typeof input === 'string') return 1;
  return typeof input[0] === 'number' ? 1 : input.length;
}

/** The unix time `GET /v1/models` gives routes, which have no creation time of their own. */
interface ModelEntry {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

/** What is read of an upstream's `GET /models` (anything else in it is ignored). */
const UpstreamModelList = z.object({
  data: z
    .array(
      z.looseObject({
        id: InteractionInput.shape.model,
        created: z.number().int().nonnegative().optional(),
        owned_by: z.string().max(200).optional(),
      }),
    )
    .max(10_000),
});

const STARTED_SECONDS = Math.floor(Date.now() / 1000);

interface OpenCall {
  target: Assignment;
  ctx: ReturnType<typeof callContext>;
  userId: string | undefined;
  started: number;
  createdAt: number;
  messages: ChatMessage[];
  parameters: Record<string, unknown>;
  metadata: Record<string, unknown>;
  /** The upstream and model that answered, when failover went past the variant's. */
  served?: Candidate;
  /** Every try of the call (`metadata.attempts`). */
  attempts?: Attempt[];
  /** The route's guardrails, and what their checks found (`metadata.guardrails`). */
  guard?: RouteGuardrails;
  checks?: { input?: CheckResult; output?: CheckResult };
}

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

/**
 * An error event inside a stream (`data: {"error": …}`: vLLM's and OpenAI's way to fail after the
 * head was sent, and what a translated provider's stream error becomes): the client's SDK throws
 * on it, so the call is logged as failed, with what was streamed before it.
 */
class StreamFailure {
  private message: string | undefined;

  readonly watch = (chunk: object): void => {
    const error = (chunk as { error?: unknown }).error;
    if (error === undefined || this.message !== undefined) return;
    const message =
      typeof error === 'object' && error !== null ? (error as { message?: unknown }).message : error;
    this.message = String(message ?? 'stream error').slice(0, 2000);
  };

  extra(): Partial<ParsedInteraction> {
    return this.message === undefined
      ? {}
      : { status: 'error', error: `upstream error in the stream: ${this.message}` };
  }
}

export class Gateway {
  private readonly providers = new Map<string, Provider>();
  private failover: Failover;
  /** Each route's guardrails, compiled once per gateway file. */
  private guards = new Map<string, RouteGuardrails>();

  constructor(
    private config: GatewayConfig,
    private readonly logWriter: InteractionLogWriter,
    private readonly metrics: Metrics,
    private readonly providerFactory: ProviderFactory = createProvider,
    /** Routes kept in the database (experiments), consulted before the file's. */
    readonly databaseRoutes?: DatabaseRoutes,
    /** Signs the x-ratchet-feedback-token each answer carries (none without it). */
    private readonly feedbackTokens?: FeedbackTokens,
    /** Where usage-only calls (embeddings) are recorded: never as interactions. */
    private readonly usageLog?: UsageLog,
    /** Which interaction each native Responses answer became, for the turns that follow it. */
    private readonly responseLinks: ResponseLinks = new ResponseLinks(undefined),
  ) {
    this.failover = new Failover(config);
    this.guards = compileGuardrails(config);
  }

  /** The circuit of an upstream: `closed`, `open` or `half-open`. */
  circuitState(upstream: string): 'closed' | 'open' | 'half-open' {
    return this.failover.breakers.stateOf(upstream);
  }

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
    this.failover = new Failover(config);
    this.guards = compileGuardrails(config);
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
    const target = await this.target(projectId, body.model, userId, ctx);

    const parameters = Object.fromEntries(Object.entries(body).filter(([k]) => !notParameters.has(k)));
    const call: OpenCall = {
      target,
      ctx,
      userId,
      started,
      createdAt,
      messages: body.messages,
      parameters,
      metadata: { streamed: body.stream === true },
    };
    const { abort, log } = await this.openCall(reply, projectId, call);
    await this.checkInput(call, log);

    const answer = await this.callUpstream(call, { ...body, ...streamOptions(body) }, abort.signal, log);
    if (!answer) return reply;
    reply.status(answer.status);
    if (answer.contentType) reply.header('content-type', answer.contentType);
    if (answer.stream) {
      const stripUsage = body.stream === true && !clientAskedForUsage(body);
      return this.relayStream(reply, answer.stream, abort.signal, stripUsage, log);
    }
    let raw = answer.raw!;
    if (call.guard?.output && answer.status < 400) raw = await this.checkOutput(call, raw);
    reply.send(raw);
    // Parsing for the log happens after the response is on its way.
    setImmediate(() => this.logCompletion(raw, answer.status, log));
    return reply;
  }

  private countFailures(attempts: Attempt[]): void {
    for (const a of attempts) {
      const reason = failureReason(a);
      if (reason) this.metrics.upstreamFailures.inc({ upstream: a.upstream, reason });
    }
  }

  /**
   * Runs the route's input check on the call's messages: a match is recorded, and with `block`
   * the call is logged as refused and answered 400 naming `messages`, before any upstream sees it.
   */
  private async checkInput(call: OpenCall, log: LogCall): Promise<void> {
    const input = await call.guard?.input?.run(call.messages);
    if (!input) return;
    call.checks = { ...call.checks, input };
    if (input.action !== 'blocked') return;
    const message = `messages: blocked by the route's input guardrail (${input.matched.join(', ')})`;
    log(EMPTY_ANSWER, { status: 'error', error: message });
    throw new RatchetError('invalid_request', message, 'messages');
  }

  /**
   * Runs the route's output check on a non-streamed completion's choices before it is sent. With
   * `block`, a matching choice reaches the client (and the log) empty with `finish_reason:
   * content_filter`, as OpenAI's own filter answers; other bodies pass unchanged.
   */
  private async checkOutput(call: OpenCall, raw: Buffer): Promise<Buffer> {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      return raw;
    }
    const choices = completionChoices(parsed?.choices);
    const output = await call.guard!.output!.run(choices.map((c) => c.message));
    if (!output) return raw;
    call.checks = { ...call.checks, output };
    if (output.action !== 'blocked' || !Array.isArray(parsed.choices)) return raw;
    parsed.choices = parsed.choices.map((c: Record<string, unknown>) => ({
      ...c,
      message: { role: 'assistant', content: '' },
      finish_reason: 'content_filter',
    }));
    return Buffer.from(JSON.stringify(parsed));
  }

  /**
   * Sends a chat request to the call's upstream through failover (the route's retries and
   * fallbacks, the circuit breakers, the timeouts) and records on the call which upstream
   * answered and every try. Undefined when the client went away first (the call is logged
   * `aborted`); a 502 naming every try when no upstream answered.
   */
  private async callUpstream(
    call: OpenCall,
    body: Record<string, unknown>,
    signal: AbortSignal,
    log: LogCall,
    operation: 'chatCompletions' | 'responses' = 'chatCompletions',
  ): Promise<Answered | undefined> {
    const { target } = call;
    const candidates = this.candidates(target, operation);
    const started = performance.now();
    try {
      const answer = await this.failover.call(
        candidates,
        target.failover,
        (c, s) => this.provider(c.upstreamName)[operation]!({ ...body, model: c.model }, s),
        signal,
      );
      call.served = answer.served;
      call.attempts = answer.attempts;
      if (answer.attempts.length > 1) this.countFailures(answer.attempts);
      this.metrics.upstreamDuration.observe(
        { upstream: answer.served.upstreamName, status: String(answer.status) },
        (performance.now() - started) / 1000,
      );
      return answer;
    } catch (err) {
      this.metrics.upstreamDuration.observe(
        { upstream: target.upstreamName, status: 'error' },
        (performance.now() - started) / 1000,
      );
      if (err instanceof ClientGone) call.attempts = err.attempts;
      if (err instanceof FailoverExhausted) {
        call.attempts = err.attempts;
        this.countFailures(err.attempts);
      }
      if (signal.aborted || err instanceof ClientGone) {
        log(EMPTY_ANSWER, { status: 'aborted', error: 'the client closed the connection before the answer' });
        return undefined;
      }
      if (err instanceof RatchetError) {
        log(EMPTY_ANSWER, { status: 'error', error: err.message });
        throw err;
      }
      const message = `upstream "${target.upstreamName}" failed: ${err instanceof Error ? err.message : String(err)}`;
      log(EMPTY_ANSWER, { status: 'error', error: message });
      throw new RatchetError('upstream_error', message);
    }
  }

  /**
   * Where a call may go, in order: the variant's upstream, then the route's fallbacks, each only
   * if its provider has the operation (a native Responses call, its conversation held upstream,
   * falls back only to an upstream that speaks Responses; embeddings only to one that embeds).
   */
  private candidates(target: Assignment, operation: 'chatCompletions' | 'responses' | 'embeddings') {
    const candidates: Candidate[] = [{ upstreamName: target.upstreamName, model: target.model }];
    for (const f of target.failover?.fallbacks ?? [])
      candidates.push({ upstreamName: f.upstream, model: f.model });
    return candidates.filter((c) => this.provider(c.upstreamName)[operation] !== undefined);
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
    const failure = new StreamFailure();
    const sse = new SseChatStream(stripUsage, failure.watch);
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
        // Bytes that go out unchanged are sent before the assembler reads them (it only feeds
        // the log), so the first token waits for nothing; push before done keeps their order.
        if (sse.forwardsUnchanged(chunk)) {
          this.push(chunk);
          sse.push(chunk);
          return done();
        }
        done(null, sse.push(chunk));
      },
      flush(done) {
        const rest = sse.end();
        logAssembled(failure.extra());
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

  /**
   * What every call that becomes an interaction shares: its id and feedback token in the answer's
   * headers, an abort signal for the client going away, and the log function that enqueues the
   * interaction exactly once, however the call ends (answered, failed, or closed mid-stream).
   */
  private async openCall(reply: FastifyReply, projectId: string, call: OpenCall) {
    const { target, ctx, userId, started, createdAt } = call;
    const id = newId(createdAt);
    const abort = new AbortController();
    // The response's close before it finished is the client going away (a "stop" button).
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) abort.abort();
    });
    call.guard = target.route ? this.guards.get(target.route) : undefined;
    let logged = false;
    const log: LogCall = (output, extra) => {
      if (logged) return;
      logged = true;
      if (!call.guard) return write(call.messages, output, extra);
      // A stream's output is checked once it is whole; masking runs before anything is stored.
      void this.guarded(call, output, extra).then(
        (g) => write(g.messages, g.output, g.extra),
        () =>
          write([], EMPTY_ANSWER, { ...extra, status: 'error', error: 'guardrails failed; nothing stored' }),
      );
    };
    const write = (
      messages: ChatMessage[],
      output: ChatMessage,
      { metadata: more, ...extra }: Partial<ParsedInteraction>,
    ) => {
      this.logWriter.enqueue(projectId, {
        id,
        route: target.route ?? undefined,
        variant: target.variant ?? undefined,
        model: call.served?.model ?? target.model,
        messages,
        output,
        parameters: call.parameters,
        latencyMs: performance.now() - started,
        sessionId: ctx.sessionId,
        userId,
        metadata: {
          ...ctx.metadata,
          upstream: call.served?.upstreamName ?? target.upstreamName,
          ...(call.attempts ? { attempts: call.attempts } : {}),
          ...call.metadata,
          ...more,
        },
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
    return { id, abort, log };
  }

  /**
   * What the route's guardrails make of an interaction before it is stored: a streamed or
   * Responses output checked (a non-streamed chat output was checked before it was sent), and
   * PII masked in its messages, output and extra choices; `metadata.guardrails` records both.
   */
  private async guarded(call: OpenCall, output: ChatMessage, extra: Partial<ParsedInteraction>) {
    const guard = call.guard!;
    if (guard.output && !call.checks?.output && output !== EMPTY_ANSWER) {
      const found = await guard.output.run([output]);
      // What was sent cannot be taken back: a stream's match is recorded, not blocked.
      if (found) call.checks = { ...call.checks, output: { ...found, action: 'flagged' } };
    }
    const pii: PiiRecord = {};
    const messages = guard.mask(call.messages, pii);
    const [masked] = guard.mask([output], pii);
    const metadata = { ...extra.metadata };
    if (Array.isArray(metadata.choices))
      metadata.choices = metadata.choices.map((c: { message: ChatMessage }) => ({
        ...c,
        message: guard.mask([c.message], pii)[0],
      }));
    metadata.guardrails = { ...call.checks, ...(guard.masks ? { pii } : {}) };
    return { messages, output: masked!, extra: { ...extra, metadata } };
  }

  /**
   * `POST /v1/responses`, translated to chat completions for the upstream (`responses.ts`) and
   * back, streamed as the Responses API's events or not; logged as an interaction like a chat
   * call (its messages are the translated input, `metadata.api: 'responses'`), with the same
   * headers, usage, `streamed` and `aborted`.
   */
  async responses(request: FastifyRequest, reply: FastifyReply, projectId: string): Promise<FastifyReply> {
    const started = performance.now();
    const createdAt = Date.now();
    const body = parseInput(ResponsesRequest, request.body);
    const ctx = callContext(request);
    const userId = ctx.userId ?? body.user ?? undefined;
    const target = await this.target(projectId, body.model, userId, ctx);
    if (this.provider(target.upstreamName).responses)
      return this.nativeResponses(reply, projectId, request.body as Record<string, unknown>, body, {
        target,
        ctx,
        userId,
        started,
        createdAt,
      });
    const chat = responsesToChat(body, target.model);
    const { messages: _, model: __, ...chatParameters } = chat;
    const { stream: ___, stream_options: ____, user: _____, ...parameters } = chatParameters;
    const call: OpenCall = {
      target,
      ctx,
      userId,
      started,
      createdAt,
      messages: chat.messages as ChatMessage[],
      parameters,
      metadata: { api: 'responses', streamed: body.stream === true },
    };
    const { abort, log } = await this.openCall(reply, projectId, call);
    await this.checkInput(call, log);
    const responseId = newResponseId();
    const upstream = await this.callUpstream(call, chat, abort.signal, log);
    if (!upstream) return reply;
    const served = upstream.served.model;
    if (upstream.stream) {
      const write = (assembler: ChatStreamAssembler) =>
        new ResponsesEventWriter(assembler, responseId, body, served, createdAt);
      return this.relayResponsesStream(reply, upstream.stream, abort.signal, write, log);
    }
    const raw = upstream.raw!;
    let parsed: Record<string, unknown> | undefined;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      parsed = undefined;
    }
    if (upstream.status >= 400 || !parsed || typeof parsed !== 'object') {
      // The upstream's own error passes through with its status, as for chat calls.
      log(EMPTY_ANSWER, {
        status: 'error',
        error: `upstream status ${upstream.status}: ${raw.toString('utf8').slice(0, 2000)}`,
      });
      reply.status(upstream.status);
      if (upstream.contentType) reply.header('content-type', upstream.contentType);
      return reply.send(raw);
    }
    const choice = completionChoices(parsed.choices)[0];
    const message = choice?.message ?? EMPTY_ANSWER;
    const usage = toUsage(parsed.usage as OpenAIUsage | undefined);
    reply.send(
      responseObject(responseId, body, served, createdAt, {
        status: 'completed',
        output: outputItems(message),
        usage,
      }),
    );
    log(message, {
      usage,
      metadata: { responseId, ...(choice?.finishReason ? { finishReason: choice.finishReason } : {}) },
    });
    return reply;
  }

  /**
   * A Responses call to an upstream that speaks the Responses API: the client's body goes
   * upstream as it is (only `model` resolved) and the answer comes back untouched, streamed or
   * not. The upstream holds the conversation (`previous_response_id`, `store`); the log records
   * this turn's input items (as chat messages, like a translated call) and links the turn to the
   * interaction of the response it continues: `metadata.responses` has the previous response's
   * and interaction's ids and the conversation's id (its first turn's interaction id), and the
   * turn keeps the conversation's session when the client names none.
   */
  private async nativeResponses(
    reply: FastifyReply,
    projectId: string,
    raw: Record<string, unknown>,
    body: ResponsesRequest,
    opened: Pick<OpenCall, 'target' | 'ctx' | 'userId' | 'started' | 'createdAt'>,
  ): Promise<FastifyReply> {
    const previousResponseId = body.previous_response_id ?? undefined;
    const previous = previousResponseId
      ? await this.responseLinks.find(projectId, previousResponseId)
      : undefined;
    const ctx = { ...opened.ctx, sessionId: opened.ctx.sessionId ?? previous?.sessionId };
    const {
      model: _m,
      input: _i,
      instructions: _in,
      stream: _s,
      user: _u,
      previous_response_id: _p,
      store: _st,
      ...parameters
    } = raw;
    const links: Record<string, unknown> = { store: body.store ?? true };
    if (previousResponseId) links.previousResponseId = previousResponseId;
    if (previous) links.previousInteractionId = previous.interactionId;
    const call: OpenCall = {
      ...opened,
      ctx,
      messages: responsesMessages(body),
      parameters,
      metadata: { api: 'responses', native: true, streamed: body.stream === true, responses: links },
    };
    const { id, abort, log } = await this.openCall(reply, projectId, call);
    const conversationId = previous?.conversationId ?? id;
    links.conversationId = conversationId;
    await this.checkInput(call, log);
    const upstream = await this.callUpstream(call, raw, abort.signal, log, 'responses');
    if (!upstream) return reply;
    // The turn is logged with the upstream's response id, and linked for the turns after it
    // (not with `store: false`: the upstream keeps nothing a later turn could continue).
    const logTurn = (responseId: unknown, output: ChatMessage, extra: Partial<ParsedInteraction>) => {
      const known = typeof responseId === 'string' && responseId.length <= 200 ? responseId : undefined;
      if (known) links.id = known;
      if (known && body.store !== false && extra.status !== 'error')
        this.responseLinks.record(projectId, {
          responseId: known,
          interactionId: id,
          conversationId,
          sessionId: ctx.sessionId,
          createdAt: opened.createdAt,
        });
      log(output, extra);
    };
    reply.status(upstream.status);
    if (upstream.contentType) reply.header('content-type', upstream.contentType);
    if (upstream.stream) return this.relayNativeResponses(reply, upstream.stream, abort.signal, logTurn);
    const answer = upstream.raw!;
    reply.send(answer);
    setImmediate(() => {
      let parsed: Record<string, unknown> | undefined;
      try {
        parsed = JSON.parse(answer.toString('utf8'));
      } catch {
        parsed = undefined;
      }
      if (upstream.status >= 400 || !parsed || typeof parsed !== 'object') {
        log(EMPTY_ANSWER, {
          status: 'error',
          error: `upstream status ${upstream.status}: ${answer.toString('utf8').slice(0, 2000)}`,
        });
        return;
      }
      const failed = parsed.status === 'failed';
      logTurn(parsed.id, nativeOutputMessage(parsed.output), {
        usage: nativeUsage(parsed.usage),
        ...(failed ? { status: 'error', error: 'the upstream response failed' } : {}),
      });
    });
    return reply;
  }

  /** Relays a native Responses stream byte for byte while `ResponsesStreamLog` reads it for the log. */
  private relayNativeResponses(
    reply: FastifyReply,
    body: NodeJS.ReadableStream,
    aborted: AbortSignal,
    logTurn: (responseId: unknown, output: ChatMessage, extra: Partial<ParsedInteraction>) => void,
  ): FastifyReply {
    const events = new ResponsesStreamLog();
    const logRead = (extra: Partial<ParsedInteraction>) =>
      logTurn(events.responseId, events.message(), { usage: events.usage, ...extra });
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        events.push(chunk);
        done(null, chunk);
      },
      flush(done) {
        events.end();
        logRead(events.extra());
        done();
      },
    });
    const onAbort = () =>
      logRead({ status: 'aborted', error: 'the client closed the stream before its end' });
    if (aborted.aborted) onAbort();
    else aborted.addEventListener('abort', onAbort, { once: true });
    body.once('error', (err) => {
      if (aborted.aborted) onAbort();
      else logRead({ status: 'error', error: `stream broke: ${err.message}` });
      tap.destroy(err);
    });
    body.pipe(tap);
    reply.header('cache-control', 'no-cache');
    reply.send(tap);
    return reply;
  }

  /** Relays a chat stream as Responses events; a client that goes away gets its partial answer logged as aborted. */
  private relayResponsesStream(
    reply: FastifyReply,
    body: NodeJS.ReadableStream,
    aborted: AbortSignal,
    writer: (assembler: ChatStreamAssembler) => ResponsesEventWriter,
    log: LogCall,
  ): FastifyReply {
    // The chat chunks, as the SSE parser finds them, become the Responses API's events.
    let out = '';
    const failure = new StreamFailure();
    const sse = new SseChatStream(false, (chunk) => {
      failure.watch(chunk);
      out += events.chunk(chunk);
    });
    const events = writer(sse.assembler);
    const logAssembled = (extra: Partial<ParsedInteraction>) => {
      const finishReason = sse.assembler.finishReason;
      log(sse.assembler.message(), {
        usage: sse.assembler.usage,
        ...extra,
        metadata: { ...(finishReason ? { finishReason } : {}) },
      });
    };
    const take = () => {
      const text = out;
      out = '';
      return text;
    };
    out = events.start();
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        sse.push(chunk);
        done(null, take());
      },
      flush(done) {
        sse.end();
        out += events.finish();
        logAssembled(failure.extra());
        done(null, take());
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
    reply.status(200);
    reply.header('content-type', 'text/event-stream; charset=utf-8');
    reply.header('cache-control', 'no-cache');
    reply.send(tap);
    return reply;
  }

  /** Resolves `model` as chat calls do (database route, file route, default upstream), or 404 naming it. */
  private async target(projectId: string, model: string, userId: string | undefined, ctx: CallSegmentInfo) {
    // Only the first calls after start can find the database routes not yet loaded.
    if (this.databaseRoutes && !this.databaseRoutes.loaded) await this.databaseRoutes.ready;
    const target = assign(this.config, model, userId, this.databaseRoutes?.lookup(projectId, model), ctx);
    if (!target)
      throw new RatchetError(
        'not_found',
        `model: "${model}" is neither a route nor servable by a default upstream`,
        'model',
      );
    return target;
  }

  /**
   * `GET /v1/models` in OpenAI's list format: the caller's project's database routes and the
   * file's routes (owned by `ratchet`), then the default upstream's own models, which `model`
   * also reaches. An upstream that cannot list in 2 s is left out rather than failing the list.
   */
  async listModels(projectId: string): Promise<{ object: 'list'; data: ModelEntry[] }> {
    if (this.databaseRoutes && !this.databaseRoutes.loaded) await this.databaseRoutes.ready;
    const names = new Set([
      ...(this.databaseRoutes?.names(projectId) ?? []),
      ...Object.keys(this.config.routes),
    ]);
    const data: ModelEntry[] = [...names]
      .sort()
      .map((id) => ({ id, object: 'model', created: STARTED_SECONDS, owned_by: 'ratchet' }));
    for (const entry of await this.upstreamModels()) if (!names.has(entry.id)) data.push(entry);
    return { object: 'list', data };
  }

  private async upstreamModels(): Promise<ModelEntry[]> {
    const name = this.config.defaultUpstream;
    const provider = name ? this.provider(name) : undefined;
    if (!provider?.models) return [];
    try {
      const res = await provider.models(AbortSignal.timeout(2000));
      const chunks: Buffer[] = [];
      for await (const chunk of res.body) chunks.push(chunk as Buffer);
      if (res.status !== 200) return [];
      const parsed = UpstreamModelList.safeParse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      if (!parsed.success) return [];
      return parsed.data.data.map((m) => ({
        id: m.id,
        object: 'model',
        created: m.created ?? STARTED_SECONDS,
        owned_by: m.owned_by ?? name!,
      }));
    } catch {
      return [];
    }
  }

  /**
   * `POST /v1/embeddings`, passed through to the route's (or the default) upstream and recorded
   * as a usage record, not an interaction: an embedding has no answer anyone could rate, and
   * kept out of `interactions` it can never reach feedback, the annotation queue or a dataset.
   * The answer carries `x-ratchet-usage-id` (no interaction id or feedback token: nothing to rate).
   */
  async embeddings(request: FastifyRequest, reply: FastifyReply, projectId: string): Promise<FastifyReply> {
    const started = performance.now();
    const createdAt = Date.now();
    const body = parseInput(EmbeddingsRequest, request.body);
    const ctx = callContext(request);
    const userId = ctx.userId ?? body.user;
    const target = await this.target(projectId, body.model, userId, ctx);
    const provider = this.provider(target.upstreamName);
    if (!provider.embeddings)
      throw new RatchetError(
        'invalid_request',
        `model: upstream "${target.upstreamName}" does not serve embeddings`,
        'model',
      );
    const id = newId(createdAt);
    let served: Candidate = { upstreamName: target.upstreamName, model: target.model };
    const record = (fields: Pick<NewUsageRecord, 'status' | 'error' | 'inputTokens' | 'totalTokens'>) =>
      this.usageLog?.(projectId, id, {
        kind: 'embeddings',
        route: target.route ?? undefined,
        variant: target.variant ?? undefined,
        model: served.model,
        upstream: served.upstreamName,
        userId,
        inputs: inputCount(body.input),
        latencyMs: performance.now() - started,
        createdAt,
        ...fields,
      });
    reply.header('x-ratchet-usage-id', id);
    if (target.route) reply.header('x-ratchet-route', target.route);
    if (target.variant) reply.header('x-ratchet-variant', target.variant);
    const abort = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) abort.abort();
    });
    let upstream: Answered;
    try {
      // The same failover as chat calls: retries, fallbacks, budget, circuit breakers, timeouts.
      upstream = await this.failover.call(
        this.candidates(target, 'embeddings'),
        target.failover,
        (c, s) => this.provider(c.upstreamName).embeddings!({ ...body, model: c.model }, s),
        abort.signal,
      );
    } catch (err) {
      if (err instanceof FailoverExhausted) this.countFailures(err.attempts);
      const aborted = abort.signal.aborted || err instanceof ClientGone;
      const message =
        err instanceof FailoverExhausted
          ? err.message
          : `upstream "${target.upstreamName}" failed: ${err instanceof Error ? err.message : String(err)}`;
      record({ status: aborted ? 'aborted' : 'error', error: message });
      if (err instanceof RatchetError) throw err;
      throw new RatchetError('upstream_error', message);
    }
    served = upstream.served;
    if (upstream.attempts.length > 1) this.countFailures(upstream.attempts);
    // An embeddings answer is never a stream; one that claims to be is read whole all the same.
    const raw = upstream.raw ?? (await readAll(upstream.stream!));
    reply.status(upstream.status);
    if (upstream.contentType) reply.header('content-type', upstream.contentType);
    reply.send(raw);
    setImmediate(() => {
      if (upstream.status >= 400) {
        record({
          status: 'error',
          error: `upstream status ${upstream.status}: ${raw.toString('utf8').slice(0, 2000)}`,
        });
        return;
      }
      let usage: Usage | undefined;
      try {
        usage = toUsage(JSON.parse(raw.toString('utf8'))?.usage);
      } catch {
        usage = undefined;
      }
      record({ status: 'ok', inputTokens: usage?.inputTokens, totalTokens: usage?.totalTokens });
    });
    return reply;
  }

  async close(): Promise<void> {
    this.databaseRoutes?.close();
    await Promise.all([...this.providers.values()].map((p) => p.close()));
    this.providers.clear();
  }
}

function compileGuardrails(config: GatewayConfig): Map<string, RouteGuardrails> {
  const guards = new Map<string, RouteGuardrails>();
  for (const [name, route] of Object.entries(config.routes))
    if (route.guardrails) guards.set(name, new RouteGuardrails(route.guardrails));
  return guards;
}

function configured(gateway: Gateway | undefined): Gateway {
  if (!gateway)
    throw new RatchetError(
      'not_found',
      'the gateway has no configuration: start the server with a gateway config file (RATCHET_GATEWAY_CONFIG)',
    );
  return gateway;
}

export function registerGatewayRoutes(routes: RouteTable, gateway: () => Gateway | undefined): void {
  routes.add({
    method: 'POST',
    url: '/v1/chat/completions',
    access: 'ingest',
    tag: 'gateway',
    summary:
      'OpenAI-compatible chat completions (streaming or not). `model` names a route or an upstream model; every call is logged and answered with x-ratchet-interaction-id and x-ratchet-feedback-token.',
    bodyDoc: ChatRequest,
    repairsBody: true,
    handler: async ({ request, reply, principal }) =>
      configured(gateway()).handle(request, reply, principal.projectId),
  });
  routes.add({
    method: 'POST',
    url: '/v1/responses',
    access: 'ingest',
    tag: 'gateway',
    summary:
      "OpenAI's Responses API (streaming or not; text, message and function-call items, function tools, text.format), translated to chat completions for the upstream; logged as an interaction and answered with x-ratchet-interaction-id and x-ratchet-feedback-token.",
    bodyDoc: ResponsesRequest,
    repairsBody: true,
    handler: async ({ request, reply, principal }) =>
      configured(gateway()).responses(request, reply, principal.projectId),
  });
  routes.add({
    method: 'GET',
    url: '/v1/models',
    access: 'ingest',
    tag: 'gateway',
    summary:
      "OpenAI's models list: the caller's project's routes (database and gateway file), then the default upstream's models.",
    handler: async ({ principal }) => configured(gateway()).listModels(principal.projectId),
  });
  routes.add({
    method: 'POST',
    url: '/v1/embeddings',
    access: 'ingest',
    tag: 'gateway',
    summary:
      "OpenAI-compatible embeddings, passed through to the route's or the default upstream; recorded as a usage record (x-ratchet-usage-id, GET /api/v1/usage-records), never as an interaction, so never rated or trained on.",
    bodyDoc: EmbeddingsRequest,
    // Inputs are forwarded, not stored: a NUL in a text to embed is the upstream's to judge.
    repairsBody: true,
    handler: async ({ request, reply, principal }) =>
      configured(gateway()).embeddings(request, reply, principal.projectId),
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/upstreams',
    access: 'read',
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
