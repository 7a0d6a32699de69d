import type SqliteDatabase from 'better-sqlite3';
import { SqliteThread, sqliteThreadSource } from './sqlite-thread.js';

/** One statement of a batch the writer thread runs in one transaction. */
export interface ThreadStatement {
  sql: string;
  /** Positional values, or an object of named ones (`@name` in the SQL). */
  parameters: readonly unknown[] | Record<string, unknown>;
  /**
   * Run only if at least one of these earlier statements (indices into the batch) changed a row:
   * a tag goes in only with its interaction, not when the interaction's id existed already.
   */
  when?: readonly number[];
}

/** The thread stopped or never started: nothing of the batch was committed by it. */
export { SqliteThreadUnavailable as WriteThreadUnavailable } from './sqlite-thread.js';

/**
 * Relaxed-durability writes of a SQLite file on a thread of their own. better-sqlite3 runs a
 * statement, and the COMMIT's write to the WAL, on the event loop from start to end: in the
 * gateway at 1,000 req/s one log commit blocked in its write to the WAL for 111.7 ms (the thread
 * ran 2.1 ms of it; the disk held the rest) while every call in flight waited. This thread keeps a
 * read-write connection of its own at synchronous=NORMAL (a commit survives a crash of the
 * process, not a power cut: what the log's relaxed writes promise anyway) and runs a batch of
 * statements in one IMMEDIATE transaction there; the event loop only posts the batch and waits.
 * Waiting for another connection's write lock happens in SQLite's busy handler here, which
 * sleeps this thread, never the event loop.
 */
export class SqliteWriteThread extends SqliteThread<readonly ThreadStatement[], number[]> {
  constructor(file: string) {
    super(file, 'write', writeThreadSource);
  }

  /**
   * Runs the statements in one transaction on the thread's connection and commits: the number
   * of rows each changed (-1 when its `when` skipped it). On a statement's error the transaction
   * is rolled back and the promise rejects with SQLite's message and code; if the thread is gone,
   * with `WriteThreadUnavailable` (nothing was committed).
   */
  run(statements: readonly ThreadStatement[]): Promise<number[]> {
    return this.send(statements);
  }
}

const writeThreadSource = sqliteThreadSource(
  `db = new Database(file, { fileMustExist: true });
  db.pragma('busy_timeout = 10000');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  // Checkpoints run on the checkpointer's thread (checkpointer.ts); this is its safety net.
  db.pragma('wal_autocheckpoint = 20000');`,
  `const changes = new Array(batch.length);
  db.exec('begin immediate');
  try {
    for (let i = 0; i < batch.length; i++) {
      const q = batch[i];
      if (q.when && !q.when.some((k) => changes[k] > 0)) { changes[i] = -1; continue; }
      changes[i] = prepared(q.sql).run(q.parameters).changes;
    }
    db.exec('commit');
  } catch (err) {
    if (db.inTransaction) db.exec('rollback');
    throw err;
  }
  return changes;`,
);

/** Starts (on first use) a write thread for a database file, stopped when the connection closes. */
export function writeOffThread(sqlite: SqliteDatabase.Database, file: string): SqliteWriteThread {
  return new SqliteWriteThread(file).stopWith(sqlite);
}
