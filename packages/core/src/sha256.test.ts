import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mulberry32 } from './random.js';
import { sha256, sha256Hex } from './sha256.js';

describe('sha256', () => {
  it('gives the published digests', () => {
    expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it("equals node:crypto's digest for every length across block boundaries and for non-ASCII text", () => {
    const rand = mulberry32(9);
    const alphabet = ['a', 'Z', ' ', 'é', '😀', 'ｚ', '\u0000', '\n'];
    for (let length = 0; length < 300; length++) {
      const text = Array.from({ length }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
      expect(sha256Hex(text), `length ${length}`).toBe(createHash('sha256').update(text).digest('hex'));
    }
    const long = 'x'.repeat(100_000);
    expect(Buffer.from(sha256(long)).toString('hex')).toBe(createHash('sha256').update(long).digest('hex'));
  });
});
