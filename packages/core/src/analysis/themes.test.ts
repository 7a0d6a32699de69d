import { describe, expect, it } from 'vitest';
import { pearsonFromSums } from './correlation.js';
import { findThemes, tokenize } from './themes.js';

const complaints = [
  ...[
    'The refund policy answer was wrong',
    'Wrong information about the refund window',
    'It said refunds take a year, wrong',
    'Refund answer is wrong again',
    'wrong refund deadline given',
  ],
  ...[
    'Way too long and rambling',
    'The answer rambles on and on, too long',
    'Too long, get to the point',
    'Rambling answer, much too long',
    'long rambling reply',
  ],
  ...[
    'Rude tone, very curt',
    'The bot was rude to me',
    'Curt and rude reply',
    'rude answer, felt dismissed',
    'so rude and curt',
  ],
];

describe('comment themes', () => {
  it('finds the planted themes and names them by their terms', () => {
    const themes = findThemes(
      complaints.map((text, i) => ({ id: `c${i}`, text })),
      { k: 3, seed: 2 },
    );
    expect(themes).toHaveLength(3);
    expect(themes.map((t) => t.count)).toEqual([5, 5, 5]);
    const labels = themes.map((t) => t.terms.join(' '));
    expect(labels.some((l) => /refund|wrong/.test(l))).toBe(true);
    expect(labels.some((l) => /long|rambl/.test(l))).toBe(true);
    expect(labels.some((l) => /rude|curt/.test(l))).toBe(true);
    for (const t of themes) {
      const group = Number(t.ids[0]!.slice(1)) / 5;
      expect(t.ids.every((id) => Math.floor(Number(id.slice(1)) / 5) === Math.floor(group))).toBe(true);
      expect(t.examples).toHaveLength(3);
    }
  });

  it('tokenizes without stop words and numbers, and handles empty input', () => {
    expect(tokenize('The refunds took 30 days!')).toEqual(['refund', 'took', 'day']);
    expect(findThemes([])).toEqual([]);
  });

  it('computes Pearson correlation from sums', () => {
    const xs = [1, 2, 3, 4, 5];
    const ys = [2, 4, 5, 4, 5];
    const s = {
      n: 5,
      sumX: 15,
      sumY: 20,
      sumXX: 55,
      sumYY: 86,
      sumXY: xs.reduce((a, x, i) => a + x * ys[i]!, 0),
    };
    expect(pearsonFromSums(s)).toBeCloseTo(0.7745966692, 9);
    expect(pearsonFromSums({ ...s, n: 2 })).toBeNull();
  });
});
