import { jsonText, newId, storableString } from '@ratchet/core';
import { type Kysely, type Selectable, sql } from 'kysely';
import { keysetPage, type Page } from './paging.js';
import type { Database, DeadLettersTable } from './schema.js';

/** Why an interaction became a dead letter: a break of the storable rule, or the database's refusal. */
export type DeadLetterReason = 'nul_character' | 'lone_surrogate' | 'too_deep' | 'write_failed';

export interface NewDeadLetter {
  interactionId: string;
  source: string;
  reason: DeadLetterReason;
  /** What went wrong, in words: the rule's message with its path, or the database's error. */
  error: string;
  /** The interaction as it arrived (any JSON value, however deep or whatever it holds). */
  payload: unknown;
  /** Whether a repaired copy of the interaction was stored under the same id. */
  repaired: boolean;
}

export interface DeadLetter extends Omit<NewDeadLetter, 'payload'> {
  id: string;
  projectId: string;
  /** The payload as JSON text: NUL and lone surrogates escaped, so it stores and prints anywhere. */
  payload: string;
  /** True when `payload` is not all of it: cut when stored (beyond `MAX_DEAD_LETTER_PAYLOAD`) or in a list's preview. */
  payloadTruncated: boolean;
  createdAt: number;
}

/** The longest payload kept: the evidence, not a second copy of a huge request body. */
export const MAX_DEAD_LETTER_PAYLOAD = 1_000_000;
const MAX_ERROR = 4000;

/**
 * The gateway's dead letters: interactions that could not be stored as they arrived. Their
 * payload is kept as JSON text (written without recursion, so a 20,000-level value is kept too).
 */
export class DeadLetterRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(
    projectId: string,
    letters: readonly NewDeadLetter[],
    db: Kysely<Database> = this.db,
  ): Promise<DeadLetter[]> {
    if (letters.length === 0) return [];
    const now = Date.now();
    const stored = letters.map((l): DeadLetter => {
      // Encoding stops just past the limit: a 2 MB body nested a million levels deep costs half.
      const text = jsonText(l.payload, MAX_DEAD_LETTER_PAYLOAD + 1);
      const payloadTruncated = text.length > MAX_DEAD_LETTER_PAYLOAD;
      return {
        id: newId(now),
        projectId,
        interactionId: storableString(l.interactionId),
        source: l.source,
        reason: l.reason,
        // A database's error may quote the offending value; keep it storable and short.
        error: storableString(l.error.slice(0, MAX_ERROR)),
        // Cutting may split a surrogate pair; storableString mends the cut end.
        payload: payloadTruncated ? storableString(text.slice(0, MAX_DEAD_LETTER_PAYLOAD)) : text,
        payloadTruncated,
        repaired: l.repaired,
        createdAt: now,
      };
    });
    // One statement per letter: payloads may be up to a megabyte each.
    for (const d of stored) {
      await db
        .insertInto('dead_letters')
        .values({
          id: d.id,
          project_id: projectId,
          interaction_id: d.interactionId,
          source: d.source,
          reason: d.reason,
          error: d.error,
          payload: d.payload,
          payload_truncated: d.payloadTruncated ? 1 : 0,
          repaired: d.repaired ? 1 : 0,
          created_at: d.createdAt,
        })
        .execute();
    }
    return stored;
  }

  /**
   * Newest first, with a cursor that stays stable while new dead letters arrive. Payloads are cut
   * to `payloadChars` in the database (a page of megabyte payloads would be a huge answer);
   * `payloadTruncated` then says so, and `get` returns the whole one.
   */
  async list(
    projectId: string,
    page: { limit?: number; cursor?: string; payloadChars?: number } = {},
  ): Promise<Page<DeadLetter>> {
    const chars = page.payloadChars ?? MAX_DEAD_LETTER_PAYLOAD;
    const q = this.db
      .selectFrom('dead_letters')
      .select([
        'id',
        'project_id',
        'interaction_id',
        'source',
        'reason',
        'error',
        'payload_truncated',
        'repaired',
        'created_at',
        sql<string>`substr(payload, 1, ${chars})`.as('payload'),
        sql<number>`length(payload)`.as('payload_length'),
      ])
      .where('project_id', '=', projectId);
    return keysetPage(
      q,
      { at: 'created_at', id: 'id' },
      page,
      (r) => [Number(r.created_at), r.id],
      (r) => toDeadLetter(r, Number(r.payload_truncated) === 1 || Number(r.payload_length) > chars),
    );
  }

  /** One dead letter with its whole payload. */
  async get(projectId: string, id: string): Promise<DeadLetter | undefined> {
    const row = await this.db
      .selectFrom('dead_letters')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toDeadLetter(row, Number(row.payload_truncated) === 1);
  }

  /** How many dead letters the project has, by reason. */
  async countByReason(projectId: string): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('dead_letters')
      .select(['reason', sql<number>`count(*)`.as('n')])
      .where('project_id', '=', projectId)
      .groupBy('reason')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.reason, Number(r.n)]));
  }
}

function toDeadLetter(
  r: Omit<Selectable<DeadLettersTable>, 'payload_truncated'> & { payload: string },
  payloadTruncated: boolean,
): DeadLetter {
  return {
    id: r.id,
    projectId: r.project_id,
    interactionId: r.interaction_id,
    source: r.source,
    reason: r.reason as DeadLetterReason,
    error: r.error,
    payload: r.payload,
    payloadTruncated,
    repaired: Number(r.repaired) === 1,
    createdAt: Number(r.created_at),
  };
}
