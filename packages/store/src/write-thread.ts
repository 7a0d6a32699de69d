import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type SqliteDatabase from 'better-sqlite3';

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
export class WriteThreadUnavailable extends Error {}

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
export class SqliteWriteThread {
  private worker: Worker | undefined;
  /** Set to 1 by the thread once its connection is closed. */
  private readonly closed = new Int32Array(new SharedArrayBuffer(4));
  private readonly waiting = new Map<
    number,
    { resolve(changes: number[]): void; reject(err: Error): void }
  >();
  private nextId = 1;
  private stopped = false;
  /** False once the thread failed or stopped: callers then write on the main connection. */
  alive = true;

  constructor(private readonly file: string) {}

  /** The thread, started on first use (most processes that open a store never log a call). */
  private thread(): Worker {
    if (this.worker) return this.worker;
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(writeThreadSource, {
      eval: true,
      workerData: { file: this.file, driver, closed: this.closed },
      // The thread imports nothing of ours: no loader flags needed, none inherited.
      execArgv: [],
    });
    // Idle, the thread keeps no process alive; `run` holds it while a batch is out.
    worker.unref();
    worker.on('message', (m: { id: number; changes?: number[]; error?: string; code?: string }) => {
      if (m.id === 0)
        return this.fail(
          new WriteThreadUnavailable(`the write thread could not open the database: ${m.error}`),
        );
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (this.waiting.size === 0) worker.unref();
      if (m.changes) w.resolve(m.changes);
      else w.reject(Object.assign(new Error(m.error ?? 'write thread failed'), { code: m.code }));
    });
    worker.on('error', (err) => this.fail(new WriteThreadUnavailable(err.message)));
    worker.on('exit', () => this.fail(new WriteThreadUnavailable('the write thread stopped')));
    this.worker = worker;
    return worker;
  }

  /**
   * Runs the statements in one transaction on the thread's connection and commits: the number
   * of rows each changed (-1 when its `when` skipped it). On a statement's error the transaction
   * is rolled back and the promise rejects with SQLite's message and code; if the thread is gone,
   * with `WriteThreadUnavailable` (nothing was committed).
   */
  run(statements: readonly ThreadStatement[]): Promise<number[]> {
    if (!this.alive) return Promise.reject(new WriteThreadUnavailable('the write thread is not running'));
    const id = this.nextId++;
    const worker = this.thread();
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, statements });
    });
  }

  private fail(err: Error): void {
    this.alive = false;
    Atomics.store(this.closed, 0, 1);
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  /**
   * Closes the thread's connection and waits (synchronously, as `Database.close` is) until it
   * has. Batches already posted are written first (the thread takes messages in order).
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.worker && this.alive) {
      this.worker.postMessage('stop');
      Atomics.wait(this.closed, 0, 0, 10_000);
    }
    this.alive = false;
    this.fail(new WriteThreadUnavailable('the database was closed'));
  }
}

// Plain CommonJS for an eval'd worker, so it runs the same from the sources and from dist.
const writeThreadSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { file, driver, closed } = workerData;
const done = () => { Atomics.store(closed, 0, 1); Atomics.notify(closed, 0); };
let db;
let openError;
try {
  const Database = require(driver);
  db = new Database(file, { fileMustExist: true });
  db.pragma('busy_timeout = 10000');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  // Checkpoints run on the checkpointer's thread (checkpointer.ts); this is its safety net.
  db.pragma('wal_autocheckpoint = 20000');
} catch (err) {
  openError = err;
  parentPort.postMessage({ id: 0, error: err && err.message ? err.message : String(err) });
}
const statements = new Map();
function prepared(sql) {
  let s = statements.get(sql);
  if (!s) {
    s = db.prepare(sql);
    statements.set(sql, s);
  }
  return s;
}
function runBatch(batch) {
  const changes = new Array(batch.length);
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
  return changes;
}
parentPort.on('message', (m) => {
  if (m === 'stop') {
    try { db?.close(); } finally { done(); parentPort.close(); }
    return;
  }
  try {
    if (!db) throw openError;
    parentPort.postMessage({ id: m.id, changes: runBatch(m.statements) });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: err && err.message ? err.message : String(err), code: err && err.code });
  }
});
`;

/** Starts (on first use) a write thread for a database file, stopped when the connection closes. */
export function writeOffThread(sqlite: SqliteDatabase.Database, file: string): SqliteWriteThread {
  const thread = new SqliteWriteThread(file);
  const close = sqlite.close.bind(sqlite);
  sqlite.close = () => {
    thread.stop();
    return close();
  };
  return thread;
}
