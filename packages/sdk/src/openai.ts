import {
  type ChatCompletionChunkLike,
  type ChatMessage,
  ChatStreamAssembler,
  extraChoicesMetadata,
  type InteractionInput,
  newId,
  type OpenAIUsage,
  toUsage,
  type Usage,
} from '@ratchet/core';
import type { Ratchet } from './client.js';

/** The header by which the Ratchet gateway names the interaction it logged for a call. */
export const INTERACTION_ID_HEADER = 'x-ratchet-interaction-id';
/** The header with the token that lets the call's end user rate it with the public key. */
export const FEEDBACK_TOKEN_HEADER = 'x-ratchet-feedback-token';

/** Per-call fields the gateway reads from headers; the wrapper reads (and strips) the same ones. */
const CONTEXT_HEADERS = {
  userId: 'x-ratchet-user-id',
  sessionId: 'x-ratchet-session-id',
  tags: 'x-ratchet-tags',
  metadata: 'x-ratchet-metadata',
} as const;

/** What wrapOpenAI attaches to each result (a completion, or a stream) as `_ratchet`. */
export interface RatchetResultInfo {
  interactionId: string;
  /** Its feedback token, once the interaction is logged (for a stream: after it is read). */
  feedbackToken(): Promise<string | undefined>;
}

/**
 * The part of an openai client that wrapOpenAI touches. Structural, so that the SDK neither
 * loads nor requires the `openai` package; the official client (v5 and later) fits it.
 */
export interface OpenAIClientLike {
  chat: { completions: { create: (body: never, options?: never) => unknown } };
}

export interface WrapOpenAIOptions {
  /** The route name recorded on every interaction (the gateway records it from `model`). */
  route?: string;
  /** Tags added to every interaction. */
  tags?: string[];
  /** Metadata added to every interaction. */
  metadata?: Record<string, unknown>;
}

interface ChatRequestBody {
  model: string;
  messages: ChatMessage[];
  stream?: boolean | null;
  user?: string;
  [key: string]: unknown;
}

interface RequestOptionsLike {
  headers?: unknown;
  [key: string]: unknown;
}

type CreateFn = (body: ChatRequestBody, options?: RequestOptionsLike) => unknown;

/** The openai client's APIPromise: a promise that also offers the raw response. */
interface APIPromiseLike extends PromiseLike<unknown> {
  _thenUnwrap?(transform: (data: unknown) => unknown): unknown;
  asResponse?(): Promise<unknown>;
}

interface ChatCompletionLike {
  model?: string;
  choices?: { message?: Record<string, unknown> | null; finish_reason?: string | null }[];
  usage?: OpenAIUsage | null;
}

interface HeadersLike {
  get(name: string): string | null;
}

interface CallContext {
  route?: string;
  userId?: string;
  sessionId?: string;
  tags?: string[];
  metadata?: Record<string, unknown>;
}

/** Fields that describe the call rather than parameterize the model (as in the gateway). */
const NOT_PARAMETERS = new Set(['model', 'messages', 'stream', 'user']);

const WRAPPED = Symbol.for('ratchet.wrapOpenAI');

/**
 * Makes `client.chat.completions.create` log every call to Ratchet: messages, output, model,
 * parameters, latency, usage, end user, for streamed calls too (the answer is assembled as the
 * app reads the stream). Returns the same client. For apps that call a provider directly; apps
 * that call the Ratchet gateway are logged by it and need no wrapper (see `interactionIdOf`).
 *
 * The interaction id is on each result: `ratchetInteractionId(result)`. Per-call end user,
 * session, tags and metadata go in the same `x-ratchet-*` headers the gateway reads, passed as
 * request options; the wrapper takes them out before the request leaves for the provider.
 */
export function wrapOpenAI<C extends OpenAIClientLike>(
  client: C,
  ratchet: Ratchet,
  options: WrapOpenAIOptions = {},
): C {
  const completions = client.chat.completions as unknown as { create: CreateFn; [WRAPPED]?: true };
  if (completions[WRAPPED]) return client;
  const original = completions.create.bind(completions);
  completions.create = (body, requestOptions) =>
    createAndLog({ original, client, ratchet, options }, body, requestOptions);
  completions[WRAPPED] = true;
  return client;
}

/** The interaction id wrapOpenAI attached to a completion or stream, if it did. */
export function ratchetInteractionId(result: object): string | undefined {
  return (result as { _ratchet?: RatchetResultInfo })._ratchet?.interactionId;
}

/**
 * The feedback token of a completion or stream wrapOpenAI logged: hand it to the page with the
 * interaction id so the user's browser can rate the answer with the public key.
 */
export function ratchetFeedbackToken(result: object): Promise<string | undefined> {
  return (result as { _ratchet?: RatchetResultInfo })._ratchet?.feedbackToken() ?? Promise.resolve(undefined);
}

/**
 * The feedback token the Ratchet gateway returned for a call (see `interactionIdOf`).
 */
export function feedbackTokenOf(
  source: { headers: HeadersLike } | { response: { headers: HeadersLike } },
): string | undefined {
  const headers = 'headers' in source ? source.headers : source.response.headers;
  return headers.get(FEEDBACK_TOKEN_HEADER) ?? undefined;
}

/**
 * The id of the interaction the Ratchet gateway logged for a call, from its response: pass the
 * `Response` (or the whole `{ data, response }`) that the openai client's `.withResponse()` gives.
 */
export function interactionIdOf(
  source: { headers: HeadersLike } | { response: { headers: HeadersLike } },
): string | undefined {
  const headers = 'headers' in source ? source.headers : source.response.headers;
  return headers.get(INTERACTION_ID_HEADER) ?? undefined;
}

interface Wrapping {
  original: CreateFn;
  client: unknown;
  ratchet: Ratchet;
  options: WrapOpenAIOptions;
}

function createAndLog(
  { original, client, ratchet, options }: Wrapping,
  body: ChatRequestBody,
  requestOptions: RequestOptionsLike | undefined,
): unknown {
  const { context, forwarded } = splitRatchetHeaders(requestOptions, ratchet);
  const call = new CallRecorder(ratchet, body, {
    route: options.route,
    userId: context.userId,
    sessionId: context.sessionId,
    tags: options.tags || context.tags ? [...(options.tags ?? []), ...(context.tags ?? [])] : undefined,
    metadata: { ...options.metadata, ...context.metadata },
  });
  let result: unknown;
  try {
    result = original(body, forwarded);
  } catch (err) {
    call.failed(err);
    throw err;
  }
  const onData = (data: unknown): unknown => {
    try {
      return isStream(data)
        ? tapStream(data, call, client)
        : recordCompletion(data as ChatCompletionLike, call);
    } catch (err) {
      // A logging bug must never change what the app gets back.
      ratchet.reportError(err);
      return data;
    }
  };
  const apiPromise = result as APIPromiseLike;
  if (typeof apiPromise._thenUnwrap === 'function' && typeof apiPromise.asResponse === 'function') {
    // asResponse() sees failures without reading the body, which stays the app's to parse;
    // _thenUnwrap keeps the APIPromise (so `.withResponse()` still works) with our hook in it.
    apiPromise.asResponse().catch((err: unknown) => call.failed(err));
    return apiPromise._thenUnwrap(onData);
  }
  return Promise.resolve(result).then(onData, (err: unknown) => {
    call.failed(err);
    throw err;
  });
}

function isStream(data: unknown): data is AsyncIterable<ChatCompletionChunkLike> {
  return (
    typeof data === 'object' &&
    data !== null &&
    Symbol.asyncIterator in data &&
    !('choices' in (data as Record<string, unknown>))
  );
}

function recordCompletion(completion: ChatCompletionLike, call: CallRecorder): ChatCompletionLike {
  const choice = completion.choices?.[0];
  call.succeeded(compactMessage(choice?.message), {
    usage: toUsage(completion.usage),
    finishReason: choice?.finish_reason ?? undefined,
    responseModel: completion.model,
  });
  attachInfo(completion, call);
  return completion;
}

type StreamConstructor = new (
  iterator: () => AsyncIterator<ChatCompletionChunkLike>,
  controller: AbortController,
  client?: unknown,
) => AsyncIterable<ChatCompletionChunkLike>;

/**
 * Returns a stream that yields the same chunks and logs the assembled answer when the app has
 * read it (or stopped reading). An openai `Stream` is rebuilt as a `Stream` of the same class,
 * so `tee()`, `toReadableStream()` and `controller` keep working.
 */
function tapStream(
  stream: AsyncIterable<ChatCompletionChunkLike>,
  call: CallRecorder,
  client: unknown,
): unknown {
  const iterate = () => readAndAssemble(stream, call);
  const controller = (stream as { controller?: unknown }).controller;
  const tapped =
    controller instanceof AbortController && typeof stream.constructor === 'function'
      ? new (stream.constructor as StreamConstructor)(iterate, controller, client)
      : { [Symbol.asyncIterator]: iterate };
  attachInfo(tapped, call);
  return tapped;
}

async function* readAndAssemble(
  source: AsyncIterable<ChatCompletionChunkLike>,
  call: CallRecorder,
): AsyncGenerator<ChatCompletionChunkLike> {
  const assembler = new ChatStreamAssembler();
  let settled = false;
  const outcome = (extra: Record<string, unknown> = {}) => ({
    usage: assembler.usage,
    finishReason: assembler.finishReason,
    responseModel: assembler.responseModel,
    extra: { streamed: true, ...extraChoicesMetadata(assembler.choices()), ...extra },
  });
  try {
    for await (const chunk of source) {
      if (assembler.chunks === 0) call.firstChunk();
      assembler.add(chunk);
      yield chunk;
    }
    settled = true;
    call.succeeded(assembler.message(), outcome());
  } catch (err) {
    settled = true;
    call.failed(err, assembler.message(), outcome());
    throw err;
  } finally {
    // The app stopped reading early: log what it saw.
    // Logged as the gateway logs a stream its client closed early: `aborted`, with what was read.
    if (!settled) call.aborted(assembler.message(), outcome({ abandoned: true }));
  }
}

interface Outcome {
  usage?: Usage;
  finishReason?: string;
  responseModel?: string;
  extra?: Record<string, unknown>;
}

/** One wrapped call: its id, timing and context, logged exactly once however it ends. */
class CallRecorder {
  readonly id: string;
  private readonly started = performance.now();
  private readonly createdAt = Date.now();
  private firstChunkMs: number | undefined;
  private logged = false;

  constructor(
    private readonly ratchet: Ratchet,
    private readonly body: ChatRequestBody,
    private readonly context: CallContext,
  ) {
    // A stream's id is known before its answer; reserving it holds feedback on it until it is logged.
    this.id = body.stream === true ? ratchet.reserveInteractionId() : newId();
  }

  feedbackToken(): Promise<string | undefined> {
    return this.ratchet.feedbackToken(this.id);
  }

  firstChunk(): void {
    this.firstChunkMs = performance.now() - this.started;
  }

  succeeded(output: ChatMessage, outcome: Outcome): void {
    this.log({ output, usage: outcome.usage, status: 'ok' }, outcome);
  }

  aborted(partial: ChatMessage, outcome: Outcome): void {
    this.log({ output: partial, usage: outcome.usage, status: 'aborted' }, outcome);
  }

  failed(error: unknown, partial?: ChatMessage, outcome: Outcome = {}): void {
    const message = error instanceof Error ? error.message : String(error);
    this.log(
      {
        output: partial ?? { role: 'assistant', content: '' },
        usage: outcome.usage,
        status: 'error',
        error: message.slice(0, 10_000),
      },
      outcome,
    );
  }

  private log(
    fields: Pick<InteractionInput, 'output' | 'usage' | 'status' | 'error'>,
    outcome: Outcome,
  ): void {
    if (this.logged) return;
    this.logged = true;
    const metadata: Record<string, unknown> = { ...this.context.metadata, ...outcome.extra };
    if (outcome.finishReason) metadata.finishReason = outcome.finishReason;
    if (outcome.responseModel && outcome.responseModel !== this.body.model)
      metadata.responseModel = outcome.responseModel;
    if (this.firstChunkMs !== undefined) metadata.timeToFirstChunkMs = Math.round(this.firstChunkMs);
    try {
      this.ratchet.logInteraction({
        id: this.id,
        route: this.context.route,
        model: this.body.model,
        messages: this.body.messages,
        parameters: Object.fromEntries(Object.entries(this.body).filter(([k]) => !NOT_PARAMETERS.has(k))),
        latencyMs: performance.now() - this.started,
        userId: this.context.userId ?? this.body.user,
        sessionId: this.context.sessionId,
        tags: this.context.tags,
        metadata,
        createdAt: this.createdAt,
        ...fields,
      });
    } catch (err) {
      this.ratchet.releaseInteractionId(this.id);
      this.ratchet.reportError(err);
    }
  }
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The answer's message without the null and empty fields providers add (refusal: null, annotations: []). */
function compactMessage(message: Record<string, unknown> | null | undefined): ChatMessage {
  if (!message) return { role: 'assistant', content: '' };
  const kept = Object.entries(message).filter(
    ([key, value]) =>
      key === 'content' ||
      (value !== null && value !== undefined && !(Array.isArray(value) && value.length === 0)),
  );
  return { role: 'assistant', ...Object.fromEntries(kept) } as ChatMessage;
}

function attachInfo(target: object, call: CallRecorder): void {
  // Not enumerable: the result serializes exactly as the provider sent it.
  Object.defineProperty(target, '_ratchet', {
    value: {
      interactionId: call.id,
      feedbackToken: () => call.feedbackToken(),
    } satisfies RatchetResultInfo,
    enumerable: false,
    configurable: true,
  });
}

function headerEntries(headers: unknown): [string, string | null][] {
  if (!headers) return [];
  if (typeof (headers as Headers).forEach === 'function' && typeof (headers as Headers).get === 'function') {
    const out: [string, string][] = [];
    (headers as Headers).forEach((value, name) => {
      out.push([name, value]);
    });
    return out;
  }
  if (Array.isArray(headers)) return headers as [string, string | null][];
  if (typeof headers === 'object') return Object.entries(headers as Record<string, string | null>);
  return [];
}

/**
 * Takes the `x-ratchet-*` headers out of a call's request options: they are for Ratchet, and
 * the provider has no business seeing the app's user ids or metadata.
 */
function splitRatchetHeaders(
  requestOptions: RequestOptionsLike | undefined,
  ratchet: Ratchet,
): { context: CallContext; forwarded: RequestOptionsLike | undefined } {
  const entries = headerEntries(requestOptions?.headers);
  const ours = new Map<string, string>();
  for (const [name, value] of entries) {
    if (name.toLowerCase().startsWith('x-ratchet-') && typeof value === 'string')
      ours.set(name.toLowerCase(), value);
  }
  if (ours.size === 0) return { context: {}, forwarded: requestOptions };
  const others = entries.filter(([name]) => !name.toLowerCase().startsWith('x-ratchet-'));
  const context: CallContext = {
    userId: ours.get(CONTEXT_HEADERS.userId),
    sessionId: ours.get(CONTEXT_HEADERS.sessionId),
  };
  const tags = ours.get(CONTEXT_HEADERS.tags);
  if (tags)
    context.tags = tags
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
  const metadata = ours.get(CONTEXT_HEADERS.metadata);
  if (metadata) {
    try {
      context.metadata = JSON.parse(metadata) as Record<string, unknown>;
    } catch {
      ratchet.reportError(new Error(`${CONTEXT_HEADERS.metadata}: not JSON; ignored`));
    }
  }
  return {
    context: withoutUndefined(context),
    forwarded: { ...requestOptions, headers: Object.fromEntries(others) },
  };
}
