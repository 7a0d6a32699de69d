import type { ParsedFeedback, ParsedInteraction } from '@ratchet/core';
import { RatchetError } from '@ratchet/core';
import type { Store, WriteResult } from '@ratchet/store';
import type { InteractionLogWriter } from './gateway/log-writer.js';
import type { Metrics } from './metrics.js';

/**
 * The write side of the capture API: what the HTTP handlers, the OTLP ingest and the gateway
 * share. Every write here is committed before it returns.
 */
export class CaptureService {
  constructor(
    private readonly store: Store,
    private readonly metrics: Metrics,
    private readonly logWriter: InteractionLogWriter,
  ) {}

  async writeInteractions(projectId: string, items: ParsedInteraction[]): Promise<WriteResult[]> {
    const results = await this.store.interactions.insert(projectId, items);
    this.metrics.interactionsWritten.inc(
      { source: items[0]?.source ?? 'api' },
      results.filter((r) => r.created).length,
    );
    return results;
  }

  async writeFeedback(
    projectId: string,
    items: ParsedFeedback[],
    itemPath: (i: number) => string,
  ): Promise<WriteResult[]> {
    let results: WriteResult[];
    const writesBefore = this.logWriter.writes;
    try {
      results = await this.store.feedback.insert(projectId, items, itemPath);
    } catch (err) {
      // Feedback can race the gateway's buffered log of the interaction it rates: the entry is
      // still buffered, or its batch committed while this insert ran (PostgreSQL runs them
      // concurrently). Write the buffer, then try once more.
      const pending =
        this.logWriter.writes !== writesBefore ||
        items.some((f) => this.logWriter.has(projectId, f.interactionId));
      if (!(err instanceof RatchetError && err.code === 'not_found' && pending)) throw err;
      await this.logWriter.flush();
      results = await this.store.feedback.insert(projectId, items, itemPath);
    }
    items.forEach((f, i) => {
      if (results[i]?.created) this.metrics.feedbackWritten.inc({ kind: f.kind });
    });
    return results;
  }
}
