import { apiKeyKindOf, feedbackTokenShapeProblem } from '@ratchet/core';
import { describe, expect, it } from 'vitest';
import {
  generateApiKey,
  hashApiKey,
  newFeedbackTokenKey,
  signFeedbackToken,
  verifyFeedbackToken,
} from './secrets.js';

const now = 1_800_000_000_000;
const claims = { projectId: 'p1', interactionId: 'i1', endUserId: 'alice' };

describe('API keys', () => {
  it('say their kind by prefix, differ every time and hash to a stable verifier', () => {
    const secret = generateApiKey('secret');
    expect(apiKeyKindOf(secret)).toBe('secret');
    expect(apiKeyKindOf(generateApiKey('public'))).toBe('public');
    expect(generateApiKey('secret')).not.toBe(secret);
    expect(hashApiKey(secret)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashApiKey(secret)).toBe(hashApiKey(secret));
  });
});

describe('feedback tokens', () => {
  const key = newFeedbackTokenKey();
  const token = signFeedbackToken(key, { ...claims, expiresAt: now + 3600_000 });

  it('are compact, URL-safe and verify for exactly what they were signed for', () => {
    expect(token).toMatch(/^ft1\.[0-9a-z]+\.[A-Za-z0-9_-]{43}$/);
    expect(token.length).toBeLessThan(64);
    expect(encodeURIComponent(token)).toBe(token);
    expect(verifyFeedbackToken(key, token, claims, now)).toBeUndefined();
    for (const other of [
      { ...claims, projectId: 'p2' },
      { ...claims, interactionId: 'i2' },
      { ...claims, endUserId: 'bob' },
      { ...claims, endUserId: null },
    ])
      expect(verifyFeedbackToken(key, token, other, now)).toBe('mismatch');
    expect(verifyFeedbackToken(newFeedbackTokenKey(), token, claims, now)).toBe('mismatch');
  });

  it('refuse any altered character, a stretched expiry and an expired token', () => {
    for (let i = 0; i < token.length; i++) {
      const c = token[i] === 'A' ? 'B' : 'A';
      const altered = token.slice(0, i) + c + token.slice(i + 1);
      expect(verifyFeedbackToken(key, altered, claims, now)).toBeDefined();
    }
    const [, exp, mac] = token.split('.');
    const later = `ft1.${(Number.parseInt(exp!, 36) + 86_400).toString(36)}.${mac}`;
    expect(verifyFeedbackToken(key, later, claims, now)).toBe('mismatch');
    expect(verifyFeedbackToken(key, token, claims, now + 3600_000 + 1000)).toBe('expired');
    expect(feedbackTokenShapeProblem('rk_pub_x', now)).toBe('malformed');
  });
});
