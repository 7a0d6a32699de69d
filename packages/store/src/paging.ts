import { RatchetError, storableIssue } from '@ratchet/core';
import type { ReferenceExpression, SelectQueryBuilder } from 'kysely';

/** One page of a list, and the cursor of the next (null: this was the last). */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** An opaque cursor: the (sort value, id) of the last row of a page. */
export function encodeCursor(at: number, id: string): string {
  return Buffer.from(JSON.stringify([at, id])).toString('base64url');
}

export function decodeCursor(cursor: string): [number, string] {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString());
    // Only what encodeCursor writes: a forged time beyond bigint or an id PostgreSQL cannot
    // take (NUL) would otherwise fail in the database instead of here.
    if (
      Array.isArray(value) &&
      Number.isSafeInteger(value[0]) &&
      value[0] >= 0 &&
      typeof value[1] === 'string' &&
      value[1].length <= 200 &&
      !storableIssue(value[1])
    )
      return [value[0], value[1]];
  } catch {
    // fall through to the error below
  }
  throw new RatchetError('invalid_request', 'cursor: not a cursor this API returned', 'cursor');
}

/**
 * Every list's page, by keyset: rows in descending (`at`, `id`) order (newest first, or most
 * feedback first), starting after the cursor's row. Each page is one index range read however
 * deep it is, and stays stable while new rows arrive (an offset would skip or repeat rows, and
 * cost the rows it skips). `key` gives a row's (`at`, `id`) for the next cursor.
 */
export async function keysetPage<DB, TB extends keyof DB, O, T>(
  query: SelectQueryBuilder<DB, TB, O>,
  columns: { at: ReferenceExpression<DB, TB>; id: ReferenceExpression<DB, TB> },
  page: { limit?: number; cursor?: string | undefined },
  key: (row: O) => [number, string],
  toItem: (row: O) => T,
): Promise<Page<T>> {
  const limit = page.limit ?? 50;
  let q = query;
  if (page.cursor) {
    const [at, id] = decodeCursor(page.cursor);
    // biome-ignore lint/suspicious/noExplicitAny: the columns are generic; the values are a number and a string.
    const value = (v: unknown) => v as any;
    // The plain `at <=` bound is implied by the OR but is what lets both planners start the index
    // range at the cursor: without it PostgreSQL walked the index from the newest row and
    // filtered its way down (a page half-way through a million rows took a second).
    q = q
      .where(columns.at, '<=', value(at))
      .where((eb) =>
        eb.or([
          eb(columns.at, '<', value(at)),
          eb.and([eb(columns.at, '=', value(at)), eb(columns.id, '<', value(id))]),
        ]),
      );
  }
  const rows = await q
    // biome-ignore lint/suspicious/noExplicitAny: an order-by of a generic column.
    .orderBy(columns.at as any, 'desc')
    // biome-ignore lint/suspicious/noExplicitAny: an order-by of a generic column.
    .orderBy(columns.id as any, 'desc')
    .limit(limit + 1)
    .execute();
  const kept = rows.slice(0, limit);
  const last = kept.at(-1);
  return {
    items: kept.map(toItem),
    nextCursor: rows.length > limit && last ? encodeCursor(...key(last)) : null,
  };
}
