import { RatchetApiError, RatchetDeliveryError } from './errors.js';

export interface RetryPolicy {
  /** Attempts after the first one. */
  maxRetries: number;
  /** The first backoff; each further retry doubles it. */
  baseDelayMs: number;
  /** Backoff never grows beyond this (a server's retry-after may ask for longer, up to a minute). */
  maxDelayMs: number;
}

export interface TransportOptions {
  baseUrl: string;
  apiKey: string;
  retry: RetryPolicy;
  /** Per attempt; a timed-out attempt is retried (writes are idempotent, so that is safe). */
  timeoutMs: number;
  fetch: typeof fetch;
}

/** A server's retry-after is honored, but never beyond this, so one bad header cannot stall a client. */
const MAX_RETRY_AFTER_MS = 60_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** 429 and 5xx are worth another try; any other 4xx means the request itself is wrong. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

/**
 * Exponential backoff with "equal jitter": half the step is fixed, half random, so clients that
 * failed together spread out but none retries immediately.
 */
export function backoffDelay(
  attempt: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return step / 2 + random() * (step / 2);
}

/** `retry-after` as seconds or an HTTP date, in milliseconds; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

interface ErrorBody {
  error?: { code?: unknown; message?: unknown; path?: unknown };
}

async function apiErrorFrom(response: Response): Promise<RatchetApiError> {
  const text = await response.text().catch(() => '');
  let body: ErrorBody | undefined;
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    body = undefined;
  }
  const error = body?.error;
  const code = typeof error?.code === 'string' ? error.code : `http_${response.status}`;
  const message =
    typeof error?.message === 'string' ? error.message : `HTTP ${response.status}: ${text.slice(0, 500)}`;
  const path = typeof error?.path === 'string' ? error.path : undefined;
  return new RatchetApiError(response.status, code, message, path);
}

/** JSON over HTTP to a Ratchet server, with the retry policy that every SDK write shares. */
export class Transport {
  private readonly baseUrl: string;

  constructor(private readonly options: TransportOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
  }

  /**
   * POSTs `body` as JSON and returns the parsed answer. Network errors, timeouts, 429 and 5xx are
   * retried with backoff (honoring retry-after) and end in a RatchetDeliveryError; any other 4xx
   * throws a RatchetApiError at once.
   */
  async post<T>(path: string, body: unknown): Promise<T> {
    const payload = JSON.stringify(body);
    const { retry } = this.options;
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.attempt(path, payload);
      if (outcome.ok) return outcome.value as T;
      if (outcome.error instanceof RatchetApiError && !isRetryableStatus(outcome.error.status)) {
        throw outcome.error;
      }
      if (attempt >= retry.maxRetries) {
        throw new RatchetDeliveryError(
          `POST ${path} failed after ${attempt + 1} attempts: ${outcome.error.message}`,
          attempt + 1,
          outcome.error instanceof RatchetApiError ? outcome.error.status : undefined,
          { cause: outcome.error },
        );
      }
      await sleep(outcome.retryAfterMs ?? backoffDelay(attempt, retry));
    }
  }

  private async attempt(
    path: string,
    payload: string,
  ): Promise<{ ok: true; value: unknown } | { ok: false; error: Error; retryAfterMs?: number }> {
    let response: Response;
    try {
      response = await this.options.fetch(this.baseUrl + path, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${this.options.apiKey}`,
          'content-type': 'application/json',
          'user-agent': 'ratchet-sdk-js/0.1.0',
        },
        body: payload,
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (err) {
      return { ok: false, error: err instanceof Error ? err : new Error(String(err)) };
    }
    if (response.ok) {
      try {
        return { ok: true, value: await response.json() };
      } catch (err) {
        // The answer was cut off after the write may have committed; retrying is safe (idempotent).
        return { ok: false, error: err instanceof Error ? err : new Error(String(err)) };
      }
    }
    const error = await apiErrorFrom(response);
    return { ok: false, error, retryAfterMs: parseRetryAfter(response.headers.get('retry-after')) };
  }
}
