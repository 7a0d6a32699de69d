import '../test-utils/linear-engine.js';
import { describe, expect, it } from 'vitest';
import { tokenize } from '../analysis/themes.js';
import { parseVerdictLabel } from '../eval/judge.js';
import { linearRegExp } from './linear-regexp.js';
import { findPii, PiiConfig, piiKinds } from './pii.js';

/**
 * Every PII detector over 100k-character adversarial texts: runs of the characters each pattern
 * consumes, near-misses repeated back to back, prefixes without their endings. Before the
 * rewrite, `a.` repeated took the e-mail pattern 45 s and `eyJ-` repeated the secret pattern 18 s
 * (quadratic backtracking); a linear scan takes milliseconds. The bound is generous (a shared,
 * slow CI machine), yet a quadratic detector misses it by orders of magnitude.
 */
const N = 100_000;
const BOUND_MS = 1000;
const fill = (unit: string) => unit.repeat(Math.ceil(N / unit.length)).slice(0, N);

const adversarial: string[] = [
  ...[
    'a',
    'a.',
    'a-',
    '.a',
    'a@',
    '@',
    'a@a.',
    'a@a.a1',
    'a@-',
    '.a@',
    'a_',
    '1',
    '1 ',
    '1-',
    '1.',
    '1:',
    'f:',
    '::',
    '1::',
    'ffff:',
    ' ',
    '\t',
    'sk-',
    'sk-a',
    'rk_sec_',
    'ghp_',
    'xoxa-',
    'AKIA',
    'AIza',
    'eyJ',
    'eyJ-',
    'eyJa.',
    'eyJaaaaaaaaa.eyJ',
    'eyJaaaaaaaaa.',
    'Bearer ',
    'Bearer',
    'AB12 ',
    'AB12',
    '(1)',
    '+1 ',
    '12 12 ',
    '1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 x',
  ].map(fill),
  `Bearer${' '.repeat(N - 7)}x`,
  `a@${'a.'.repeat(N / 2 - 2)}`,
  `1::${'f'.repeat(N - 4)}g`,
  `${'f:'.repeat(6)}:${'f'.repeat(N - 20)}_`,
  `eyJ${'a'.repeat(N - 4)}!`,
  `${'a'.repeat(N - 1)}@`,
];

function slowest(run: (text: string) => unknown, texts = adversarial): { ms: number; input: string } {
  let worst = { ms: 0, input: '' };
  for (const text of texts) {
    const started = performance.now();
    run(text);
    const ms = performance.now() - started;
    if (ms > worst.ms) worst = { ms, input: text.slice(0, 24) };
  }
  return worst;
}

describe('PII detection runs in linear time on hostile text', () => {
  it.each(piiKinds)('%s stays under the bound on every 100k-character adversarial text', (kind) => {
    const worst = slowest((text) => findPii(text, { kinds: [kind] }));
    expect(worst.ms, `slowest on ${JSON.stringify(worst.input)}`).toBeLessThan(BOUND_MS);
  });

  it.each([['(a+)+$'], ['\\w+@\\w+\\.\\w+'], ['(\\d+)*x']])(
    'the custom pattern %s, exponential or quadratic on a backtracking engine, runs linearly',
    (pattern) => {
      // The linear engine is slower per character than V8's usual one (0.1-0.4 s per 100k here),
      // so the texts that stress these patterns rather than all of them.
      const texts = ['a', '1', 'a@a.', 'xoxa-']
        .map(fill)
        .concat(`${'a'.repeat(N - 1)}@`, `${'1'.repeat(N - 1)}y`);
      const worst = slowest((text) => findPii(text, { kinds: [], custom: { custom: pattern } }), texts);
      expect(worst.ms, `slowest on ${JSON.stringify(worst.input)}`).toBeLessThan(BOUND_MS);
    },
  );

  it('a custom pattern the linear engine takes finds what it should', () => {
    expect(findPii('id ACCT-12345678 here', { kinds: [], custom: { acct: 'ACCT-\\d{8}' } })).toEqual([
      { kind: 'acct', start: 3, end: 16 },
    ]);
  });

  it.each([
    ['(a)\\1', 'linear time'],
    ['(?<=a)b', 'linear time'],
    ['a(?!b)', 'linear time'],
    ['\\d{17}', 'linear time'],
    ['(unclosed', 'not a valid regular expression'],
  ])('refuses the custom pattern %s, naming it', (pattern, reason) => {
    const parsed = PiiConfig.safeParse({ custom: { acct: pattern } });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]).toMatchObject({
      path: ['custom', 'acct'],
      message: expect.stringContaining(reason),
    });
    expect(linearRegExp(pattern).ok).toBe(false);
  });
});

describe('other patterns over user and model text run in linear time', () => {
  it('theme tokens trim apostrophes linearly', () => {
    const started = performance.now();
    expect(tokenize(`word${"'".repeat(N)}b`)).toEqual([`word${"'".repeat(N)}b`]);
    expect(tokenize(`''quoted''`)).toEqual(['quoted']);
    expect(performance.now() - started).toBeLessThan(BOUND_MS);
  });

  it('a judge verdict is found linearly after any amount of space', () => {
    const started = performance.now();
    expect(parseVerdictLabel(`VERDICT:${' '.repeat(N)}!`)).toBeNull();
    expect(parseVerdictLabel(`VERDICT:${' *'.repeat(N / 2)}!`)).toBeNull();
    expect(parseVerdictLabel('reasons...\nVERDICT: **better**')).toBe('BETTER');
    expect(performance.now() - started).toBeLessThan(BOUND_MS);
  });
});
