import { z } from 'zod';
import { RatchetError } from '../errors.js';

/** Client-supplied ids: printable, bounded, no whitespace, so they are safe in URLs and logs. */
export const ClientId = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9._:@\-/]+$/, 'must be 1-200 characters of letters, digits and . _ : @ - /');

/** The largest value of a PostgreSQL `integer` column (token counts, offsets): 2^31 - 1. */
export const MAX_INT32 = 2_147_483_647;

/** The latest instant a JavaScript Date can hold (year 275760); later is no time at all. */
export const MAX_TIMESTAMP_MS = 8.64e15;

/** A count stored in an `integer` column: a larger one is a 400 here, not an overflow there. */
export const Count = z.number().int().nonnegative().max(MAX_INT32);

/**
 * A relative weight (of a variant, a source, a kind of evidence). Bounded so that a sum of
 * weights stays finite: two of 1e308 add up to Infinity and every share computed from them to NaN.
 */
export const Weight = z.number().nonnegative().max(1e6);

/** A page offset in a query string. */
export const Offset = z.coerce.number().int().nonnegative().max(MAX_INT32);

/** A timestamp as epoch milliseconds or an ISO-8601 string; normalized to epoch milliseconds. */
export const Timestamp = z.union([
  z.number().int().nonnegative().max(MAX_TIMESTAMP_MS),
  z.iso.datetime({ offset: true }).transform((s) => Date.parse(s)),
]);

export const Metadata = z.record(z.string().max(200), z.unknown());

export const Tag = z.string().min(1).max(100);
export const Tags = z.array(Tag).max(50);

/**
 * A dataset version as clients name it: its id, its name (the latest version) or `name@N` with N
 * a version number from 1 (at most nine digits: versions are `integer` columns). `name@abc`,
 * `name@1e99`, `name@-1` or `name@0x10` are refused rather than compared as NaN or overflowed.
 */
export const DATASET_REF_PATTERN = /^[^@]{1,200}(?:@[1-9][0-9]{0,8})?$/;
export const DatasetRef = z
  .string()
  .min(1)
  .max(210)
  .regex(DATASET_REF_PATTERN, 'must be a dataset id, a name, or name@N with N a version number from 1');

/** `name@N` split into name and version (no version: the latest); throws a 400 naming `path`. */
export function parseDatasetRef(ref: string, path = 'ref'): { name: string; version: number | undefined } {
  const result = DatasetRef.safeParse(ref);
  if (!result.success)
    throw new RatchetError('invalid_request', `${path}: "${ref}" ${result.error.issues[0]?.message}`, path);
  const at = ref.indexOf('@');
  return at < 0
    ? { name: ref, version: undefined }
    : { name: ref.slice(0, at), version: Number(ref.slice(at + 1)) };
}

export const Limit = z.coerce.number().int().min(1).max(1000);
