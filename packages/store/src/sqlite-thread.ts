import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type SqliteDatabase from 'better-sqlite3';

/** The thread stopped or never started: it ran nothing of the batch. */
export class SqliteThreadUnavailable extends Error {}

/**
 * A SQLite connection of its own on a worker thread, for work that must not hold the event loop
 * (read-thread.ts, write-thread.ts): started on first use, it takes batches in order and answers
 * each with its result or SQLite's error and code. The thread's source is `opening` (a CommonJS
 * snippet that sets `db` from `Database`, `file`) and `handling` (a function body that runs
 * `batch` on `db`, with `prepared(sql)` for cached statements, and returns the answer).
 */
export class SqliteThread<Batch, Answer> {
  private worker: Worker | undefined;
  /** Set to 1 by the thread once its connection is closed. */
  private readonly closed = new Int32Array(new SharedArrayBuffer(4));
  private readonly waiting = new Map<number, { resolve(answer: Answer): void; reject(err: Error): void }>();
  private nextId = 1;
  private stopped = false;
  /** False once the thread failed or stopped: callers then use the main connection. */
  alive = true;

  constructor(
    private readonly file: string,
    /** `read` or `write`, for messages. */
    private readonly name: string,
    private readonly source: string,
  ) {}

  private thread(): Worker {
    if (this.worker) return this.worker;
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(this.source, {
      eval: true,
      workerData: { file: this.file, driver, closed: this.closed },
      // The thread imports nothing of ours: no loader flags needed, none inherited.
      execArgv: [],
    });
    // Idle, the thread keeps no process alive; `send` holds it while a batch is out.
    worker.unref();
    worker.on('message', (m: { id: number; answer?: Answer; error?: string; code?: string }) => {
      if (m.id === 0) return this.fail(this.unavailable(`could not open the database: ${m.error}`));
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (this.waiting.size === 0) worker.unref();
      if (m.answer !== undefined) w.resolve(m.answer);
      else w.reject(Object.assign(new Error(m.error ?? `${this.name} thread failed`), { code: m.code }));
    });
    worker.on('error', (err) => this.fail(new SqliteThreadUnavailable(err.message)));
    worker.on('exit', () => this.fail(this.unavailable('stopped')));
    this.worker = worker;
    return worker;
  }

  private unavailable(what: string): SqliteThreadUnavailable {
    return new SqliteThreadUnavailable(`the ${this.name} thread ${what}`);
  }

  /** Posts a batch; its answer, or SQLite's error (or `SqliteThreadUnavailable`: nothing ran). */
  send(batch: Batch): Promise<Answer> {
    if (!this.alive) return Promise.reject(this.unavailable('is not running'));
    const id = this.nextId++;
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
   * state held for the file. Batches posted before are run first (the thread takes them in
   * order); a thread that already failed has set `closed` and is not waited for.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.alive = false;
    if (this.worker) {
      this.worker.postMessage('stop');
      Atomics.wait(this.closed, 0, 0, 10_000);
    }
    this.fail(new SqliteThreadUnavailable('the database was closed'));
  }

  /** Stops this thread when `sqlite` (the main connection to the same file) closes. */
  stopWith(sqlite: SqliteDatabase.Database): this {
    const close = sqlite.close.bind(sqlite);
    sqlite.close = () => {
      this.stop();
      return close();
    };
    return this;
  }
}

/** The worker's CommonJS source: open the connection, then answer batches until 'stop'. */
export function sqliteThreadSource(opening: string, handling: string): string {
  return `
const { parentPort, workerData } = require('node:worker_threads');
const { file, driver, closed } = workerData;
const done = () => { Atomics.store(closed, 0, 1); Atomics.notify(closed, 0); };
let db;
let openError;
try {
  const Database = require(driver);
  ${opening}
} catch (err) {
  openError = err;
  // The main connection then does the work (see SqliteThread.alive).
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
function handle(batch) {
  ${handling}
}
parentPort.on('message', (m) => {
  if (m === 'stop') {
    try { db?.close(); } finally { done(); parentPort.close(); }
    return;
  }
  try {
    if (!db) throw openError;
    parentPort.postMessage({ id: m.id, answer: handle(m.batch) });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: err && err.message ? err.message : String(err), code: err && err.code });
  }
});
`;
}
