import { describe, expect, it } from 'vitest';
import { FeedbackInput } from './feedback-kinds.js';
import { asPublicFeedback, checkNotInFuture } from './feedback-token.js';

const now = 1_800_000_000_000;

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
