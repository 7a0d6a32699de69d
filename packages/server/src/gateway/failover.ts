import type { Readable } from 'node:stream';
import { RatchetError } from '@ratchet/core';
import type { FailoverConfig, GatewayConfig, UpstreamConfig } from './config.js';
import type { UpstreamResponse } from './providers/types.js';

/** Why a try failed, as the failures metric counts it. */
export function failureReason(a: Attempt): string | undefined {
  if (a.status === 429) return '429';
  if (a.status !== undefined && a.status >= 500) return '5xx';
  if (a.error === undefined) return undefined;
  if (a.error === 'circuit open') return 'circuit_open';
  if (a.error === 'retry budget spent') return 'budget';
  // A timeout or a broken connection, before the answer's head or while its body was read.
  return a.error.startsWith('timeout') ? 'timeout' : 'connection';
}

/** One upstream and model a call may be sent to: the variant's, then each fallback's. */
export interface Candidate {
  upstreamName: string;
  model: string;
}

/** One try of a call, as logged on the interaction (`metadata.attempts`). */
export interface Attempt {
  upstream: string;
  model: string;
  /** The upstream's HTTP status, when it answered. */
  status?: number;
  /** Why the try failed or was skipped (a refused connection, a timeout, an open circuit). */
  error?: string;
  durationMs: number;
}

/**
 * What a call got: the answer of the last try (a stream whose first chunk has arrived, or a whole
 * body), which candidate gave it, and every try. `settle` ends the try's timers; call it when
 * the answer has been consumed.
 */
export interface Answered {
  status: number;
  contentType: string | undefined;
  /** A streamed answer (200 text/event-stream), its first chunk already read and put back. */
  stream?: Readable;
  /** Any other answer, read whole. */
  raw?: Buffer;
  served: Candidate;
  attempts: Attempt[];
}

export type Send = (candidate: Candidate, signal: AbortSignal) => Promise<UpstreamResponse>;

/** The client went away before any upstream answered: nothing to send, the call is logged aborted. */
export class ClientGone extends Error {
  constructor(readonly attempts: Attempt[]) {
    super('the client closed the connection');
  }
}

/** Statuses worth another try elsewhere: rate limited, or the upstream's own failure. */
function retryable(status: number): boolean {
  return status === 429 || status >= 500;
}

interface CircuitState {
  failures: number;
  openedAt: number | undefined;
  probing: boolean;
}

/**
 * A circuit breaker per upstream: closed (calls pass) until `failures` calls in a row fail, then
 * open (the upstream is skipped) for `openMs`, then half-open: one call probes it, and its
 * success closes the circuit while its failure opens it again.
 */
export class CircuitBreakers {
  private readonly states = new Map<string, CircuitState>();

  constructor(
    private readonly upstream: (name: string) => UpstreamConfig,
    private readonly now: () => number = Date.now,
  ) {}

  private state(name: string): CircuitState {
    let s = this.states.get(name);
    if (!s) {
      s = { failures: 0, openedAt: undefined, probing: false };
      this.states.set(name, s);
    }
    return s;
  }

  /** Whether a call may go to the upstream now; a half-open circuit lets exactly one through. */
  allow(name: string): boolean {
    const s = this.states.get(name);
    if (!s || s.openedAt === undefined) return true;
    if (this.now() - s.openedAt < this.upstream(name).circuit.openMs || s.probing) return false;
    s.probing = true;
    return true;
  }

  succeeded(name: string): void {
    this.states.delete(name);
  }

  failed(name: string): void {
    const s = this.state(name);
    s.failures += 1;
    if (s.probing || s.failures >= this.upstream(name).circuit.failures) {
      s.openedAt = this.now();
      s.probing = false;
    }
  }

  /** A probe that ended without a verdict (the client left): the next call probes instead. */
  released(name: string): void {
    const s = this.states.get(name);
    if (s) s.probing = false;
  }

  /** `closed`, `open` or `half-open` (open, but its wait is over), for tests and metrics. */
  stateOf(name: string): 'closed' | 'open' | 'half-open' {
    const s = this.states.get(name);
    if (!s || s.openedAt === undefined) return 'closed';
    return this.now() - s.openedAt < this.upstream(name).circuit.openMs ? 'open' : 'half-open';
  }
}

const WINDOW_MS = 10_000;

/**
 * How many extra tries (retries and fallbacks) the gateway may make: `ratio` per call plus
 * `minPerSecond`, counted over a 10 s window, so that an outage cannot multiply the load on the
 * upstreams that are still up.
 */
export class RetryBudget {
  private windowStart = 0;
  private calls = 0;
  private extra = 0;

  constructor(
    private readonly budget: GatewayConfig['retryBudget'],
    private readonly now: () => number = Date.now,
  ) {}

  private roll(): void {
    const t = this.now();
    if (t - this.windowStart >= WINDOW_MS) {
      this.windowStart = t;
      this.calls = 0;
      this.extra = 0;
    }
  }

  call(): void {
    this.roll();
    this.calls += 1;
  }

  /** Takes one extra try from the budget, or says there is none left. */
  spend(): boolean {
    this.roll();
    const allowed = this.budget.minPerSecond * (WINDOW_MS / 1000) + this.budget.ratio * this.calls;
    if (this.extra + 1 > allowed) return false;
    this.extra += 1;
    return true;
  }
}

/** The wait before retry number `retry` (1, 2, …): uniform in [0, backoffMs·2^(retry-1)) ("full jitter"). */
export function backoffDelay(retry: number, backoffMs: number, random: () => number = Math.random): number {
  return random() * backoffMs * 2 ** (retry - 1);
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (ms <= 0 || signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/** The first chunk of a stream, put back so that whoever reads the stream next gets all of it; null at an empty end. */
function firstChunk(body: Readable): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      cleanup();
      body.pause();
      body.unshift(chunk);
      resolve(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(null);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
  });
}

export async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  const text = `${typeof code === 'string' ? `${code} ` : ''}${err.message}${cause}`;
  // undici's connect, head and body timeouts (UND_ERR_CONNECT_TIMEOUT, ...) are timeouts too.
  return typeof code === 'string' && code.endsWith('_TIMEOUT') ? `timeout: ${text}` : text;
}

/**
 * One try's signal: aborted when the client goes away, at the total timeout (`totalTimeoutMs`),
 * and at the first-token timeout until `gotFirstByte` is called. `settle` clears what is left.
 * (undici itself enforces `connectTimeoutMs` and `timeoutMs`, the head and idle-body waits.)
 */
function trySignal(client: AbortSignal, upstream: UpstreamConfig) {
  // Without timeouts the client's own signal is all a try needs: no second AbortSignal and
  // listener on every call (Node's are slow to make: microseconds each, on the hot path).
  if (upstream.totalTimeoutMs === undefined && upstream.firstTokenTimeoutMs === undefined)
    return { signal: client, reason: () => undefined, gotFirstByte() {}, settle() {} };
  const controller = new AbortController();
  let reason: string | undefined;
  const stop = (why: string) => {
    reason ??= why;
    controller.abort(new Error(why));
  };
  const onClient = () => stop('the client closed the connection');
  client.addEventListener('abort', onClient, { once: true });
  const totalMs = upstream.totalTimeoutMs;
  const total =
    totalMs === undefined
      ? undefined
      : setTimeout(() => stop(`timeout: no complete answer in ${totalMs} ms`), totalMs);
  const firstMs = upstream.firstTokenTimeoutMs;
  let first =
    firstMs === undefined
      ? undefined
      : setTimeout(() => stop(`timeout: no first byte in ${firstMs} ms`), firstMs);
  return {
    signal: controller.signal,
    reason: () => reason,
    gotFirstByte() {
      clearTimeout(first);
      first = undefined;
    },
    settle() {
      clearTimeout(first);
      clearTimeout(total);
      client.removeEventListener('abort', onClient);
    },
  };
}

/**
 * Sends a call to its candidates in order until one answers: on a refused or broken connection,
 * a timeout, 429 or 5xx it retries the same upstream (`retries`, jittered backoff) and then moves
 * to the next fallback, within the retry budget and skipping upstreams whose circuit is open.
 * A stream counts as answered at its first chunk (nothing has reached the client before). When
 * every try failed, the last upstream's own error answer is returned (its status kept), or, when
 * none answered, a 502 naming every try.
 */
export class Failover {
  readonly breakers: CircuitBreakers;
  private readonly budget: RetryBudget;

  constructor(private readonly config: GatewayConfig) {
    this.breakers = new CircuitBreakers((name) => config.upstreams[name]!);
    this.budget = new RetryBudget(config.retryBudget);
  }

  async call(
    candidates: Candidate[],
    policy: FailoverConfig | undefined,
    send: Send,
    client: AbortSignal,
  ): Promise<Answered> {
    this.budget.call();
    const attempts: Attempt[] = [];
    const retries = policy?.retries ?? 0;
    const backoffMs = policy?.backoffMs ?? 0;
    let lastAnswer: Answered | undefined;
    let tries = 0;
    for (const candidate of candidates) {
      for (let retry = 0; retry <= retries; retry++) {
        if (client.aborted) throw new ClientGone(attempts);
        if (!this.breakers.allow(candidate.upstreamName)) {
          attempts.push({ ...this.label(candidate), error: 'circuit open', durationMs: 0 });
          break;
        }
        if (tries > 0 && !this.budget.spend()) {
          this.breakers.released(candidate.upstreamName);
          attempts.push({ ...this.label(candidate), error: 'retry budget spent', durationMs: 0 });
          return this.giveUp(attempts, lastAnswer);
        }
        if (retry > 0) await sleep(backoffDelay(retry, backoffMs), client);
        tries += 1;
        const outcome = await this.try(candidate, send, client, attempts);
        if (outcome === 'aborted') {
          this.breakers.released(candidate.upstreamName);
          throw new ClientGone(attempts);
        }
        if (outcome.kind === 'answered') {
          this.breakers.succeeded(candidate.upstreamName);
          return outcome.answer;
        }
        this.breakers.failed(candidate.upstreamName);
        if (outcome.answer) lastAnswer = outcome.answer;
      }
    }
    return this.giveUp(attempts, lastAnswer);
  }

  private label(candidate: Candidate) {
    return { upstream: candidate.upstreamName, model: candidate.model };
  }

  private giveUp(attempts: Attempt[], lastAnswer: Answered | undefined): Answered {
    if (lastAnswer) return { ...lastAnswer, attempts };
    const tried = attempts.map((a) => `${a.upstream}: ${a.status ?? a.error}`).join('; ');
    throw new FailoverExhausted(`no upstream answered (${tried})`, attempts);
  }

  /** One try: answered (a non-failing status, a stream's first chunk), failed (with the upstream's answer, if any), or aborted by the client. */
  private async try(
    candidate: Candidate,
    send: Send,
    client: AbortSignal,
    attempts: Attempt[],
  ): Promise<{ kind: 'answered'; answer: Answered } | { kind: 'failed'; answer?: Answered } | 'aborted'> {
    const upstream = this.config.upstreams[candidate.upstreamName]!;
    const started = performance.now();
    const t = trySignal(client, upstream);
    const attempt: Attempt = { ...this.label(candidate), durationMs: 0 };
    attempts.push(attempt);
    const took = () => Math.round((performance.now() - started) * 10) / 10;
    try {
      const res = await send(candidate, t.signal);
      attempt.status = res.status;
      const answer: Answered = {
        status: res.status,
        contentType: res.contentType,
        served: candidate,
        attempts,
      };
      if (res.status === 200 && (res.contentType ?? '').includes('text/event-stream')) {
        await firstChunk(res.body);
        t.gotFirstByte();
        res.body.once('close', t.settle);
        attempt.durationMs = took();
        return { kind: 'answered', answer: { ...answer, stream: res.body } };
      }
      answer.raw = await readAll(res.body);
      t.settle();
      attempt.durationMs = took();
      if (!retryable(res.status)) return { kind: 'answered', answer };
      attempt.error = answer.raw.toString('utf8').slice(0, 300);
      return { kind: 'failed', answer };
    } catch (err) {
      t.settle();
      attempt.durationMs = took();
      if (client.aborted) {
        attempt.error = 'the client closed the connection';
        return 'aborted';
      }
      // A translation the provider refused (a field it has no form for) is the client's 4xx, not a failure.
      if (err instanceof RatchetError) throw err;
      attempt.error = t.reason() ?? describe(err);
      return { kind: 'failed' };
    }
  }
}

/** Every try failed without an answer to pass on (refused, timed out, circuits open). */
export class FailoverExhausted extends Error {
  constructor(
    message: string,
    readonly attempts: Attempt[],
  ) {
    super(message);
  }
}
