import { describe, expect, it } from 'vitest';
import { DEFAULT_HEAP_GROWING_PERCENT, heapGrowingPercent } from './heap-growth.js';

describe('RATCHET_HEAP_GROWING_PERCENT', () => {
  it("is 300 unless set, 0 keeps V8's own factor, and a set value is read as given", () => {
    expect(heapGrowingPercent({})).toBe(DEFAULT_HEAP_GROWING_PERCENT);
    expect(DEFAULT_HEAP_GROWING_PERCENT).toBe(300);
    expect(heapGrowingPercent({ RATCHET_HEAP_GROWING_PERCENT: '' })).toBe(300);
    expect(heapGrowingPercent({ RATCHET_HEAP_GROWING_PERCENT: '0' })).toBe(0);
    expect(heapGrowingPercent({ RATCHET_HEAP_GROWING_PERCENT: '150' })).toBe(150);
  });

  it.each(['-1', '1001', '2.5', 'lots', '1e9', '0x10 '])('refuses %j, naming the variable', (value) => {
    expect(() => heapGrowingPercent({ RATCHET_HEAP_GROWING_PERCENT: value })).toThrow(
      /RATCHET_HEAP_GROWING_PERCENT must be an integer from 0 to 1000/,
    );
  });
});
