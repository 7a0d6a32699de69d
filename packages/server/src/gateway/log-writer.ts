import type { ParsedInteraction } from '@ratchet/core';
import type { Store } from '@ratchet/store';
import type { FastifyBaseLogger } from 'fastify';
import type { Metrics } from '../metrics.js';

interface Pending {
  projectId: string;
  interaction: ParsedInteraction & { id: string };
}

/**
 * Buffers the gateway's interactions and writes them in batches off the response path, so that
 * logging adds no latency to the call it logs. Flushed on an interval, when the buffer fills, on
 * demand (feedback for an id still in the buffer), and on shutdown. A failed write is retried at
 * the next flush; the buffer is bounded so a dead database cannot exhaust memory.
 */
export class InteractionLogWriter {
  private buffer: Pending[] = [];
  private readonly pendingIds = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private closed = false;
  /** Batches committed so far: lets a reader tell that a write landed while it was looking. */
  writes = 0;

  constructor(
    private readonly store: Store,
    private readonly metrics: Metrics,
    private readonly log: FastifyBaseLogger,
    private readonly intervalMs: number,
    private readonly batchSize: number,
    private readonly maxBuffered = 100_000,
  ) {}

  enqueue(projectId: string, interaction: ParsedInteraction & { id: string }): void {
    if (this.closed) throw new Error('log writer is closed');
    if (this.buffer.length >= this.maxBuffered) {
      this.log.error({ dropped: interaction.id }, 'interaction log buffer full; dropping the oldest entry');
      const dropped = this.buffer.shift()!;
      this.pendingIds.delete(`${dropped.projectId}\u0000${dropped.interaction.id}`);
    }
    this.buffer.push({ projectId, interaction });
    this.pendingIds.add(`${projectId}\u0000${interaction.id}`);
    this.metrics.logQueueDepth.set(this.buffer.length);
    if (this.buffer.length >= this.batchSize) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.intervalMs);
  }

  /** Whether an interaction id is buffered and not yet written. */
  has(projectId: string, id: string): boolean {
    return this.pendingIds.has(`${projectId}\u0000${id}`);
  }

  /** Writes everything buffered so far; resolves when it is committed. */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.flushing) await this.flushing;
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    this.flushing = this.write(batch).finally(() => {
      this.flushing = undefined;
    });
    await this.flushing;
  }

  private async write(batch: Pending[]): Promise<void> {
    const byProject = new Map<string, ParsedInteraction[]>();
    for (const p of batch) {
      const list = byProject.get(p.projectId) ?? [];
      list.push(p.interaction);
      byProject.set(p.projectId, list);
    }
    const written: Pending[] = [];
    try {
      for (const [projectId, items] of byProject) {
        // The log is in memory until flushed anyway: waiting for the disk at commit would only
        // stall the event loop (SQLite fsyncs on it) for every call in flight.
        await this.store.writeRelaxed((trx) => this.store.interactions.insert(projectId, items, trx));
        written.push(...batch.filter((p) => p.projectId === projectId));
        this.metrics.interactionsWritten.inc({ source: 'gateway' }, items.length);
      }
    } catch (err) {
      this.metrics.logWriteFailures.inc();
      this.log.error({ err, count: batch.length }, 'writing gateway interactions failed; will retry');
      const done = new Set(written);
      this.buffer.unshift(...batch.filter((p) => !done.has(p)));
      if (!this.closed) this.timer ??= setTimeout(() => void this.flush(), Math.max(this.intervalMs, 1000));
      if (written.length > 0) this.writes++;
      for (const p of written) this.pendingIds.delete(`${p.projectId}\u0000${p.interaction.id}`);
      this.metrics.logQueueDepth.set(this.buffer.length);
      return;
    }
    this.writes++;
    for (const p of batch) this.pendingIds.delete(`${p.projectId}\u0000${p.interaction.id}`);
    this.metrics.logQueueDepth.set(this.buffer.length);
  }

  /** Writes what is left and stops accepting entries. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
