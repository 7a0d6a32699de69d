import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.js';
import type { WalSync } from './wal-sync.js';

/** A unit of work that must commit all or nothing. */
export type WriteWork<T> = (trx: Kysely<Database>) => Promise<T>;

/**
 * Runs write transactions; how they map to database transactions is the implementation's choice.
 * A unit may be run more than once (its earlier attempt rolled back), so it keeps its effects
 * inside the transaction until it returns.
 */
export interface TransactionRunner {
  run<T>(work: WriteWork<T>): Promise<T>;
}

/** One database transaction per unit of work (PostgreSQL: the pool runs them in parallel). */
export class DirectTransactions implements TransactionRunner {
  constructor(private readonly db: Kysely<Database>) {}

  run<T>(work: WriteWork<T>): Promise<T> {
    return this.db.transaction().execute(work);
  }
}

interface Job {
  work: WriteWork<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for the embedded database. SQLite has one writer, and better-sqlite3 runs every
 * statement on the event loop, so each commit's fsync stalls the whole process for milliseconds.
 * Units of work that arrive together (requests parsed in the same turn of the event loop) share
 * one transaction and one fsync. A unit resolves only after the shared COMMIT returned and is on
 * disk, so an acknowledged write is still a committed, durable write.
 *
 * Units normally succeed (capture validates before it writes), so a group first runs them back
 * to back in one plain transaction. Only when one of them throws is that transaction rolled back
 * and the group run again with each unit inside its own savepoint, so that the failing unit is
 * undone alone and rejects with its own error while the others commit. (Savepoints on every
 * group cost about a fifth of the ingest path: SQLite copies each page a unit first touches into
 * the savepoint's journal.)
 */
export class GroupCommit implements TransactionRunner {
  private queue: Job[] = [];
  private scheduled = false;

  /** Upper bound on units per transaction, so one commit's latency stays bounded. */
  private readonly maxUnits: number;
  private readonly walSync: WalSync | undefined;

  constructor(
    private readonly db: Kysely<Database>,
    options: {
      maxUnits?: number;
      /**
       * A file database at synchronous=FULL: groups commit without waiting for the disk and
       * resolve once this made them durable, while the next group already runs (see wal-sync.ts).
       */
      walSync?: WalSync;
    } = {},
  ) {
    this.maxUnits = options.maxUnits ?? 256;
    this.walSync = options.walSync;
  }

  run<T>(work: WriteWork<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // setImmediate runs after the I/O callbacks of this loop turn: every request whose body
        // arrived meanwhile has queued its unit by then.
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const jobs = this.queue.splice(0, this.maxUnits);
      const outcomes = await this.commitGroup(jobs);
      // Not awaited: the next group commits while this one's fsync runs.
      void this.settleWhenDurable(jobs, outcomes);
    }
    this.scheduled = false;
  }

  private async settleWhenDurable(jobs: Job[], outcomes: Outcome[]): Promise<void> {
    if (this.walSync && outcomes.some((o) => o.ok)) {
      try {
        await this.walSync.sync();
      } catch (err) {
        // Committed, but not known to be on disk: not acknowledged (a retry with the same
        // idempotency keys or ids finds what was written).
        for (const job of jobs) job.reject(err);
        return;
      }
    }
    jobs.forEach((job, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) job.resolve(outcome.value);
      else job.reject(outcome.err);
    });
  }

  /** A transaction on the one connection; with a WalSync, its commit does not wait for the disk. */
  private transaction<T>(work: WriteWork<T>): Promise<T> {
    if (!this.walSync) return this.db.transaction().execute(work);
    return this.db.connection().execute(async (conn) => {
      await sql`pragma synchronous = NORMAL`.execute(conn);
      try {
        return await conn.transaction().execute(work);
      } finally {
        await sql`pragma synchronous = FULL`.execute(conn);
      }
    });
  }

  private async commitGroup(jobs: Job[]): Promise<Outcome[]> {
    if (jobs.length === 1) {
      const [job] = jobs as [Job];
      return [
        await this.transaction(job.work).then(
          (value): Outcome => ({ ok: true, value }),
          (err: unknown): Outcome => ({ ok: false, err }),
        ),
      ];
    }
    try {
      const values = await this.transaction(async (trx) => {
        const out: unknown[] = [];
        for (const job of jobs) out.push(await job.work(trx));
        return out;
      });
      return values.map((value) => ({ ok: true, value }));
    } catch {
      // A unit failed (or the commit did): nothing of this group was written. Run it again with
      // savepoints, which tells whose error it was.
      return this.commitWithSavepoints(jobs);
    }
  }

  private async commitWithSavepoints(jobs: Job[]): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    try {
      await this.transaction(async (trx) => {
        for (const [i, job] of jobs.entries()) {
          await sql.raw(`savepoint unit_${i}`).execute(trx);
          try {
            outcomes.push({ ok: true, value: await job.work(trx) });
          } catch (err) {
            outcomes.push({ ok: false, err });
            await sql.raw(`rollback to savepoint unit_${i}`).execute(trx);
          }
          await sql.raw(`release savepoint unit_${i}`).execute(trx);
        }
      });
    } catch (err) {
      // The shared commit failed: nothing of this group was written.
      return jobs.map(() => ({ ok: false, err }));
    }
    return outcomes;
  }
}

type Outcome = { ok: true; value: unknown } | { ok: false; err: unknown };
