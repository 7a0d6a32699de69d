import type { ApiKeyKind, ParsedFeedback, ParsedInteraction } from '@ratchet/core';
import { checkNotInFuture, RatchetError } from '@ratchet/core';
import type { FeedbackGate, Store, WriteResult } from '@ratchet/store';
import type { FeedbackTokens } from './feedback-tokens.js';
import type { InteractionLogWriter } from './gateway/log-writer.js';
import type { Metrics } from './metrics.js';
import type { RateLimiter } from './middleware/rate-limit.js';

/**
 * The write side of the capture API: what the HTTP handlers, the OTLP ingest and the gateway
 * share. Every write here is committed before it returns.
 */
export class CaptureService {
  constructor(
    private readonly store: Store,
    private readonly metrics: Metrics,
    private readonly logWriter: InteractionLogWriter,
    readonly tokens: FeedbackTokens,
    /** Public-key feedback per end user (a browser's key is shared by all of the app's users). */
    private readonly perEndUser: RateLimiter,
  ) {}

  async writeInteractions(projectId: string, items: ParsedInteraction[]): Promise<WriteResult[]> {
    const results = await this.store.interactions.insert(projectId, items);
    this.metrics.interactionsWritten.inc(
      { source: items[0]?.source ?? 'api' },
      results.filter((r) => r.created).length,
    );
    return results;
  }

  /**
   * Writes feedback all or nothing. From a secret key (trusted server side) as given; from a
   * public key only with each item's feedback token, as the interaction's end user at server time.
   */
  async writeFeedback(
    projectId: string,
    items: ParsedFeedback[],
    itemPath: (i: number) => string,
    keyKind: ApiKeyKind = 'secret',
  ): Promise<WriteResult[]> {
    const at = (i: number, field: string) => [itemPath(i), field].filter(Boolean).join('.');
    const now = Date.now();
    items.forEach((f, i) => {
      checkNotInFuture(f.createdAt, now, at(i, 'createdAt'));
    });
    let results: WriteResult[];
    const writesBefore = this.logWriter.writes;
    const pending = (id: string) =>
      this.logWriter.writes !== writesBefore || this.logWriter.has(projectId, id);
    const gate: FeedbackGate | undefined =
      keyKind === 'public'
        ? await this.tokens.publicGate(projectId, items, at, this.perEndUser, pending, now)
        : undefined;
    try {
      results = await this.store.feedback.insert(projectId, items, itemPath, gate);
    } catch (err) {
      // Feedback can race the gateway's buffered log of the interaction it rates: the entry is
      // still buffered, or its batch committed while this insert ran (PostgreSQL runs them
      // concurrently). Write the buffer, then try once more.
      const racing = items.some((f) => pending(f.interactionId));
      if (!(err instanceof RatchetError && err.code === 'not_found' && racing)) throw err;
      await this.logWriter.flush();
      results = await this.store.feedback.insert(projectId, items, itemPath, gate);
    }
    items.forEach((f, i) => {
      if (results[i]?.created) this.metrics.feedbackWritten.inc({ kind: f.kind });
    });
    return results;
  }
}
