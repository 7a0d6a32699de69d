import { type ParsedInteraction, type StorableIssue, storableIssue, toStorable } from '@ratchet/core';
import type { NewDeadLetter, Store } from '@ratchet/store';
import type { FastifyBaseLogger } from 'fastify';
import { sql } from 'kysely';
import type { Metrics } from '../metrics.js';

type LoggedInteraction = ParsedInteraction & { id: string };

interface Pending {
  projectId: string;
  /** What is written: the interaction as logged, or its repaired copy. */
  interaction: LoggedInteraction;
  /** Set when the interaction broke the storable rule: written with its repaired copy, in one transaction. */
  deadLetter?: NewDeadLetter;
  /** The storable rule has been applied (it runs once, not at every retry). */
  checked?: boolean;
}

export interface LogWriterOptions {
  /** Most interactions held waiting; when full the oldest is dropped (`ratchet_gateway_log_dropped_total`). */
  maxBuffered?: number;
  /** First wait before retrying when the database itself failed; doubles up to `retryMaxMs`. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** How long `close()` keeps retrying an unreachable database before giving up on what is left. */
  closeTimeoutMs?: number;
  /**
   * Most interactions written in one transaction; a larger batch is written in slices of this
   * size with the event loop free between them, so that a call never waits behind more than one.
   */
  sliceSize?: number;
}

/**
 * A write is started from `enqueue` (instead of waiting for the timer) once this share of the
 * interval has passed since the last one. The timer alone fires `intervalMs` after an enqueue: at
 * a request rate whose period is near the interval (20 req/s against 50 ms), that is just when
 * the next call's upstream answer arrives, and every call waited behind the previous one's
 * write. Written from the enqueue, which runs after an answer was sent, the write takes the
 * moment the event loop is least likely to be needed.
 */
const EARLY_WRITE_SHARE = 0.8;

/** Lets the event loop serve what arrived (a request, an upstream answer) before going on. */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The database itself failed (down, unreachable, busy): nothing is wrong with the items. */
class DatabaseUnavailable extends Error {
  constructor(override readonly cause: unknown) {
    super(errorMessage(cause));
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// Error codes that mean the database (or the way to it) failed, not the row: node's socket
// errors, PostgreSQL's SQLSTATE classes 08 (connection), 53 (resources: disk full, too many
// connections), 57P (shutting down), 40001/40P01 (serialization, deadlock: retry as a whole),
// and SQLite's busy, locked, I/O and full.
const DATABASE_FAILURE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  '40001',
  '40P01',
  'SQLITE_FULL',
  'SQLITE_CANTOPEN',
  'SQLITE_PROTOCOL',
  'SQLITE_NOMEM',
]);
const DATABASE_FAILURE_PREFIXES = ['08', '53', '57P', 'SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_IOERR'];

function isDatabaseFailureCode(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return DATABASE_FAILURE_CODES.has(code) || DATABASE_FAILURE_PREFIXES.some((p) => code.startsWith(p));
}

/**
 * Buffers the gateway's interactions and writes them in batches off the response path, so that
 * logging adds no latency to the call it logs. Flushed on an interval, when the buffer fills, on
 * demand (feedback for an id still in the buffer), and on shutdown.
 *
 * One bad interaction must not stop the log for everyone (issue 14). So:
 * - Before writing, each interaction is held to the storable rule (`@ratchet/core` storable.ts).
 *   One that breaks it (NUL, lone surrogate, nesting deeper than 64) is stored as a repaired copy
 *   marked `metadata.ratchet_repaired`, and recorded as a dead letter in the same transaction.
 * - A batch the database refuses is split in halves until the item it refuses is found; that
 *   item becomes a dead letter with the database's error, everything else is stored.
 * - A failure of the database itself (connection errors, or a failed `select 1` after a write
 *   failed) is not the items' fault: the batch goes back and is retried with backoff.
 * - The buffer is bounded: when full, the oldest entry is dropped and counted (the newest ids were
 *   just handed out and are the likeliest to be rated). `close()` writes or dead-letters everything,
 *   retrying an unreachable database for `closeTimeoutMs` before counting what is left as dropped.
 *
 * On a SQLite file a slice of clean interactions is written on the store's writer thread
 * (`insertInBackground`), so neither the statements nor the commit's write to the disk hold the
 * event loop. What still runs on it (encoding the rows, and the rare slice with a dead letter,
 * written on the main connection) is timed as before: a write is never started inside `enqueue`
 * (its caller may still be sending an answer), it starts on the next turn of the loop; and a
 * batch is committed in slices (`sliceSize`) with the loop free between them, so no call waits
 * behind a whole batch.
 */
export class InteractionLogWriter {
  private buffer: Pending[] = [];
  private readonly pendingIds = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private closed = false;
  private closing = false;
  private readonly maxBuffered: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly closeTimeoutMs: number;
  private readonly sliceSize: number;
  /** When the last write started (ms since the epoch). */
  private lastWriteAt = Date.now();
  /** A write is scheduled for the next turn of the event loop. */
  private soon = false;
  /** The wait before the next retry after a database failure; reset by a successful write. */
  private retryDelayMs: number;
  /** No write is started on a full batch before this time (the database failed; backing off). */
  private retryAt = 0;
  private lastDropLog = 0;
  /** Batches committed so far: lets a reader tell that a write landed while it was looking. */
  writes = 0;

  constructor(
    private readonly store: Store,
    private readonly metrics: Metrics,
    private readonly log: FastifyBaseLogger,
    private readonly intervalMs: number,
    private readonly batchSize: number,
    options: LogWriterOptions = {},
  ) {
    this.maxBuffered = options.maxBuffered ?? 100_000;
    this.retryBaseMs = options.retryBaseMs ?? Math.max(intervalMs, 1000);
    this.retryMaxMs = options.retryMaxMs ?? 30_000;
    this.closeTimeoutMs = options.closeTimeoutMs ?? 10_000;
    this.sliceSize = options.sliceSize ?? 32;
    this.retryDelayMs = this.retryBaseMs;
  }

  enqueue(projectId: string, interaction: LoggedInteraction): void {
    if (this.closed) {
      // A stream that ends after shutdown: its call was answered; throwing here would crash the
      // process from a stream callback. Count it and name it instead.
      this.metrics.logDropped.inc({ reason: 'shutdown' });
      this.log.error(
        { projectId, interactionId: interaction.id },
        'gateway interaction logged after shutdown; not written',
      );
      return;
    }
    this.buffer.push({ projectId, interaction });
    this.pendingIds.add(key(projectId, interaction.id));
    this.dropOverflow();
    this.metrics.logQueueDepth.set(this.buffer.length);
    const now = Date.now();
    const due =
      this.buffer.length >= this.batchSize || now - this.lastWriteAt >= this.intervalMs * EARLY_WRITE_SHARE;
    if (due && now >= this.retryAt) this.flushSoon();
    else this.timer ??= setTimeout(() => void this.flush(), this.intervalMs);
  }

  /** A flush on the next turn of the event loop (once, however many enqueues ask for it). */
  private flushSoon(): void {
    if (this.soon) return;
    this.soon = true;
    setImmediate(() => {
      this.soon = false;
      void this.flush();
    });
  }

  /** Whether an interaction id is buffered and not yet written. */
  has(projectId: string, id: string): boolean {
    return this.pendingIds.has(key(projectId, id));
  }

  /** How many interactions wait to be written. */
  get depth(): number {
    return this.buffer.length;
  }

  /**
   * Writes everything buffered so far; resolves when each entry is committed, dead-lettered, or
   * (the database being unreachable) back in the buffer for a retry.
   */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.flushing) await this.flushing;
    if (this.buffer.length === 0) return;
    this.lastWriteAt = Date.now();
    const batch = this.buffer;
    this.buffer = [];
    this.flushing = this.write(batch).finally(() => {
      this.flushing = undefined;
    });
    await this.flushing;
  }

  private async write(batch: Pending[]): Promise<void> {
    const settled = new Set<Pending>();
    try {
      let first = true;
      for (const [projectId, items] of groupByProject(batch))
        for (let i = 0; i < items.length; i += this.sliceSize) {
          if (!first) await yieldToEventLoop();
          first = false;
          const slice = items.slice(i, i + this.sliceSize);
          for (const p of slice) this.applyStorableRule(p);
          await this.writeIsolated(projectId, slice, settled);
        }
      this.retryDelayMs = this.retryBaseMs;
      this.retryAt = 0;
    } catch (err) {
      // Only a database failure gets here (item failures are isolated below): keep the rest.
      this.metrics.logWriteFailures.inc();
      const rest = batch.filter((p) => !settled.has(p));
      this.log.error(
        {
          err: err instanceof DatabaseUnavailable ? err.cause : err,
          count: rest.length,
          retryInMs: this.retryDelayMs,
        },
        'writing gateway interactions failed: the database is unavailable; will retry',
      );
      this.buffer.unshift(...rest);
      this.dropOverflow();
      this.retryAt = Date.now() + this.retryDelayMs;
      if (!this.closing) this.timer ??= setTimeout(() => void this.flush(), this.retryDelayMs);
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, this.retryMaxMs);
    }
    this.metrics.logQueueDepth.set(this.buffer.length);
  }

  /**
   * Writes `items` in one transaction; if the database refuses it, halves it and tries each half,
   * down to the single item it refuses, which becomes a dead letter. A batch with one bad item
   * costs about 2·log2(n) extra transactions. Throws `DatabaseUnavailable` to stop everything.
   */
  private async writeIsolated(projectId: string, items: Pending[], settled: Set<Pending>): Promise<void> {
    try {
      await this.commit(projectId, items);
    } catch (err) {
      if (await this.databaseFailed(err)) throw new DatabaseUnavailable(err);
      if (items.length === 1) {
        await this.deadLetterRefused(projectId, items[0]!, err);
        this.settle(items, settled);
        return;
      }
      const half = Math.ceil(items.length / 2);
      await this.writeIsolated(projectId, items.slice(0, half), settled);
      await this.writeIsolated(projectId, items.slice(half), settled);
      return;
    }
    this.writes++;
    this.metrics.interactionsWritten.inc({ source: 'gateway' }, items.length);
    for (const p of items) if (p.deadLetter) this.metrics.deadLetters.inc({ reason: p.deadLetter.reason });
    this.settle(items, settled);
  }

  private async commit(projectId: string, items: Pending[]): Promise<void> {
    const letters = items.flatMap((p) => (p.deadLetter ? [p.deadLetter] : []));
    // The log is in memory until flushed anyway: waiting for the disk at commit would only
    // stall the event loop (SQLite fsyncs on it) for every call in flight. A slice of clean
    // interactions (nearly all) is written off the event loop, on SQLite's writer thread.
    if (letters.length === 0) {
      await this.store.interactions.insertInBackground(
        projectId,
        items.map((p) => p.interaction),
      );
      return;
    }
    await this.store.writeRelaxed(async (trx) => {
      await this.store.interactions.insert(
        projectId,
        items.map((p) => p.interaction),
        trx,
      );
      await this.store.deadLetters.insert(projectId, letters, trx);
    });
  }

  /** The database refused this one item: keep it, with the database's words, as a dead letter. */
  private async deadLetterRefused(projectId: string, p: Pending, err: unknown): Promise<void> {
    const refused = `the database refused the interaction: ${errorMessage(err)}`;
    const letter: NewDeadLetter = {
      interactionId: p.interaction.id,
      source: 'gateway',
      reason: 'write_failed',
      error: p.deadLetter
        ? `${refused} (its repaired copy; it was repaired for ${p.deadLetter.error})`
        : refused,
      payload: p.deadLetter?.payload ?? p.interaction,
      repaired: false,
    };
    const attempts: NewDeadLetter[] = [
      letter,
      // The payload itself may be what fails (e.g. a row too large): keep the reason without it.
      { ...letter, payload: null, error: `${letter.error}; the payload could not be kept` },
    ];
    for (const attempt of attempts) {
      try {
        await this.store.writeRelaxed((trx) => this.store.deadLetters.insert(projectId, [attempt], trx));
        this.metrics.deadLetters.inc({ reason: letter.reason });
        this.log.warn(
          { projectId, interactionId: letter.interactionId, err },
          'gateway interaction refused by the database; recorded as a dead letter',
        );
        return;
      } catch (deadLetterErr) {
        if (await this.databaseFailed(deadLetterErr)) throw new DatabaseUnavailable(deadLetterErr);
      }
    }
    this.metrics.logDropped.inc({ reason: 'unstorable' });
    this.log.error(
      { projectId, interactionId: letter.interactionId, err },
      'gateway interaction refused by the database and not storable as a dead letter; dropped',
    );
  }

  /**
   * Whether a write failed because of the database rather than the rows: a connection-level
   * error code, or, for any other error, the database failing a trivial query right after.
   */
  private async databaseFailed(err: unknown): Promise<boolean> {
    if (isDatabaseFailureCode(err)) return true;
    try {
      await sql`select 1`.execute(this.store.db);
      return false;
    } catch {
      return true;
    }
  }

  /**
   * Applies the storable rule to each stored field on its own (each is its own column, so each
   * may nest 64 levels). A break becomes a repaired copy plus a dead letter that keeps the
   * original; the repaired paths are listed in `metadata.ratchet_repaired`.
   */
  private applyStorableRule(p: Pending): void {
    if (p.checked) return;
    p.checked = true;
    // One walk over the whole record first: it flags a superset (the record is one level deeper
    // than its fields), and clean records, nearly all of them, stop here at half the cost.
    if (!storableIssue(p.interaction)) return;
    const repaired: Record<string, unknown> = {};
    const issues: StorableIssue[] = [];
    for (const [field, value] of Object.entries(p.interaction)) {
      const fixed = toStorable(value);
      repaired[field] = fixed.value;
      for (const r of fixed.repairs)
        issues.push({ ...r, path: r.path === '' ? field : `${field}.${r.path}` });
    }
    const first = issues[0];
    if (!first) return;
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
    p.deadLetter = {
      interactionId: p.interaction.id,
      source: 'gateway',
      reason: first.reason,
      error: `${first.path}: ${first.message}${more}; a repaired copy was stored`,
      payload: p.interaction,
      repaired: true,
    };
    p.interaction = {
      ...(repaired as LoggedInteraction),
      metadata: {
        ...(repaired.metadata as Record<string, unknown>),
        ratchet_repaired: issues.map((i) => i.path),
      },
    };
  }

  private settle(items: Pending[], settled: Set<Pending>): void {
    for (const p of items) {
      settled.add(p);
      this.pendingIds.delete(key(p.projectId, p.interaction.id));
    }
  }

  /** The buffer-full policy: drop the oldest entries beyond the bound, and count them. */
  private dropOverflow(): void {
    const excess = this.buffer.length - this.maxBuffered;
    if (excess <= 0) return;
    const dropped = this.buffer.splice(0, excess);
    for (const p of dropped) this.pendingIds.delete(key(p.projectId, p.interaction.id));
    this.metrics.logDropped.inc({ reason: 'buffer_full' }, dropped.length);
    // At full load this runs on every call: one line a second says it without flooding the log.
    if (Date.now() - this.lastDropLog < 1000) return;
    this.lastDropLog = Date.now();
    this.log.error(
      { dropped: dropped.map((p) => p.interaction.id), limit: this.maxBuffered },
      'gateway interaction log buffer full; dropped the oldest entries',
    );
  }

  /**
   * Writes what is left (dead-lettering what the database refuses) and stops accepting entries.
   * If the database is unreachable it retries for `closeTimeoutMs`, then counts the rest as
   * dropped and names them in the error log.
   */
  async close(): Promise<void> {
    this.closing = true;
    const deadline = Date.now() + this.closeTimeoutMs;
    await this.flush();
    while (this.buffer.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(this.retryDelayMs, deadline - Date.now())));
      await this.flush();
    }
    while (this.flushing) await this.flushing;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.buffer.length > 0) {
      const lost = this.buffer;
      this.buffer = [];
      for (const p of lost) this.pendingIds.delete(key(p.projectId, p.interaction.id));
      this.metrics.logDropped.inc({ reason: 'shutdown' }, lost.length);
      this.metrics.logQueueDepth.set(0);
      this.log.error(
        { count: lost.length, ids: lost.map((p) => `${p.projectId}/${p.interaction.id}`) },
        'database unreachable at shutdown: gateway interactions not written',
      );
    }
  }
}

function key(projectId: string, id: string): string {
  return `${projectId}\u0000${id}`;
}

function groupByProject(batch: Pending[]): Map<string, Pending[]> {
  const byProject = new Map<string, Pending[]>();
  for (const p of batch) {
    const list = byProject.get(p.projectId) ?? [];
    list.push(p);
    byProject.set(p.projectId, list);
  }
  return byProject;
}
