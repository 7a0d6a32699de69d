import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  type ApiKeyKind,
  apiKeyPrefix,
  FEEDBACK_TOKEN,
  FEEDBACK_TOKEN_VERSION,
  type FeedbackTokenClaims,
  type FeedbackTokenProblem,
  feedbackTokenShapeProblem,
} from '@ratchet/core';

/**
 * The secrets Ratchet makes and checks (API keys, feedback-token keys and their MACs), with
 * node:crypto: they live with the store, the layer that runs on Node, so that core stays a
 * library a browser can load. The formats and the rules that need no key are core's.
 */

/** A new API key: 192 random bits behind a prefix that says what kind of key it is. */
export function generateApiKey(kind: ApiKeyKind): string {
  return apiKeyPrefix[kind] + randomBytes(24).toString('base64url');
}

/**
 * Keys carry 192 bits of entropy, so a plain SHA-256 is a safe verifier (no slow KDF needed, as
 * there is nothing to brute-force) and lets the server find a key by its hash in one lookup.
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** A new per-project HMAC key: 256 random bits, base64url. */
export function newFeedbackTokenKey(): string {
  return randomBytes(32).toString('base64url');
}

function mac(key: string, claims: Omit<FeedbackTokenClaims, 'expiresAt'>, expirySeconds: number): Buffer {
  // A JSON array is an unambiguous encoding: no choice of ids can make two claims sign alike.
  const message = JSON.stringify([
    FEEDBACK_TOKEN_VERSION,
    claims.projectId,
    claims.interactionId,
    claims.endUserId,
    expirySeconds,
  ]);
  return createHmac('sha256', Buffer.from(key, 'base64url')).update(message).digest();
}

export function signFeedbackToken(key: string, claims: FeedbackTokenClaims): string {
  const expirySeconds = Math.ceil(claims.expiresAt / 1000);
  return `${FEEDBACK_TOKEN_VERSION}.${expirySeconds.toString(36)}.${mac(key, claims, expirySeconds).toString('base64url')}`;
}

/**
 * Verifies a token for the expected project, interaction and end user (a token signed for any
 * other one, or altered in any character, is a `mismatch`). The MAC is compared in constant time.
 */
export function verifyFeedbackToken(
  key: string,
  token: string,
  expected: Omit<FeedbackTokenClaims, 'expiresAt'>,
  now: number,
): FeedbackTokenProblem | undefined {
  const problem = feedbackTokenShapeProblem(token, now);
  if (problem) return problem;
  const [, expiry, given] = FEEDBACK_TOKEN.exec(token)!;
  // Compared as text, not decoded bytes: base64url's last character has spare bits, and a token
  // differing in them is still a different token.
  const want = Buffer.from(mac(key, expected, Number.parseInt(expiry!, 36)).toString('base64url'));
  const got = Buffer.from(given!);
  return got.length === want.length && timingSafeEqual(got, want) ? undefined : 'mismatch';
}
