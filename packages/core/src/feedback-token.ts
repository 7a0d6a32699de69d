import { RatchetError } from './errors.js';
import { referencedInteractionIds } from './feedback.js';
import type { ParsedFeedback } from './feedback-kinds.js';

/**
 * Feedback tokens: what lets a browser (holding only the project's public key) rate exactly the
 * interactions its own user was served, as that user. The gateway (or the capture API) signs
 * `(project, interaction, end user, expiry)` with the project's HMAC key; the feedback API checks
 * it. The end user is not in the token (it is signed, not carried): the server reads it from the
 * stored interaction, so the token stays short and does not show the user id to whoever sees it.
 *
 * Format: `ft1.<expiry, unix seconds in base 36>.<HMAC-SHA-256, base64url>` (about 55 URL-safe
 * characters).
 */
export const feedbackTokenPolicy = {
  /** How long a token is valid unless the server is configured otherwise: 7 days. */
  ttlMs: 7 * 24 * 3600 * 1000,
  /** How far a `createdAt` may lie ahead of the server's clock (other machines' clocks drift). */
  clockSkewMs: 5 * 60 * 1000,
};

/** The token format's version, the first part of every token. */
export const FEEDBACK_TOKEN_VERSION = 'ft1';
/** A token's shape: version, expiry (unix seconds, base 36), MAC (base64url). */
export const FEEDBACK_TOKEN = /^ft1\.([0-9a-z]{1,11})\.([A-Za-z0-9_-]{43})$/;

export interface FeedbackTokenClaims {
  projectId: string;
  interactionId: string;
  /** The interaction's end user, null when it has none. */
  endUserId: string | null;
  /** Epoch milliseconds; rounded up to the second. */
  expiresAt: number;
}

export type FeedbackTokenProblem = 'malformed' | 'expired' | 'mismatch';

/** Checks what needs no key: the shape and the expiry. Undefined when the token may be valid. */
export function feedbackTokenShapeProblem(token: string, now: number): FeedbackTokenProblem | undefined {
  const match = FEEDBACK_TOKEN.exec(token);
  if (!match) return 'malformed';
  if (Number.parseInt(match[1]!, 36) * 1000 <= now) return 'expired';
  return undefined;
}

/** The error for a token problem, naming the field (`feedbackToken` or `items.N.feedbackToken`). */
export function feedbackTokenError(problem: FeedbackTokenProblem | 'missing', path: string): RatchetError {
  const messages = {
    missing:
      "a public key needs the interaction's feedback token (the gateway's x-ratchet-feedback-token header)",
    malformed: 'not a feedback token',
    expired: 'the feedback token has expired',
    mismatch: 'the feedback token is not valid for this interaction',
  };
  return new RatchetError(
    problem === 'mismatch' ? 'forbidden' : 'unauthorized',
    `${path}: ${messages[problem]}`,
    path,
  );
}

/**
 * Who rates when feedback comes through the public key: the interaction's end user, or, for an
 * interaction logged without one, a rater of that interaction alone (two anonymous visitors must
 * not pool into one rater whose reliability calibration would then average over both).
 */
export function publicRaterId(interactionId: string, endUserId: string | null): string {
  return endUserId ?? `anonymous:${interactionId}`;
}

/**
 * The rules for feedback from a public key, once its token is verified: the source is `user`, the
 * rater is the interaction's end user (a body naming anything else is refused, not rewritten, so
 * a client bug or a forgery shows), a preference compares only interactions of that same end
 * user, and `createdAt` is the server's time. `endUsers` maps each referenced interaction that
 * exists to its end user.
 */
export function asPublicFeedback(
  f: ParsedFeedback,
  endUsers: ReadonlyMap<string, string | null>,
  at: (field: string) => string,
): ParsedFeedback {
  if (f.source !== 'user') {
    throw new RatchetError(
      'forbidden',
      `${at('source')}: a public key sends feedback as the end user; source must be "user"`,
      at('source'),
    );
  }
  const endUser = endUsers.get(f.interactionId) ?? null;
  const rater = publicRaterId(f.interactionId, endUser);
  if (f.raterId !== undefined && f.raterId !== rater) {
    throw new RatchetError(
      'forbidden',
      `${at('raterId')}: a public key rates as the interaction's end user; leave raterId out`,
      at('raterId'),
    );
  }
  if (f.kind === 'preference') {
    const field = f.ranking ? 'ranking' : 'other';
    for (const id of referencedInteractionIds(f)) {
      // Existence is checked later (404); here only interactions that exist and belong to someone else.
      if (id === f.interactionId || !endUsers.has(id)) continue;
      if (endUser === null || endUsers.get(id) !== endUser) {
        throw new RatchetError(
          'forbidden',
          `${at(field)}: a public key may compare only interactions of the same end user`,
          at(field),
        );
      }
    }
  }
  const { createdAt: _ignored, feedbackToken: _used, ...rest } = f;
  return { ...rest, raterId: rater } as ParsedFeedback;
}

/** A feedback time may not lie in the future (beyond clock skew): it would stay "current" for good. */
export function checkNotInFuture(
  createdAt: number | undefined,
  now: number,
  path: string,
  skewMs = feedbackTokenPolicy.clockSkewMs,
): void {
  if (createdAt !== undefined && createdAt > now + skewMs) {
    throw new RatchetError(
      'invalid_request',
      `${path}: ${createdAt} (epoch ms) lies in the future; the server's clock says ${now}`,
      path,
    );
  }
}
