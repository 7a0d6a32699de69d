import { SeededRandom } from '@ratchet/core';
import { describe, expect, it } from 'vitest';
import { fitWordModel, wordFeatures } from './words.js';

describe('the word features of an answer', () => {
  it('are its lower-cased words and adjacent pairs, each once', () => {
    expect(wordFeatures('Reset it. Reset IT now!').sort()).toEqual(
      ['it', 'it now', 'it reset', 'now', 'reset', 'reset it'].sort(),
    );
    expect(wordFeatures('')).toEqual([]);
  });
});

describe('the word model of what people like', () => {
  // Answers built from a polite or a curt opening, a right or a wrong fix, and filler: people
  // like the polite right ones. 40 answers to learn from, as a 5% rating rate leaves.
  const openings = { polite: 'Happy to help.', curt: 'Not my problem.' };
  const fixes = { right: 'Press Track next to your order.', wrong: 'Orders can never be tracked.' };
  const fillers = ['Our office has a plant.', 'Thanks for writing.', 'Have a nice day.', ''];
  function answers(n: number, seed: number) {
    const rng = new SeededRandom(seed);
    return Array.from({ length: n }, () => {
      const polite = rng.uniform() < 0.5;
      const right = rng.uniform() < 0.5;
      const text = `${polite ? openings.polite : openings.curt} ${right ? fixes.right : fixes.wrong} ${fillers[rng.int(4)]}`;
      return { text, up: polite && right };
    });
  }

  it('orders fresh answers by what made people like the ones it learnt from', () => {
    const model = fitWordModel(answers(40, 1), { l2: 1, iterations: 300 });
    const fresh = answers(400, 2).map((a) => ({ ...a, score: model(a.text) }));
    const liked = fresh.filter((a) => a.up);
    const disliked = fresh.filter((a) => !a.up);
    // Every liked answer scores above every disliked one.
    expect(Math.min(...liked.map((a) => a.score))).toBeGreaterThan(Math.max(...disliked.map((a) => a.score)));
    // A text with no word it has seen gets the base rate's log-odds, whatever its length.
    expect(model('zzz qqq')).toBeCloseTo(model('xx'), 12);
  });

  it('is the same model for the same examples, and says nothing without any', () => {
    const ex = answers(30, 3);
    const a = fitWordModel(ex, { l2: 1, iterations: 100 });
    const b = fitWordModel(ex, { l2: 1, iterations: 100 });
    expect(a('Happy to help. Press Track next to your order.')).toBe(
      b('Happy to help. Press Track next to your order.'),
    );
    expect(fitWordModel([], { l2: 1, iterations: 10 })('anything')).toBe(0);
  });

  it('lets a larger penalty keep rare words from deciding alone', () => {
    const ex = answers(40, 4);
    const loose = fitWordModel(ex, { l2: 0.01, iterations: 300 });
    const tight = fitWordModel(ex, { l2: 100, iterations: 300 });
    const polite = 'Happy to help. Press Track next to your order.';
    expect(Math.abs(tight(polite) - tight('xx'))).toBeLessThan(Math.abs(loose(polite) - loose('xx')));
  });
});
