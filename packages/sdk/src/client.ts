import {
  apiKeyKindOf,
  FeedbackInput,
  InteractionInput,
  newId,
  parseInput,
  referencedInteractionIds,
} from '@ratchet/core';
import {
  RatchetApiError,
  RatchetDeliveryError,
  RatchetFlushError,
  RatchetQueueFullError,
  RatchetSdkError,
} from './errors.js';
import { Transport } from './transport.js';

/** What the server answers for each written item (`created: false`: an idempotent repeat). */
export interface WriteResult {
  id: string;
  created: boolean;
  /** Interactions only: the token a browser sends (with the public key) to rate this interaction. */
  feedbackToken?: string;
}

export interface RatchetOptions {
  /** The Ratchet server's root, e.g. `http://localhost:4400`. */
  baseUrl: string;
  /** A project key: `rk_sec_...` (everything) or `rk_pub_...` (feedback only, safe in a browser). */
  apiKey: string;
  /** Queued items are sent at least this often (default 1000 ms). */
  flushIntervalMs?: number;
  /** Items per request, and the queue length that triggers a send before the interval (default 100, at most 1000). */
  maxBatchSize?: number;
  /** Retries after a network error, timeout, 429 or 5xx (default 5). */
  maxRetries?: number;
  /** First backoff delay; doubles per retry (default 250 ms). */
  retryBaseDelayMs?: number;
  /** Largest backoff delay (default 10 s). */
  retryMaxDelayMs?: number;
  /** Per request attempt (default 10 s). */
  timeoutMs?: number;
  /** Items kept while the server is unreachable; beyond this the oldest are dropped (default 10,000). */
  maxQueueSize?: number;
  /** How long feedback waits for an interaction whose id was reserved but not yet logged (default 5 min). */
  maxHoldMs?: number;
  /** Send what is queued when the process is about to exit on its own (default true). */
  flushOnExit?: boolean;
  /** Receives every error of background delivery: items the server rejected or that could not be delivered. */
  onError?: (error: RatchetSdkError) => void;
  fetch?: typeof fetch;
}

type QueuedInteraction = InteractionInput & { id: string };
type QueuedFeedback = FeedbackInput & { idempotencyKey: string };

/** The server takes at most this many items per request. */
const SERVER_MAX_BATCH = 1000;

const INTERACTIONS_PATH = '/api/v1/interactions';
/** Feedback tokens kept for interactions this client logged (the most recent ones). */
const MAX_KEPT_TOKENS = 10_000;
const FEEDBACK_PATH = '/api/v1/feedback';

/** The index of the batch item a 4xx names (`items.3.value` -> 3), if it names one. */
function rejectedItemIndex(error: RatchetApiError, batchLength: number): number | undefined {
  const match = /^items\.(\d+)(?:\.|$)/.exec(error.path ?? '');
  if (!match) return undefined;
  const index = Number(match[1]);
  return index < batchLength ? index : undefined;
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function defaultOnError(error: RatchetSdkError): void {
  console.warn(`[ratchet] ${error.message}`);
}

interface Delivery<T> {
  /** Items that could not be delivered for now (network, 429, 5xx after every retry). */
  undelivered: T[];
  failure?: RatchetDeliveryError;
}

/**
 * The client applications use to log interactions and send feedback. Writes are queued and sent
 * in batches in the background; every item carries a client-made id (interactions) or
 * idempotency key (feedback), so retries after a lost answer never write anything twice.
 * Interactions are always delivered before feedback that refers to them.
 */
export class Ratchet {
  private readonly transport: Transport;
  private readonly settings: Required<Omit<RatchetOptions, 'baseUrl' | 'apiKey' | 'fetch' | 'onError'>>;
  private readonly onError: (error: RatchetSdkError) => void;
  private interactions: QueuedInteraction[] = [];
  private feedbackQueue: QueuedFeedback[] = [];
  /** A browser's key: feedback only, each item with its interaction's feedback token. */
  private readonly publicKey: boolean;
  /** Feedback tokens the server returned for interactions this client logged, oldest first. */
  private readonly feedbackTokens = new Map<string, string>();
  /** Ids of interactions queued or being sent, so direct feedback on them can wait for them. */
  private readonly unsentInteractionIds = new Set<string>();
  /** Ids handed out for calls still running (e.g. streams), with when: feedback on them waits. */
  private readonly reserved = new Map<string, number>();
  private flushChain: Promise<void> = Promise.resolve();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private backgroundFlushRunning = false;
  private closing: Promise<void> | undefined;
  private readonly exitHook: (() => void) | undefined;

  constructor(options: RatchetOptions) {
    if (!options.baseUrl) throw new TypeError('Ratchet: baseUrl is required');
    if (!options.apiKey) throw new TypeError('Ratchet: apiKey is required');
    this.settings = {
      flushIntervalMs: options.flushIntervalMs ?? 1000,
      maxBatchSize: Math.min(Math.max(1, options.maxBatchSize ?? 100), SERVER_MAX_BATCH),
      maxRetries: options.maxRetries ?? 5,
      retryBaseDelayMs: options.retryBaseDelayMs ?? 250,
      retryMaxDelayMs: options.retryMaxDelayMs ?? 10_000,
      timeoutMs: options.timeoutMs ?? 10_000,
      maxQueueSize: options.maxQueueSize ?? 10_000,
      maxHoldMs: options.maxHoldMs ?? 5 * 60_000,
      flushOnExit: options.flushOnExit ?? true,
    };
    this.onError = options.onError ?? defaultOnError;
    this.publicKey = apiKeyKindOf(options.apiKey) === 'public';
    this.transport = new Transport({
      baseUrl: options.baseUrl,
      apiKey: options.apiKey,
      timeoutMs: this.settings.timeoutMs,
      fetch: options.fetch ?? globalThis.fetch,
      retry: {
        maxRetries: this.settings.maxRetries,
        baseDelayMs: this.settings.retryBaseDelayMs,
        maxDelayMs: this.settings.retryMaxDelayMs,
      },
    });
    if (this.settings.flushOnExit && typeof process !== 'undefined' && typeof process.on === 'function') {
      // beforeExit fires when the event loop runs dry, i.e. the app is done but has not called
      // shutdown(); sending then keeps the last writes. (An explicit process.exit() skips it.)
      this.exitHook = () => {
        if (this.queuedCount() > 0) void this.shutdown().catch(() => undefined);
      };
      process.on('beforeExit', this.exitHook);
    }
  }

  /** Items waiting to be sent. */
  get pending(): { interactions: number; feedback: number } {
    return { interactions: this.interactions.length, feedback: this.feedbackQueue.length };
  }

  /**
   * Queues an interaction and returns its id at once (the given `id`, or a new UUIDv7), so the
   * app can attach feedback before it is even sent. Throws a RatchetError naming the field when
   * the input is invalid.
   */
  logInteraction(input: InteractionInput): string {
    const item = this.prepareInteraction(input);
    this.reserved.delete(item.id);
    if (this.closing) {
      this.report(new RatchetSdkError('logInteraction after shutdown(); not sent', [item]));
      return item.id;
    }
    this.unsentInteractionIds.add(item.id);
    this.enqueue(this.interactions, item);
    return item.id;
  }

  /**
   * Queues a feedback event and returns its idempotency key (the given one, or a new one), which
   * makes every retry of it safe. Throws a RatchetError naming the field when the input is invalid.
   */
  feedback(input: FeedbackInput): string {
    const item = this.prepareFeedback(input);
    if (this.closing) {
      this.report(new RatchetSdkError('feedback after shutdown(); not sent', [item]));
      return item.idempotencyKey;
    }
    this.enqueue(this.feedbackQueue, item);
    return item.idempotencyKey;
  }

  /**
   * A new interaction id for a call that is still running (a stream): feedback that refers to it
   * is held back until `logInteraction({ id, ... })` is called with it, `releaseInteractionId`
   * gives up on it, or `maxHoldMs` passes.
   */
  reserveInteractionId(): string {
    const id = newId();
    this.reserved.set(id, Date.now());
    return id;
  }

  /** Stops holding feedback for a reserved id (the call was abandoned without being logged). */
  releaseInteractionId(id: string): void {
    this.reserved.delete(id);
  }

  /**
   * Sends everything queued so far and resolves when the server has committed it. Rejects with a
   * RatchetFlushError if items were rejected (4xx) or could not be delivered; undelivered items
   * stay queued for the next attempt.
   */
  flush(): Promise<void> {
    return this.chainFlush(false);
  }

  /**
   * Sends everything left, including feedback still waiting for reserved ids, and stops the
   * background timer. Items that cannot be delivered are reported and dropped.
   */
  shutdown(): Promise<void> {
    if (this.closing) return this.closing;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.exitHook) process.off('beforeExit', this.exitHook);
    this.closing = this.chainFlush(true);
    return this.closing;
  }

  /** Writes interactions now (all or nothing) and returns the server's answer; nothing is queued. */
  sendInteractions(input: InteractionInput): Promise<WriteResult>;
  sendInteractions(input: InteractionInput[]): Promise<WriteResult[]>;
  async sendInteractions(input: InteractionInput | InteractionInput[]): Promise<WriteResult | WriteResult[]> {
    const items = (Array.isArray(input) ? input : [input]).map((i) => this.prepareInteraction(i));
    const results = await this.sendNow(INTERACTIONS_PATH, items);
    return Array.isArray(input) ? results : results[0]!;
  }

  /**
   * Writes feedback now (all or nothing) and returns the server's answer; nothing is queued. If it
   * refers to interactions still in this client's queue, those are sent first.
   */
  sendFeedback(input: FeedbackInput): Promise<WriteResult>;
  sendFeedback(input: FeedbackInput[]): Promise<WriteResult[]>;
  async sendFeedback(input: FeedbackInput | FeedbackInput[]): Promise<WriteResult | WriteResult[]> {
    const items = (Array.isArray(input) ? input : [input]).map((f) => this.prepareFeedback(f));
    if (items.some((f) => referencedInteractionIds(f).some((id) => this.unsentInteractionIds.has(id)))) {
      // Errors of this flush went to onError; if the interaction did not make it, the server's 404 says so.
      await this.flush().catch(() => undefined);
    }
    const results = await this.sendNow(FEEDBACK_PATH, items);
    return Array.isArray(input) ? results : results[0]!;
  }

  /**
   * The feedback token of an interaction this client logged (sent first if still queued), for the
   * application's server to hand to its page: the browser sends it with the public key to rate
   * the interaction. Undefined when the interaction was not delivered (or a stream not yet read).
   */
  async feedbackToken(interactionId: string): Promise<string | undefined> {
    if (this.unsentInteractionIds.has(interactionId)) await this.flush().catch(() => undefined);
    return this.feedbackTokens.get(interactionId);
  }

  private rememberTokens(results: readonly WriteResult[] | undefined): void {
    for (const r of results ?? []) {
      if (!r.feedbackToken) continue;
      this.feedbackTokens.delete(r.id);
      this.feedbackTokens.set(r.id, r.feedbackToken);
      if (this.feedbackTokens.size > MAX_KEPT_TOKENS)
        this.feedbackTokens.delete(this.feedbackTokens.keys().next().value!);
    }
  }

  /**
   * Hands an error to `onError`. For integrations (like wrapOpenAI) that log on the app's behalf
   * and must never throw into it.
   */
  reportError(error: unknown): void {
    this.report(
      error instanceof RatchetSdkError
        ? error
        : new RatchetSdkError(error instanceof Error ? error.message : String(error), [], { cause: error }),
    );
  }

  private prepareInteraction(input: InteractionInput): QueuedInteraction {
    const item: QueuedInteraction = {
      ...input,
      id: input.id ?? newId(),
      source: input.source ?? 'sdk',
      createdAt: input.createdAt ?? Date.now(),
    };
    parseInput(InteractionInput, item);
    return item;
  }

  private prepareFeedback(input: FeedbackInput): QueuedFeedback {
    // Timestamped when it happened, not when a batch finally got through. Not with a public key:
    // the server uses its own time then (and a browser's clock may run ahead).
    const item = {
      ...input,
      idempotencyKey: input.idempotencyKey ?? newId(),
      ...(this.publicKey ? {} : { createdAt: input.createdAt ?? Date.now() }),
    } as QueuedFeedback;
    parseInput(FeedbackInput, item);
    return item;
  }

  private async sendNow<T>(path: string, items: T[]): Promise<WriteResult[]> {
    try {
      const answer = await this.transport.post<{ items: WriteResult[] }>(path, { items });
      this.rememberTokens(answer.items);
      return answer.items;
    } catch (err) {
      if (err instanceof RatchetSdkError) err.items = items;
      throw err;
    }
  }

  private queuedCount(): number {
    return this.interactions.length + this.feedbackQueue.length;
  }

  private enqueue<T>(queue: T[], item: T): void {
    queue.push(item);
    if (this.queuedCount() > this.settings.maxQueueSize) this.dropOldest();
    if (this.queuedCount() >= this.settings.maxBatchSize) this.flushInBackground();
    else this.armTimer();
  }

  /** Bounds memory while the server is unreachable: the longer queue loses its oldest item. */
  private dropOldest(): void {
    const fromInteractions = this.interactions.length >= this.feedbackQueue.length;
    const dropped = fromInteractions ? this.interactions.shift() : this.feedbackQueue.shift();
    if (fromInteractions && dropped) this.unsentInteractionIds.delete((dropped as QueuedInteraction).id);
    this.report(
      new RatchetQueueFullError(`queue full (${this.settings.maxQueueSize} items); dropped the oldest item`, [
        dropped,
      ]),
    );
  }

  private armTimer(): void {
    if (this.timer || this.closing) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flushInBackground();
    }, this.settings.flushIntervalMs);
    // The timer alone must not keep a finished process alive; beforeExit sends what is left.
    if (typeof this.timer === 'object' && 'unref' in this.timer) this.timer.unref();
  }

  private flushInBackground(): void {
    if (this.backgroundFlushRunning || this.closing) return;
    this.backgroundFlushRunning = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.flush().then(
      () => {
        this.backgroundFlushRunning = false;
        if (this.queuedCount() >= this.settings.maxBatchSize && !this.hasOnlyHeld()) this.flushInBackground();
        else if (this.queuedCount() > 0) this.armTimer();
      },
      () => {
        // Already reported through onError; what is left waits for the next tick, not a tight loop.
        this.backgroundFlushRunning = false;
        if (this.queuedCount() > 0) this.armTimer();
      },
    );
  }

  private chainFlush(final: boolean): Promise<void> {
    const run = this.flushChain.then(() => this.flushOnce(final));
    this.flushChain = run.catch(() => undefined);
    return run;
  }

  /**
   * One pass over what is queued now: interactions first, then the feedback that is free to go.
   * Feedback waits whenever some interaction did not get through, since it may refer to it.
   */
  private async flushOnce(final: boolean): Promise<void> {
    const errors: RatchetSdkError[] = [];
    const interactions = this.interactions.splice(0);
    const feedback = this.feedbackQueue.splice(0);

    const sentInteractions = await this.deliver(INTERACTIONS_PATH, interactions, errors);
    const stillUnsent = new Set(sentInteractions.undelivered.map((i) => i.id));
    for (const i of interactions) if (!stillUnsent.has(i.id)) this.unsentInteractionIds.delete(i.id);

    let feedbackLeft: QueuedFeedback[] = feedback;
    let failure = sentInteractions.failure;
    if (!failure) {
      const ready: QueuedFeedback[] = [];
      const held: QueuedFeedback[] = [];
      for (const f of feedback) (!final && this.isHeld(f) ? held : ready).push(f);
      const sentFeedback = await this.deliver(FEEDBACK_PATH, ready, errors);
      feedbackLeft = [...sentFeedback.undelivered, ...held];
      failure = sentFeedback.failure;
    }

    if (final) {
      const dropped = [...sentInteractions.undelivered, ...(failure ? feedbackLeft : [])];
      if (failure) errors.push(this.dropped(failure, dropped));
      this.unsentInteractionIds.clear();
    } else {
      // Back to the front, so the next flush keeps the original order.
      this.interactions.unshift(...sentInteractions.undelivered);
      this.feedbackQueue.unshift(...feedbackLeft);
      if (failure)
        errors.push(this.requeued(failure, sentInteractions.undelivered.length + feedbackLeft.length));
    }
    for (const error of errors) this.report(error);
    if (errors.length > 0) throw new RatchetFlushError(errors);
  }

  private requeued(failure: RatchetDeliveryError, count: number): RatchetDeliveryError {
    return new RatchetDeliveryError(
      `${failure.message}; ${count} items stay queued for the next flush`,
      failure.attempts,
      failure.status,
      { cause: failure.cause },
    );
  }

  private dropped(failure: RatchetDeliveryError, items: unknown[]): RatchetDeliveryError {
    const error = new RatchetDeliveryError(
      `${failure.message}; dropped ${items.length} items at shutdown`,
      failure.attempts,
      failure.status,
      { cause: failure.cause },
    );
    error.items = items;
    return error;
  }

  private isHeld(f: FeedbackInput): boolean {
    const now = Date.now();
    return referencedInteractionIds(f).some((id) => {
      const since = this.reserved.get(id);
      if (since === undefined) return false;
      if (now - since <= this.settings.maxHoldMs) return true;
      this.reserved.delete(id);
      return false;
    });
  }

  private hasOnlyHeld(): boolean {
    return this.interactions.length === 0 && this.feedbackQueue.every((f) => this.isHeld(f));
  }

  /** Sends items in batches of maxBatchSize; stops at the first batch that cannot be delivered. */
  private async deliver<T>(path: string, items: T[], errors: RatchetSdkError[]): Promise<Delivery<T>> {
    const batches = chunks(items, this.settings.maxBatchSize);
    for (let b = 0; b < batches.length; b++) {
      const result = await this.deliverBatch(path, batches[b]!, errors);
      if (result.failure) {
        return {
          undelivered: [...result.undelivered, ...batches.slice(b + 1).flat()],
          failure: result.failure,
        };
      }
    }
    return { undelivered: [] };
  }

  /**
   * Sends one batch. The server writes a batch all or nothing, so when it rejects one item (the
   * error's path names it), that item is dropped and reported and the rest is sent again; a
   * body too large is split in half.
   */
  private async deliverBatch<T>(path: string, batch: T[], errors: RatchetSdkError[]): Promise<Delivery<T>> {
    let remaining = batch;
    while (remaining.length > 0) {
      try {
        const answer = await this.transport.post<{ items?: WriteResult[] }>(path, { items: remaining });
        this.rememberTokens(answer?.items);
        return { undelivered: [] };
      } catch (err) {
        if (err instanceof RatchetDeliveryError) return { undelivered: remaining, failure: err };
        if (!(err instanceof RatchetApiError)) throw err;
        const index = rejectedItemIndex(err, remaining.length);
        if (index !== undefined && remaining.length > 1) {
          err.items = [remaining[index]];
          errors.push(err);
          remaining = remaining.filter((_, i) => i !== index);
          continue;
        }
        if (err.status === 413 && remaining.length > 1) return this.deliverHalves(path, remaining, errors);
        err.items = remaining;
        errors.push(err);
        return { undelivered: [] };
      }
    }
    return { undelivered: [] };
  }

  private async deliverHalves<T>(path: string, items: T[], errors: RatchetSdkError[]): Promise<Delivery<T>> {
    const middle = Math.ceil(items.length / 2);
    const first = await this.deliverBatch(path, items.slice(0, middle), errors);
    if (first.failure)
      return { undelivered: [...first.undelivered, ...items.slice(middle)], failure: first.failure };
    return this.deliverBatch(path, items.slice(middle), errors);
  }

  private report(error: RatchetSdkError): void {
    try {
      this.onError(error);
    } catch {
      // A throwing onError must not break delivery of everything else.
    }
  }
}
