import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, storableIssue, TRUNCATED_MARKER, toStorable } from './storable.js';

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

describe('storable values', () => {
  it('finds a NUL, a lone surrogate and excess depth, with the path to each', () => {
    expect(storableIssue({ messages: [{ content: 'ok' }, { content: 'a\u0000b' }] })).toMatchObject({
      path: 'messages.1.content',
      reason: 'nul_character',
    });
    expect(storableIssue({ text: 'x\uD800y' }, 'items.3')).toMatchObject({
      path: 'items.3.text',
      reason: 'lone_surrogate',
    });
    expect(storableIssue({ text: 'x\uDC00' })?.reason).toBe('lone_surrogate');
    expect(storableIssue({ 'k\u0000': 1 })).toMatchObject({ path: 'k\u0000', reason: 'nul_character' });
    expect(storableIssue(nested(MAX_JSON_DEPTH))).toBeUndefined();
    expect(storableIssue(nested(MAX_JSON_DEPTH + 1))?.reason).toBe('too_deep');
  });

  it('accepts paired surrogates (emoji) and ordinary values untouched', () => {
    const v = { text: 'thumbs 👍 ok', n: 3, list: [true, null, 'é'] };
    expect(storableIssue(v)).toBeUndefined();
    const r = toStorable(v);
    expect(r.value).toBe(v);
    expect(r.repairs).toEqual([]);
  });

  it('repairs a copy: U+FFFD for bad characters, a marker for deep subtrees, the input unchanged', () => {
    const input = { a: 'x\u0000y', b: ['\uD83D'], 'c\u0000': 1, deep: nested(20_000) };
    const { value, repairs } = toStorable(input);
    expect(value.a).toBe('x\uFFFDy');
    expect(value.b).toEqual(['\uFFFD']);
    expect(value).toHaveProperty('c\uFFFD', 1);
    expect(storableIssue(value)).toBeUndefined();
    expect(JSON.stringify(value)).toContain(TRUNCATED_MARKER);
    expect(repairs.map((r) => r.reason).sort()).toEqual(
      ['lone_surrogate', 'nul_character', 'nul_character', 'too_deep'].sort(),
    );
    expect(input.a).toBe('x\u0000y');
  });

  it('walks a 20,000-level value without overflowing the stack', () => {
    let v: unknown = 'leaf';
    for (let i = 0; i < 20_000; i++) v = [v];
    expect(storableIssue(v)?.reason).toBe('too_deep');
    expect(() => JSON.stringify(toStorable(v).value)).not.toThrow();
  });
});
