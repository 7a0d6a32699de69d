import { describe, expect, it } from 'vitest';
import {
  healthBucketFits,
  healthBucketNames,
  healthWindowNames,
  healthWindows,
} from './production-health.js';

describe('production-health choices', () => {
  it('lists windows from shortest to longest, so the dashboard offers them in that order', () => {
    const lengths = healthWindowNames.map((w) => healthWindows[w]);
    expect(lengths).toEqual([...lengths].sort((a, b) => a - b));
    expect(healthBucketNames).toEqual(['hour', 'day']);
  });

  it('allows hour buckets up to 30 days and day buckets over any window', () => {
    expect(healthWindowNames.filter((w) => healthBucketFits(w, 'hour'))).toEqual(['24h', '7d', '30d']);
    expect(healthWindowNames.every((w) => healthBucketFits(w, 'day'))).toBe(true);
  });
});
