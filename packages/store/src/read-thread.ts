import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type SqliteDatabase from 'better-sqlite3';
import type { CompiledQuery } from 'kysely';

/**
 * Long read-only queries of a SQLite file on a thread of their own. better-sqlite3 runs a query
 * on the event loop from start to end, so a query that scans many rows holds every request in
 * flight: the rollups' roll-forward, which rereads the current hour's calls every 10 s, held
 * `ratchet serve`'s event loop for 0.2-0.9 s a pass with 10,000-70,000 calls in the hour (on a
 * loaded 2-core machine), longer as the hour fills. This thread keeps a read-only connection of its own and runs
 * compiled queries there; the event loop only waits for the answer. A batch of queries runs in
 * one read transaction, so its queries see the same snapshot.
 */
export class SqliteReadThread {
  private worker: Worker | undefined;
  /** Set to 1 by the thread once its connection is closed. */
  private readonly closed = new Int32Array(new SharedArrayBuffer(4));
  private readonly waiting = new Map<
    number,
    { resolve(rows: unknown[][]): void; reject(err: Error): void }
  >();
  private nextId = 1;
  private stopped = false;
  /** False once the thread failed or stopped: callers then run their queries on the main connection. */
  alive = true;

  constructor(private readonly file: string) {}

  /** The thread, started on first use (most processes that open a store never need it). */
  private thread(): Worker {
    if (this.worker) return this.worker;
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(readThreadSource, {
      eval: true,
      workerData: { file: this.file, driver, closed: this.closed },
      // The thread imports nothing of ours: no loader flags needed, none inherited.
      execArgv: [],
    });
    // Idle, the thread keeps no process alive; `run` holds it while a batch is out.
    worker.unref();
    worker.on('message', (m: { id: number; rows?: unknown[][]; error?: string; code?: string }) => {
      if (m.id === 0) return this.fail(new Error(`the read thread could not open the database: ${m.error}`));
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (this.waiting.size === 0) worker.unref();
      if (m.rows) w.resolve(m.rows);
      else w.reject(Object.assign(new Error(m.error ?? 'read thread failed'), { code: m.code }));
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', () => this.fail(new Error('the read thread stopped')));
    this.worker = worker;
    return worker;
  }

  /** Runs the queries in one read transaction on the thread's connection; their rows, in order. */
  run(queries: readonly CompiledQuery[]): Promise<unknown[][]> {
    if (!this.alive) return Promise.reject(new Error('the read thread is not running'));
    const id = this.nextId++;
    const batch = queries.map((q) => ({ sql: q.sql, parameters: q.parameters }));
    const worker = this.thread();
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, batch });
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
   * has: a thread terminated with its connection open would leave SQLite's per-process lock
   * state held for the file. A batch still out is rejected.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.alive = false;
    if (this.worker) {
      this.worker.postMessage('stop');
      Atomics.wait(this.closed, 0, 0, 10_000);
    }
    this.fail(new Error('the database was closed'));
  }
}

// Plain CommonJS for an eval'd worker, so it runs the same from the sources and from dist.
const readThreadSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { file, driver, closed } = workerData;
const done = () => { Atomics.store(closed, 0, 1); Atomics.notify(closed, 0); };
let db;
let openError;
try {
  const Database = require(driver);
  db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 10000');
} catch (err) {
  openError = err;
  // The server's own connection then runs the queries (see SqliteReadThread.alive).
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
parentPort.on('message', (m) => {
  if (m === 'stop') {
    try { db?.close(); } finally { done(); parentPort.close(); }
    return;
  }
  try {
    if (!db) throw openError;
    const rows = db.transaction(() => m.batch.map((q) => prepared(q.sql).all(q.parameters)))();
    parentPort.postMessage({ id: m.id, rows });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: err && err.message ? err.message : String(err), code: err && err.code });
  }
});
`;

/** Starts a read thread for a database file, stopped when the connection closes. */
export function readOffThread(sqlite: SqliteDatabase.Database, file: string): SqliteReadThread {
  const thread = new SqliteReadThread(file);
  const close = sqlite.close.bind(sqlite);
  sqlite.close = () => {
    thread.stop();
    return close();
  };
  return thread;
}
