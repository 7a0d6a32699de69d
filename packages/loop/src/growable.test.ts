import { describe, expect, it } from 'vitest';
import { IdIndex } from './growable.js';

describe('IdIndex', () => {
  it('numbers ids in first-seen order whether they arrive sorted, repeated or out of order', () => {
    const index = new IdIndex();
    const seen = ['a', 'a', 'b', 'c', 'c', 'b', 'a', 'd', 'b', 'e', 'a'].map((id) => index.of(id));
    expect(seen).toEqual([0, 0, 1, 2, 2, 1, 0, 3, 1, 4, 0]);
    expect(index.ids).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('agrees with a plain map on random ids', () => {
    const index = new IdIndex();
    const map = new Map<string, number>();
    let seed = 7;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed;
    };
    const sorted = Array.from({ length: 500 }, (_, i) => `i${String(i).padStart(4, '0')}`);
    const ids = [
      ...sorted,
      ...Array.from({ length: 2000 }, () => `i${String(next() % 700).padStart(4, '0')}`),
    ];
    for (const id of ids) {
      if (!map.has(id)) map.set(id, map.size);
      expect(index.of(id)).toBe(map.get(id));
    }
    expect(index.ids).toEqual([...map.keys()]);
  });
});
