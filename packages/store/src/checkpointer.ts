import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type SqliteDatabase from 'better-sqlite3';

/**
 * WAL checkpoints on a thread of their own. SQLite's automatic checkpoint runs inside the COMMIT
 * that crosses the threshold, on the connection that committed: better-sqlite3 runs it on the
 * event loop, so every few thousand feedback events one commit also copied the WAL into the
 * database file and fsynced it while no request could be served (about half of the time spent
 * committing at ingest rates). This thread keeps a second connection that copies committed
 * frames into the database (`wal_checkpoint(PASSIVE)`: it never blocks the writer), so the
 * writer's commits only append to the WAL. The writer keeps a high automatic threshold as a
 * safety net in case this thread falls behind.
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  /** Set to 1 by the thread once its connection is closed. */
  private readonly closed = new Int32Array(new SharedArrayBuffer(4));
  private stopped = false;

  constructor(file: string, intervalMs = 100) {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(checkpointerSource, {
      eval: true,
      workerData: { file, driver, intervalMs, closed: this.closed },
      // The thread imports nothing of ours: no loader flags needed, none inherited.
      execArgv: [],
    });
    // A process that is done should not stay up for its checkpointer.
    this.worker.unref();
    this.worker.on('error', () => {
      // The writer's own automatic checkpoint still bounds the WAL.
      Atomics.store(this.closed, 0, 1);
    });
  }

  /**
   * Closes the thread's connection and waits (synchronously, as `Database.close` is) until it
   * has: a thread terminated with its connection open would leave SQLite's per-process lock
   * state held for the file.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.worker.postMessage('stop');
    Atomics.wait(this.closed, 0, 0, 10_000);
  }
}

// Plain CommonJS for an eval'd worker, so it runs the same from the sources and from dist.
const checkpointerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { file, driver, intervalMs, closed } = workerData;
const done = () => { Atomics.store(closed, 0, 1); Atomics.notify(closed, 0); };
let db;
try {
  const Database = require(driver);
  db = new Database(file, { fileMustExist: true });
  db.pragma('busy_timeout = 100');
  db.pragma('synchronous = FULL');
} catch {
  db = undefined;
}
const timer = db && setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // Busy or locked: the next tick tries again.
  }
}, intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  try { db?.close(); } finally { done(); parentPort.close(); }
});
if (!db) done();
`;

/** Starts a checkpointer for a WAL database and stops it when the connection closes. */
export function checkpointOffThread(sqlite: SqliteDatabase.Database, file: string): void {
  sqlite.pragma('wal_autocheckpoint = 20000');
  const checkpointer = new WalCheckpointer(file);
  const close = sqlite.close.bind(sqlite);
  sqlite.close = () => {
    checkpointer.stop();
    return close();
  };
}
