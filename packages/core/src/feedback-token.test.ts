import { describe, expect, it } from 'vitest';
import {
  asPublicFeedback,
  checkNotInFuture,
  feedbackTokenShapeProblem,
  newFeedbackTokenKey,
  signFeedbackToken,
  verifyFeedbackToken,
} from './feedback-token.js';
import { FeedbackInput } from './schemas/feedback.js';

const now = 1_800_000_000_000;
const claims = { projectId: 'p1', interactionId: 'i1', endUserId: 'alice' };

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

describe('public feedback rules', () => {
  const endUsers = new Map<string, string | null>([
    ['i1', 'alice'],
    ['i2', 'alice'],
    ['i3', 'bob'],
    ['anon', null],
  ]);
  const parse = (f: Record<string, unknown>) => FeedbackInput.parse({ interactionId: 'i1', ...f });
  const at = (field: string) => `items.0.${field}`;

  it('rate as the end user (or a rater of the one anonymous interaction) at server time', () => {
    const f = asPublicFeedback(parse({ kind: 'thumbs', value: 'up', createdAt: 5 }), endUsers, at);
    expect(f).toMatchObject({ raterId: 'alice', source: 'user' });
    expect(f.createdAt).toBeUndefined();
    expect(
      asPublicFeedback(parse({ kind: 'thumbs', value: 'up', interactionId: 'anon' }), endUsers, at).raterId,
    ).toBe('anonymous:anon');
    expect(
      asPublicFeedback(parse({ kind: 'thumbs', value: 'up', raterId: 'alice' }), endUsers, at).raterId,
    ).toBe('alice');
  });

  it('refuse another source, another rater and a preference over someone else’s answers', () => {
    const refused = (f: Record<string, unknown>) => {
      try {
        asPublicFeedback(parse(f), endUsers, at);
      } catch (err) {
        return [(err as { code: string }).code, (err as { path: string }).path];
      }
      return undefined;
    };
    expect(refused({ kind: 'thumbs', value: 'up', source: 'judge' })).toEqual([
      'forbidden',
      'items.0.source',
    ]);
    expect(refused({ kind: 'thumbs', value: 'up', raterId: 'bob' })).toEqual([
      'forbidden',
      'items.0.raterId',
    ]);
    expect(refused({ kind: 'preference', other: 'i3', choice: 'this' })).toEqual([
      'forbidden',
      'items.0.other',
    ]);
    expect(refused({ kind: 'preference', ranking: ['i1', 'i2', 'i3'] })).toEqual([
      'forbidden',
      'items.0.ranking',
    ]);
    expect(refused({ kind: 'preference', other: 'i2', choice: 'this' })).toBeUndefined();
  });

  it('times in the future are refused beyond the clock skew', () => {
    expect(() => checkNotInFuture(now + 60_000, now, 'createdAt')).not.toThrow();
    expect(() => checkNotInFuture(2 ** 53 - 1, now, 'createdAt')).toThrow(/createdAt/);
  });
});
