import {
  asPublicFeedback,
  feedbackTokenError,
  feedbackTokenShapeProblem,
  type ParsedFeedback,
  RatchetError,
} from '@ratchet/core';
import { type FeedbackGate, type Store, signFeedbackToken, verifyFeedbackToken } from '@ratchet/store';
import type { RateLimiter } from './middleware/rate-limit.js';

/**
 * Issues and checks feedback tokens with each project's key from the store. Keys never change,
 * so each is read once per process and kept: issuing a token on the gateway's hot path is one
 * HMAC, no query.
 */
export class FeedbackTokens {
  private readonly keys = new Map<string, Promise<string>>();

  constructor(
    private readonly store: Store,
    private readonly ttlMs: number,
  ) {}

  key(projectId: string): Promise<string> {
    let key = this.keys.get(projectId);
    if (!key) {
      key = this.store.projects.feedbackTokenKey(projectId);
      this.keys.set(projectId, key);
      // A failed read is not remembered: the next call asks the database again.
      key.catch(() => this.keys.delete(projectId));
    }
    return key;
  }

  async issue(projectId: string, interactionId: string, endUserId: string | null, now = Date.now()) {
    return signFeedbackToken(await this.key(projectId), {
      projectId,
      interactionId,
      endUserId,
      expiresAt: now + this.ttlMs,
    });
  }

  /**
   * The checks for a public-key write, as a gate the feedback insert runs once it knows each
   * interaction's end user. What needs no database (a token present, well formed, unexpired) is
   * checked here, first. `missing(id)` says whether an interaction absent from the database may
   * still be on its way (the gateway's log buffer): then the gate answers 404 so the caller can
   * flush and retry; otherwise it refuses the token, so a guessed id shows nothing about what exists.
   */
  async publicGate(
    projectId: string,
    items: readonly ParsedFeedback[],
    at: (index: number, field: string) => string,
    perEndUser: RateLimiter,
    pending: (interactionId: string) => boolean,
    now = Date.now(),
  ): Promise<FeedbackGate> {
    items.forEach((f, i) => {
      const path = at(i, 'feedbackToken');
      if (f.feedbackToken === undefined) throw feedbackTokenError('missing', path);
      const problem = feedbackTokenShapeProblem(f.feedbackToken, now);
      if (problem) throw feedbackTokenError(problem, path);
    });
    const key = await this.key(projectId);
    // The insert may run the gate twice (a retry after flushing the log buffer): charge once.
    const charged = new Set<number>();
    return (f, i, endUsers) => {
      if (!endUsers.has(f.interactionId)) {
        if (pending(f.interactionId))
          throw new RatchetError(
            'not_found',
            `${at(i, 'interactionId')}: interaction "${f.interactionId}" not found`,
            at(i, 'interactionId'),
          );
        throw feedbackTokenError('mismatch', at(i, 'feedbackToken'));
      }
      const endUserId = endUsers.get(f.interactionId) ?? null;
      const problem = verifyFeedbackToken(
        key,
        f.feedbackToken!,
        { projectId, interactionId: f.interactionId, endUserId },
        now,
      );
      if (problem) throw feedbackTokenError(problem, at(i, 'feedbackToken'));
      const checked = asPublicFeedback(f, endUsers, (field) => at(i, field));
      if (!charged.has(i)) {
        charged.add(i);
        perEndUser.take(`${projectId}\u0000${checked.raterId}`);
      }
      return checked;
    };
  }
}
