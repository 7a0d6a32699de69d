import { describe, expect, it } from 'vitest';
import { newId } from './ids.js';

const uuidV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('newId', () => {
  it('makes UUIDv7 ids that carry their millisecond', () => {
    const now = Date.now() + 10_000;
    const id = newId(now);
    expect(id).toMatch(uuidV7);
    expect(Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(now);
  });

  it('keeps ids in order past 4,096 ids in one millisecond', () => {
    const now = Date.now() + 20_000;
    const ids = Array.from({ length: 10_000 }, () => newId(now));
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    for (const id of ids) expect(id).toMatch(uuidV7);
  });

  it('gives an event from long ago an id of its own time', () => {
    const past = Date.UTC(2020, 0, 1);
    const id = newId(past);
    expect(Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(past);
  });
});
