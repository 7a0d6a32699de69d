import type { RowLineage } from '@ratchet/core';
import { describe, expect, it } from 'vitest';
import { lineageCounts } from './datasets.js';

const row = (split: 'train' | 'test', interactionIds: string[], feedbackIds: string[]): RowLineage => ({
  split,
  interactionIds,
  feedbackIds,
  promptHash: 'p',
});

describe('lineageCounts', () => {
  it('counts each feedback event once when rows share an interaction', () => {
    const lineage = [
      row('train', ['a'], ['f1', 'f2']),
      // A correction of b: the corrected row and the original as undesirable both cite it.
      row('train', ['b'], ['c1']),
      row('train', ['b'], ['c1', 'f3']),
      row('test', ['d', 'e'], ['f4', 'f5']),
      row('test', ['e'], ['p1']),
      row('test', ['g'], []),
    ];
    const { membership, feedbackEvents } = lineageCounts(lineage);
    expect(feedbackEvents).toBe(new Set(lineage.flatMap((l) => l.feedbackIds)).size);
    expect(feedbackEvents).toBe(7);
    expect([...membership]).toEqual([
      ['a', 'train'],
      ['b', 'train'],
      ['d', 'test'],
      ['e', 'test'],
      ['g', 'test'],
    ]);
  });
});
