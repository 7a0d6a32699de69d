import { describe, expect, it } from 'vitest';
import { jsonText } from './json-text.js';

function nested(depth: number): unknown {
  let v: unknown = 'bottom';
  for (let i = 0; i < depth; i++) v = i % 2 ? [v, 1] : { a: v, b: null };
  return v;
}

describe('jsonText', () => {
  it('writes what JSON.stringify writes for ordinary values, escapes included', () => {
    const value = {
      s: 'a\u0000b\uD800c"\n',
      n: [1, -2.5, 1e300, null, true, false],
      o: { '': {}, k: [], u: undefined },
      arr: [undefined, 'x'],
    };
    expect(jsonText(value)).toBe(JSON.stringify(value));
    expect(jsonText('x')).toBe('"x"');
    expect(jsonText(undefined)).toBe('null');
  });

  it('writes a value nested 20,000 levels deep, which JSON.stringify cannot, and it parses back equal', () => {
    const deep = nested(20_000);
    expect(() => JSON.stringify(deep)).toThrow(RangeError);
    const text = jsonText(deep);
    expect(text.startsWith('[{"a":[{"a":')).toBe(true);
    // Compare by walking down both: deep equality helpers recurse too.
    let a: unknown = JSON.parse(text);
    let b: unknown = deep;
    for (let i = 0; i < 20_000; i++) {
      const key = Array.isArray(b) ? 0 : 'a';
      expect(Array.isArray(a)).toBe(Array.isArray(b));
      a = (a as Record<string | number, unknown>)[key];
      b = (b as Record<string | number, unknown>)[key];
    }
    expect(a).toBe('bottom');
  });

  it('matches JSON.stringify on a deep-but-fine value written the slow way', () => {
    const v = nested(50);
    // Force the explicit-stack path by nesting the fine value under a too-deep sibling, then compare the part.
    const text = jsonText([v, nested(20_000)]);
    expect(text.startsWith(`[${JSON.stringify(v)},`)).toBe(true);
  });

  it('stops at maxChars, on the fast path and the deep one, with the same prefix', () => {
    const deep = nested(20_000);
    const full = jsonText(deep);
    expect(jsonText(deep, 1000)).toBe(full.slice(0, 1000));
    expect(jsonText({ a: 'xyz' }, 4)).toBe('{"a"');
    expect(jsonText({ a: 'xyz' }, 100)).toBe('{"a":"xyz"}');
  });
});
