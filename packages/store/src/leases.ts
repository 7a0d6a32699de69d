import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.js';

/**
 * Who may run a route's loop round: one holder at a time, by a row in the database that every
 * `ratchet serve` on it sees. The holder renews its lease while it works (a heartbeat); a holder
 * that dies stops renewing, so its lease expires and another server takes it over. A row and an
 * expiry rather than a PostgreSQL advisory lock: it works on SQLite too, and a lock would be held
 * by a pooled connection, not by the process doing the work.
 */
export class RoundLeaseRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Takes the route's lease for `holder` until `now + ttlMs`, or renews it: granted when no one
   * holds it, when `holder` already does, or when the holder's lease has expired. One atomic
   * upsert, so two servers asking at once never both get it.
   */
  async acquire(
    projectId: string,
    route: string,
    holder: string,
    ttlMs: number,
    now = Date.now(),
  ): Promise<boolean> {
    const result = await this.db
      .insertInto('round_leases')
      .values({ project_id: projectId, route, holder, expires_at: now + ttlMs, acquired_at: now })
      .onConflict((oc) =>
        oc
          .columns(['project_id', 'route'])
          .doUpdateSet({
            holder: (eb) => eb.ref('excluded.holder'),
            expires_at: (eb) => eb.ref('excluded.expires_at'),
            // A renewal keeps when the holder first took it; a takeover starts a new tenure.
            acquired_at: sql<number>`case when round_leases.holder = excluded.holder then round_leases.acquired_at else excluded.acquired_at end`,
          })
          .where((eb) =>
            eb.or([eb('round_leases.holder', '=', holder), eb('round_leases.expires_at', '<', now)]),
          ),
      )
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  /** Gives the lease up (only if `holder` still has it), so another server need not wait it out. */
  async release(projectId: string, route: string, holder: string): Promise<void> {
    await this.db
      .deleteFrom('round_leases')
      .where('project_id', '=', projectId)
      .where('route', '=', route)
      .where('holder', '=', holder)
      .execute();
  }

  /** The route's lease as stored (expired or not), if any. */
  async get(
    projectId: string,
    route: string,
  ): Promise<{ holder: string; expiresAt: number; acquiredAt: number } | undefined> {
    const row = await this.db
      .selectFrom('round_leases')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('route', '=', route)
      .executeTakeFirst();
    return (
      row && {
        holder: row.holder,
        expiresAt: Number(row.expires_at),
        acquiredAt: Number(row.acquired_at),
      }
    );
  }
}

/**
 * Per-key request counts shared by every server on one database: fixed windows, one row per
 * (key, window), bumped by an atomic upsert that returns the new count. Used on PostgreSQL, where
 * several servers share the database; on SQLite one process serves, and its in-memory bucket is
 * the whole truth.
 */
export class RateWindowRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** Counts one request of `key` in the window starting at `windowStart` (ms); returns the count. */
  async hit(key: string, windowStart: number): Promise<number> {
    const row = await this.db
      .insertInto('rate_limit_windows')
      .values({ key, window_start: windowStart, hits: 1 })
      .onConflict((oc) =>
        oc.columns(['key', 'window_start']).doUpdateSet({
          hits: (eb) => eb('rate_limit_windows.hits', '+', 1),
        }),
      )
      .returning('hits')
      .executeTakeFirstOrThrow();
    return Number(row.hits);
  }

  /** Drops the windows that ended before `before` (ms): they count nothing any more. */
  async prune(before: number): Promise<void> {
    await this.db.deleteFrom('rate_limit_windows').where('window_start', '<', before).execute();
  }
}
