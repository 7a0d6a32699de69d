import { describe, expect, it } from 'vitest';
import type { RowLineage } from '../datasets/types.js';
import { AugmentSpec, lastUserText, underRepresentedRows, withLastUserText } from './dataset.js';

const line = (split: 'train' | 'test', group: string): RowLineage => ({
  split,
  interactionIds: [group],
  feedbackIds: [],
  promptHash: group,
});

describe('augmentation rules', () => {
  it('picks the train rows of groups below the share of the largest, never test rows or ungrouped ones', () => {
    const lineage = [
      ...Array.from({ length: 10 }, () => line('train', 'big')),
      line('train', 'small'),
      line('test', 'small'),
      ...Array.from({ length: 5 }, () => line('train', 'half')),
      line('train', 'none'),
    ];
    const groupOf = (l: RowLineage) => (l.promptHash === 'none' ? undefined : l.promptHash);
    expect(underRepresentedRows(lineage, groupOf, 0.5)).toEqual([10]);
    // At 0.6 the group of 5 (half of 10) is under-represented too.
    expect(underRepresentedRows(lineage, groupOf, 0.6)).toEqual([10, 12, 13, 14, 15, 16]);
  });

  it('rewrites only the last user message of a row', () => {
    const row = {
      prompt: [
        { role: 'system' as const, content: 'Be kind.' },
        { role: 'user' as const, content: 'first' },
        { role: 'assistant' as const, content: 'ok' },
        { role: 'user' as const, content: 'second' },
      ],
      completion: [{ role: 'assistant' as const, content: 'answer' }],
    };
    expect(lastUserText(row)).toBe('second');
    const copy = withLastUserText(row, 'reworded');
    expect(copy.prompt.map((m) => m.content)).toEqual(['Be kind.', 'first', 'ok', 'reworded']);
    expect(copy.completion).toBe(row.completion);
    expect(row.prompt[3]!.content).toBe('second');
  });

  it('needs at least one method', () => {
    expect(AugmentSpec.safeParse({}).success).toBe(false);
    expect(AugmentSpec.parse({ eda: {} })).toMatchObject({ by: 'segment', belowShareOfLargest: 0.5 });
  });
});
