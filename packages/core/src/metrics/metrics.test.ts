import { describe, expect, it } from 'vitest';
import { corpusBleu, sentenceBleu, tokenize13a } from './bleu.js';
import { corpusChrf, sentenceChrf } from './chrf.js';
import { binaryClassificationMetrics } from './classification.js';
import { corpusPerplexity, perplexity } from './perplexity.js';
import { porterStem } from './porter-stemmer.js';
import { pyRstrip, pySplit } from './python-text.js';
import { rouge, rougeMulti, rougeTokenize } from './rouge.js';
import { exactMatch, normalizeAnswer, tokenF1 } from './squad.js';

// Hand-checkable cases; equality with sacrebleu / rouge-score is in metrics.reference.test.ts.
describe('BLEU', () => {
  it('is 100 for an identical sentence and 0 with nothing in common', () => {
    expect(sentenceBleu('The cat sat on the mat.', ['The cat sat on the mat.']).score).toBeCloseTo(100, 12);
    expect(sentenceBleu('dogs bark', ['The cat sat on the mat.']).score).toBe(0);
  });

  it('applies the brevity penalty of the closest reference', () => {
    const s = corpusBleu(['a b c d'], [['a b c d e f', 'a b c d e f g h']]);
    expect(s.referenceLength).toBe(6);
    expect(s.brevityPenalty).toBeCloseTo(Math.exp(1 - 6 / 4), 14);
  });

  it('tokenizes punctuation like mteval-v13a but keeps decimals', () => {
    expect(tokenize13a('Hello, world! It costs $3.50.')).toBe('Hello , world ! It costs $ 3.50 .');
    expect(tokenize13a('Tom &amp; Jerry')).toBe('Tom & Jerry');
  });

  it('needs aligned inputs and a reference', () => {
    expect(() => corpusBleu(['a'], [])).toThrow(/1 hypotheses but 0/);
    expect(() => sentenceBleu('a', [])).toThrow(/at least one reference/);
  });
});

describe('chrF', () => {
  it('is 100 for identical text, chrF++ too', () => {
    expect(sentenceChrf('naïve café', ['naïve café']).score).toBeCloseTo(100, 12);
    expect(corpusChrf(['a b'], [['a b']], { wordOrder: 2 }).score).toBeCloseTo(100, 12);
  });

  it('counts characters by code point', () => {
    // One emoji is one character: the bigram 'a😀' exists in both.
    expect(sentenceChrf('a😀', ['a😀b']).score).toBeGreaterThan(50);
  });
});

describe('ROUGE', () => {
  it('computes unigram, bigram and LCS F-measures', () => {
    const r = rouge('the cat was found under the bed', 'the cat was under the bed');
    expect(r.rouge1!.recall).toBeCloseTo(1, 14);
    expect(r.rouge1!.precision).toBeCloseTo(6 / 7, 14);
    expect(r.rouge2!.recall).toBeCloseTo(4 / 5, 14);
    expect(r.rougeL!.fmeasure).toBeCloseTo((2 * (6 / 7)) / (1 + 6 / 7), 14);
  });

  it('tokenizes like rouge-score (ASCII alphanumerics only) and stems on request', () => {
    expect(rougeTokenize('Héllo, World 42!')).toEqual(['h', 'llo', 'world', '42']);
    expect(rougeTokenize('running quickly', true)).toEqual(['run', 'quickli']);
    expect(porterStem('generalizations')).toBe('gener');
  });

  it('takes the best reference', () => {
    const r = rougeMulti('a b c', ['x y z', 'a b c']);
    expect(r.rouge1!.fmeasure).toBe(1);
  });
});

describe('exact match and token F1', () => {
  it('normalize like the SQuAD script', () => {
    expect(normalizeAnswer('The  Eiffel-Tower!')).toBe('eiffeltower');
    expect(exactMatch('the Eiffel Tower', ['Eiffel tower.'])).toBe(1);
    expect(tokenF1('Paris France', 'Paris')).toBeCloseTo(2 / 3, 14);
    expect(tokenF1('', '')).toBe(1);
    expect(tokenF1('', 'x')).toBe(0);
  });

  it('use a Unicode word boundary for articles, as Python does', () => {
    // Python's \b sees 'é' as a letter, so 'éthe' keeps its 'the'.
    expect(normalizeAnswer('éthe a')).toBe('éthe');
  });
});

describe('perplexity', () => {
  it('is exp of the mean negative log-probability', () => {
    expect(perplexity([Math.log(0.5), Math.log(0.5)])).toBeCloseTo(2, 14);
    expect(corpusPerplexity([[Math.log(0.25)], [Math.log(1), Math.log(1), Math.log(0.25)]])).toBeCloseTo(
      Math.exp(-(2 * Math.log(0.25)) / 4),
      14,
    );
    expect(perplexity([])).toBeNaN();
    expect(() => perplexity([0.1])).toThrow(/<= 0/);
  });
});

describe('binary classification', () => {
  it('counts and scores, with 0 for empty denominators', () => {
    const m = binaryClassificationMetrics([true, true, false, false], [true, false, true, false]);
    expect([m.truePositives, m.falsePositives, m.falseNegatives, m.trueNegatives]).toEqual([1, 1, 1, 1]);
    expect(m.f1).toBeCloseTo(0.5, 14);
    expect(binaryClassificationMetrics([false], [false]).precision).toBe(0);
  });
});

describe('Python string semantics', () => {
  it("split and rstrip on Python's whitespace", () => {
    expect(pySplit(' a\x1cb\u0085c\ufeffd ')).toEqual(['a', 'b', 'c\ufeffd']);
    expect(pyRstrip('x \u3000\n')).toBe('x');
  });
});
