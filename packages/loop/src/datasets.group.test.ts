import { buildDpoDataset, type CandidateExample, promptHash } from '@ratchet/core';
import { describe, expect, it } from 'vitest';
import { groupSimilarPrompts } from './datasets.js';

const answer = (i: number, order: string, good: boolean): CandidateExample => {
  const prompt = [{ role: 'user' as const, content: `I want a refund for order ${order}.` }];
  return {
    interactionId: `i${i}`,
    promptHash: promptHash(prompt),
    prompt,
    completion: { role: 'assistant', content: good ? 'Press Return in Orders.' : 'Refunds are impossible.' },
    reward: good ? 0.8 : -0.8,
    lower: null,
    upper: null,
    n: 1,
    weight: 1,
    createdAt: i,
    feedbackIds: [`f${i}`],
  };
};

describe('groupSimilarPrompts', () => {
  const orders = ['A1042', 'B3307', 'C5123', 'D7034', 'A2291', 'B4410', 'C6718', 'D8862'];
  const candidates = orders.map((o, i) => answer(i, o, i % 2 === 0));
  // An unrelated question stays on its own.
  const other: CandidateExample = {
    ...answer(99, 'x', true),
    prompt: [{ role: 'user', content: 'Where is my parcel?' }],
    promptHash: promptHash([{ role: 'user', content: 'Where is my parcel?' }]),
  };

  it('pairs answers to near-identical prompts that exact matching leaves unpaired', () => {
    expect(buildDpoDataset([...candidates, other], []).rows).toHaveLength(0);
    const grouped = groupSimilarPrompts([...candidates, other], 0.6);
    expect(new Set(grouped.slice(0, 8).map((c) => c.promptHash)).size).toBe(1);
    expect(grouped[8]!.promptHash).toBe(other.promptHash);
    const built = buildDpoDataset(grouped, []);
    expect(built.rows.length).toBeGreaterThan(0);
    for (const row of built.rows) {
      expect(row.chosen[0]!.content).toBe('Press Return in Orders.');
      expect(row.rejected[0]!.content).toBe('Refunds are impossible.');
    }
    // One group cannot straddle the split.
    const splits = new Set(built.lineage.map((l) => l.split));
    expect(splits.size).toBe(1);
  });
});
