import type { z } from 'zod';

/** Codes clients can switch on; the HTTP status follows from the code. */
export const errorStatus = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  uri_too_long: 414,
  unsupported_media_type: 415,
  rate_limited: 429,
  headers_too_large: 431,
  upstream_error: 502,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof errorStatus;

/**
 * The one error type of the domain. `path` names the offending field the way a client wrote it
 * (`items.3.value`), so a 4xx always says what is wrong and where.
 */
export class RatchetError extends Error {
  readonly code: ErrorCode;
  readonly path: string | undefined;

  constructor(code: ErrorCode, message: string, path?: string) {
    super(message);
    this.name = 'RatchetError';
    this.code = code;
    this.path = path;
  }

  get status(): number {
    return errorStatus[this.code];
  }

  toJSON(): { error: { code: ErrorCode; message: string; path?: string } } {
    return { error: { code: this.code, message: this.message, ...(this.path ? { path: this.path } : {}) } };
  }
}

export function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p) => String(p)).join('.');
}

/** Turns the first zod issue into a RatchetError that names the field (prefixed by where it came from). */
export function fromZodError(error: z.ZodError, prefix?: string): RatchetError {
  const issue = error.issues[0];
  if (!issue) return new RatchetError('invalid_request', 'invalid input', prefix);
  // An unknown key is reported on its parent; name the key itself so the client sees which one.
  const at = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0] ?? ''] : issue.path;
  const path = [prefix, formatPath(at)].filter((p) => p !== undefined && p !== '').join('.');
  const message = path ? `${path}: ${issue.message}` : issue.message;
  return new RatchetError('invalid_request', message, path || undefined);
}

/** Parses with a schema, throwing a RatchetError naming the bad field. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, prefix?: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw fromZodError(result.error, prefix);
  return result.data;
}
