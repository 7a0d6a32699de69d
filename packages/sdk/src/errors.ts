/** Every error the SDK reports (through `onError`, a rejected `flush()` or a direct send) is one of these. */
export class RatchetSdkError extends Error {
  /** The payloads this error concerns; for queued writes, the items that were dropped. */
  items: unknown[];

  constructor(message: string, items: unknown[] = [], options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.items = items;
  }
}

/**
 * The server answered with a 4xx other than 429: the request is wrong and sending it again
 * would not help, so it is not retried. `code` and `path` are the server's
 * `{ error: { code, message, path } }`.
 */
export class RatchetApiError extends RatchetSdkError {
  readonly status: number;
  readonly code: string;
  readonly path: string | undefined;

  constructor(status: number, code: string, message: string, path?: string, items: unknown[] = []) {
    super(message, items);
    this.status = status;
    this.code = code;
    this.path = path;
  }
}

/**
 * Delivery failed on every attempt (network errors, timeouts, 429 or 5xx). Queued items stay
 * queued for the next flush, except at shutdown, when they are dropped and reported with this.
 */
export class RatchetDeliveryError extends RatchetSdkError {
  readonly attempts: number;
  /** The last HTTP status seen, when the last attempt got an answer at all. */
  readonly status: number | undefined;

  constructor(message: string, attempts: number, status?: number, options?: { cause?: unknown }) {
    super(message, [], options);
    this.attempts = attempts;
    this.status = status;
  }
}

/** The queue was full (the server has been unreachable for long), so its oldest items were dropped. */
export class RatchetQueueFullError extends RatchetSdkError {}

/** A `flush()` or `shutdown()` that met one or more errors; each was also passed to `onError`. */
export class RatchetFlushError extends RatchetSdkError {
  readonly errors: RatchetSdkError[];

  constructor(errors: RatchetSdkError[]) {
    const first = errors[0]?.message ?? 'unknown error';
    super(
      errors.length === 1
        ? `flush failed: ${first}`
        : `flush failed with ${errors.length} errors; first: ${first}`,
      errors.flatMap((e) => e.items),
    );
    this.errors = errors;
  }
}
