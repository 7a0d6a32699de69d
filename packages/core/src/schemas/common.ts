import { z } from 'zod';

/** Client-supplied ids: printable, bounded, no whitespace, so they are safe in URLs and logs. */
export const ClientId = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9._:@\-/]+$/, 'must be 1-200 characters of letters, digits and . _ : @ - /');

/** A timestamp as epoch milliseconds or an ISO-8601 string; normalized to epoch milliseconds. */
export const Timestamp = z.union([
  z.number().int().nonnegative(),
  z.iso.datetime({ offset: true }).transform((s) => Date.parse(s)),
]);

export const Metadata = z.record(z.string().max(200), z.unknown());

export const Tag = z.string().min(1).max(100);
export const Tags = z.array(Tag).max(50);

export const Limit = z.coerce.number().int().min(1).max(1000);
