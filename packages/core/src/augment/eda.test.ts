import { describe, expect, it } from 'vitest';
import { augmentWithEda } from './eda.js';

const prompt = 'How can I change the address for my package please';

describe('EDA augmentation', () => {
  it('makes distinct variants with every operation, deterministically', () => {
    const a = augmentWithEda(prompt, { variants: 8, seed: 3 });
    const b = augmentWithEda(prompt, { variants: 8, seed: 3 });
    expect(a).toEqual(b);
    expect(a.length).toBe(8);
    expect(new Set(a.map((v) => v.text)).size).toBe(8);
    expect(a.map((v) => v.text)).not.toContain(prompt);
    expect(new Set(a.map((v) => v.operation))).toEqual(new Set(['synonym', 'insert', 'swap', 'delete']));
  });

  it('replaces words with synonyms from the lexicon, keeping capitalization', () => {
    const [v] = augmentWithEda('Change my password', { operations: ['synonym'], alpha: 0.5, variants: 1 });
    expect(v!.text).toMatch(/^(Modify|Update|Alter|Change) my (password|passcode|credentials)$/);
    expect(v!.text).not.toBe('Change my password');
  });

  it('keeps word counts within the operation and rejects a bad config', () => {
    const words = prompt.split(' ').length;
    for (const v of augmentWithEda(prompt, { operations: ['swap'], variants: 3 }))
      expect(v.text.split(' ').length).toBe(words);
    for (const v of augmentWithEda(prompt, { operations: ['delete'], variants: 3 }))
      expect(v.text.split(' ').length).toBeLessThan(words);
    expect(() => augmentWithEda(prompt, { alpha: 0.9 })).toThrow(/alpha/);
  });
});
