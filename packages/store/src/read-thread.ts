import type SqliteDatabase from 'better-sqlite3';
import type { CompiledQuery } from 'kysely';
import { SqliteThread, sqliteThreadSource } from './sqlite-thread.js';

/**
 * Long read-only queries of a SQLite file on a thread of their own. better-sqlite3 runs a query
 * on the event loop from start to end, so a query that scans many rows holds every request in
 * flight: the rollups' roll-forward, which rereads the current hour's calls every 10 s, held
 * `ratchet serve`'s event loop for 0.2-0.9 s a pass with 10,000-70,000 calls in the hour (on a
 * loaded 2-core machine), longer as the hour fills. This thread keeps a read-only connection of its own and runs
 * compiled queries there; the event loop only waits for the answer. A batch of queries runs in
 * one read transaction, so its queries see the same snapshot.
 */
export class SqliteReadThread extends SqliteThread<
  { sql: string; parameters: readonly unknown[] }[],
  unknown[][]
> {
  constructor(file: string) {
    super(file, 'read', readThreadSource);
  }

  /** Runs the queries in one read transaction on the thread's connection; their rows, in order. */
  run(queries: readonly CompiledQuery[]): Promise<unknown[][]> {
    return this.send(queries.map((q) => ({ sql: q.sql, parameters: q.parameters })));
  }
}

const readThreadSource = sqliteThreadSource(
  `db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 10000');`,
  'return db.transaction(() => batch.map((q) => prepared(q.sql).all(q.parameters)))();',
);

/** Starts a read thread for a database file, stopped when the connection closes. */
export function readOffThread(sqlite: SqliteDatabase.Database, file: string): SqliteReadThread {
  return new SqliteReadThread(file).stopWith(sqlite);
}
