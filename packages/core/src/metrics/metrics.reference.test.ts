import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { SeededRandom } from '../random.js';
import { type BleuOptions, type BleuScore, corpusBleu, sentenceBleu, tokenize13a } from './bleu.js';
import { type ChrfOptions, corpusChrf, sentenceChrf } from './chrf.js';
import { binaryClassificationMetrics } from './classification.js';
import { porterStem } from './porter-stemmer.js';
import { pyRstrip } from './python-text.js';
import { type RougeOptions, type RougeScore, type RougeType, rouge, rougeMulti } from './rouge.js';
import { exactMatch, tokenF1 } from './squad.js';

/**
 * Cross-check against the reference implementations: sacrebleu (BLEU, chrF, chrF++), rouge-score
 * (with nltk's Porter stemmer), the SQuAD 2.0 script's EM/F1 and scikit-learn's precision, recall
 * and F1, run by the repository's Python venv on one shared corpus. Every number must agree to
 * 1e-9.
 */
const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
const python = `${repoRoot}.venv/bin/python`;
const script = fileURLToPath(new URL('./reference/reference_metrics.py', import.meta.url));
const TOLERANCE = 1e-9;

interface Item {
  hyp: string;
  refs: string[];
}

/** Hand-written cases for the corners: punctuation, numbers, casing, Unicode, empty strings. */
const HANDWRITTEN: Item[] = [
  { hyp: 'The cat sat on the mat.', refs: ['The cat is on the mat.'] },
  { hyp: 'the cat sat on the mat', refs: ['THE CAT SAT ON THE MAT!'] },
  { hyp: 'It costs $3.50, not 3,000 dollars (or 1-2 euros).', refs: ['It costs $3.50 - not $3,000!'] },
  {
    hyp: 'Call 555-1234 at 10:30 a.m., ok?',
    refs: ['Call 555-1234 at 10:30am.', 'Phone 555 1234 at half past ten.'],
  },
  { hyp: '', refs: ['A reference with words.'] },
  { hyp: 'A hypothesis with words.', refs: [''] },
  { hyp: '', refs: [''] },
  { hyp: '   ', refs: ['\t'] },
  {
    hyp: 'Café naïve résumé — “quotes” and ‘single’ ones…',
    refs: ['Cafe naive resume - "quotes" and \'single\' ones...'],
  },
  { hyp: '東京は日本の首都です。', refs: ['日本の首都は東京です。'] },
  { hyp: 'Emoji 😀 test 👍🏽 with ZWJ 👩‍💻 chars', refs: ['Emoji 😀 test 👍 with chars'] },
  {
    hyp: 'ΣΊΣΥΦΟΣ was Greek. İstanbul was Constantinople.',
    refs: ['Σίσυφος was Greek; Istanbul was Constantinople.'],
  },
  {
    hyp: 'First sentence here.\nSecond sentence follows.\nThird one ends it.',
    refs: ['First sentence is here.\nThe second follows.\n\nA third ends it.'],
  },
  {
    hyp: 'Tom &amp; Jerry &lt;3 &quot;cheese&quot; <skipped> well-\nknown',
    refs: ['Tom & Jerry <3 "cheese" wellknown'],
  },
  {
    hyp: 'non\u00a0breaking\u2003spaces\u0085and\x1cseparators',
    refs: ['non breaking spaces and separators'],
  },
  { hyp: 'e.g. U.S.A., i.e. Ph.D.; 3.14159 vs 2,718.28', refs: ['e.g. USA, i.e. PhD; 3.14 vs 2.72'] },
  { hyp: '(hi) [there] {friend} "quoted" end.', refs: ['hi there friend quoted end'] },
  {
    hyp: 'Running runners ran quickly; the generalization generalizes relational conditional happiness.',
    refs: [
      'The runner runs quick and generalized relations conditionally, happily.',
      'Nothing alike at all.',
    ],
  },
  { hyp: 'a an the', refs: ['the'] },
  { hyp: 'The answer is Paris', refs: ['Paris', 'paris, France', 'the city of Paris'] },
  { hyp: 'x', refs: ['x'] },
  { hyp: 'repeat repeat repeat repeat', refs: ['repeat', 'repeat repeat'] },
  { hyp: 'Ünïcödé ÀÉÎÕÜ straße STRASSE ǅ ﬁ', refs: ['unicode aeiou strasse strasse dž fi'] },
  {
    hyp: 'under_score snake_case kebab-case CamelCase',
    refs: ['under score snake case kebab case camel case'],
  },
];

const WORDS = [
  'the',
  'a',
  'an',
  'cat',
  'cats',
  'dog',
  'dogs',
  'running',
  'ran',
  'runs',
  'happily',
  'happiness',
  'model',
  'models',
  'answer',
  'answered',
  'feedback',
  'rating',
  'ratings',
  'thumbs',
  'up',
  'down',
  'Paris',
  'France',
  'LLM',
  'GPU',
  '42',
  '3.14',
  '1,000',
  '2-3',
  'e.g.',
  'naïve',
  'café',
  '東京',
  '😀',
  'well-known',
  "don't",
  "it's",
  '(note)',
  '"quote"',
  'end.',
  'stop!',
  'why?',
  'and/or',
  '50%',
  '$5',
];

function randomSentence(rng: SeededRandom): string {
  const n = rng.int(18);
  const words = Array.from({ length: n }, () => WORDS[rng.int(WORDS.length)]!);
  const sep = () => [' ', ' ', ' ', '  ', '\n', ', ', '. '][rng.int(7)]!;
  return words.reduce((s, w, i) => (i === 0 ? w : s + sep() + w), '');
}

/** A reference that shares part of the hypothesis, so scores spread over 0..100. */
function relatedSentence(rng: SeededRandom, hyp: string): string {
  const words = hyp.split(/\s+/).filter(Boolean);
  const kept = words.filter(() => rng.uniform() < 0.7);
  for (let i = 0; i < rng.int(4); i++)
    kept.splice(rng.int(kept.length + 1), 0, WORDS[rng.int(WORDS.length)]!);
  return kept.join(rng.uniform() < 0.2 ? '\n' : ' ');
}

function randomItems(rng: SeededRandom, count: number): Item[] {
  return Array.from({ length: count }, () => {
    const hyp = randomSentence(rng);
    const refs = Array.from({ length: 1 + rng.int(3) }, () =>
      rng.uniform() < 0.8 ? relatedSentence(rng, hyp) : randomSentence(rng),
    );
    return { hyp, refs };
  });
}

const STEM_WORDS = [
  'caresses',
  'ponies',
  'ties',
  'caress',
  'cats',
  'feed',
  'agreed',
  'plastered',
  'bled',
  'motoring',
  'sing',
  'conflated',
  'troubled',
  'sized',
  'hopping',
  'tanned',
  'falling',
  'hissing',
  'fizzed',
  'failing',
  'filing',
  'happy',
  'sky',
  'skies',
  'dying',
  'lying',
  'relational',
  'conditional',
  'rational',
  'valenci',
  'hesitanci',
  'digitizer',
  'conformabli',
  'radicalli',
  'differentli',
  'vileli',
  'analogousli',
  'vietnamization',
  'predication',
  'operator',
  'feudalism',
  'decisiveness',
  'hopefulness',
  'callousness',
  'formaliti',
  'sensitiviti',
  'sensibiliti',
  'triplicate',
  'formative',
  'formalize',
  'electriciti',
  'electrical',
  'hopeful',
  'goodness',
  'revival',
  'allowance',
  'inference',
  'airliner',
  'gyroscopic',
  'adjustable',
  'defensible',
  'irritant',
  'replacement',
  'adjustment',
  'dependent',
  'adoption',
  'homologou',
  'communism',
  'activate',
  'angulariti',
  'homologous',
  'effective',
  'bowdlerize',
  'probate',
  'rate',
  'cease',
  'controll',
  'roll',
  'generalizations',
  'oscillators',
  'enjoy',
  'spied',
  'tried',
  'flies',
  'dies',
  'lied',
  'innings',
  'news',
  'proceed',
  'exceed',
  'succeed',
  'analogi',
  'archaeology',
  'fully',
  'beautifully',
  'yyyy',
  'syzygy',
  'toy',
  'ivy',
  'oats',
  'trees',
  'troubles',
  'private',
  'oaten',
  'orrery',
  'by',
  'a',
  'ab',
  'abc',
  'ying',
  'eed',
  'ied',
  'sses',
  'xies',
  'knotted',
  'buzzed',
  'filled',
  'hissed',
  'quizzes',
];

interface Reference {
  items: {
    sentence_bleu: PyBleu;
    sentence_chrf: number;
    sentence_chrfpp: number;
    rouge: Record<string, RougeScore>;
    rouge_stem: Record<string, RougeScore>;
    rouge_single: Record<string, RougeScore>;
    exact: number;
    f1: number;
    tokenize_13a: string;
  }[];
  corpus: Record<string, PyBleu | number>;
  stems: string[];
  binary: { precision: number; recall: number; f1: number }[];
}

interface PyBleu {
  score: number;
  counts: number[];
  totals: number[];
  precisions: number[];
  bp: number;
  sys_len: number;
  ref_len: number;
}

const ROUGE_TYPES: RougeType[] = ['rouge1', 'rouge2', 'rouge3', 'rougeL', 'rougeLsum'];

function expectClose(actual: number, expected: number, label: string): void {
  if (!(Math.abs(actual - expected) <= TOLERANCE)) {
    throw new Error(`${label}: ours ${actual}, reference ${expected} (diff ${Math.abs(actual - expected)})`);
  }
}

function expectBleu(ours: BleuScore, ref: PyBleu, label: string): void {
  expectClose(ours.score, ref.score, `${label} score`);
  expectClose(ours.brevityPenalty, ref.bp, `${label} bp`);
  expect(ours.hypothesisLength, `${label} sys_len`).toBe(ref.sys_len);
  expect(ours.referenceLength, `${label} ref_len`).toBe(ref.ref_len);
  for (let i = 0; i < ours.precisions.length; i++) {
    expectClose(ours.precisions[i]!, ref.precisions[i]!, `${label} precision ${i + 1}`);
    expectClose(ours.counts[i]!, ref.counts[i]!, `${label} count ${i + 1}`);
    expectClose(ours.totals[i]!, ref.totals[i]!, `${label} total ${i + 1}`);
  }
}

function expectRouge(
  ours: Partial<Record<RougeType, RougeScore>>,
  ref: Record<string, RougeScore>,
  label: string,
) {
  for (const type of ROUGE_TYPES) {
    for (const key of ['precision', 'recall', 'fmeasure'] as const) {
      expectClose(ours[type]![key], ref[type]![key], `${label} ${type}.${key}`);
    }
  }
}

const available = existsSync(python);
const rng = new SeededRandom(20261124);
const items = [...HANDWRITTEN, ...randomItems(rng, 200)];
const binaryCases = [
  { predicted: [true, false, true, true, false], actual: [true, false, false, true, true] },
  { predicted: [false, false, false], actual: [true, false, true] },
  { predicted: [true, true], actual: [false, false] },
  { predicted: [false, false], actual: [false, false] },
  ...Array.from({ length: 20 }, () => {
    const n = 1 + rng.int(60);
    return {
      predicted: Array.from({ length: n }, () => rng.uniform() < 0.5),
      actual: Array.from({ length: n }, () => rng.uniform() < 0.4),
    };
  }),
];

describe.skipIf(!available)('text metrics equal sacrebleu, rouge-score, SQuAD and scikit-learn', () => {
  let reference: Reference;

  beforeAll(() => {
    const run = spawnSync(python, [script], {
      input: JSON.stringify({ items, words: STEM_WORDS, binary: binaryCases }),
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    if (run.status !== 0) throw new Error(`reference script failed: ${run.stderr}`);
    reference = JSON.parse(run.stdout) as Reference;
  });

  it('tokenizes like sacrebleu 13a', () => {
    items.forEach((item, i) => {
      expect(tokenize13a(pyRstrip(item.hyp)), item.hyp).toBe(reference.items[i]!.tokenize_13a);
    });
  });

  it('sentence BLEU, chrF and chrF++ per item', () => {
    items.forEach((item, i) => {
      const ref = reference.items[i]!;
      const label = JSON.stringify(item);
      expectBleu(sentenceBleu(item.hyp, item.refs), ref.sentence_bleu, `sentence BLEU ${label}`);
      expectClose(sentenceChrf(item.hyp, item.refs).score, ref.sentence_chrf, `chrF ${label}`);
      expectClose(
        sentenceChrf(item.hyp, item.refs, { wordOrder: 2 }).score,
        ref.sentence_chrfpp,
        `chrF++ ${label}`,
      );
    });
  });

  it('corpus BLEU and chrF, with every option sacrebleu offers here', () => {
    const hyps = items.map((i) => i.hyp);
    const refs = items.map((i) => i.refs);
    const bleuVariants: Record<string, BleuOptions> = {
      bleu: {},
      bleu_lowercase: { lowercase: true },
      bleu_none_tok: { tokenize: 'none' },
      bleu_floor: { smoothMethod: 'floor' },
      bleu_addk: { smoothMethod: 'add-k' },
      bleu_nosmooth: { smoothMethod: 'none' },
      bleu_effective: { effectiveOrder: true },
    };
    for (const [name, options] of Object.entries(bleuVariants)) {
      expectBleu(corpusBleu(hyps, refs, options), reference.corpus[name] as PyBleu, name);
    }
    const chrfVariants: Record<string, ChrfOptions> = {
      chrf: {},
      chrfpp: { wordOrder: 2 },
      chrf_lowercase: { lowercase: true },
      chrf_whitespace: { whitespace: true },
      chrf_eps: { epsSmoothing: true },
    };
    for (const [name, options] of Object.entries(chrfVariants)) {
      expectClose(corpusChrf(hyps, refs, options).score, reference.corpus[name] as number, name);
    }
  });

  it('ROUGE-1/2/3/L/Lsum, with and without the stemmer, one and several references', () => {
    const options: RougeOptions = { types: ROUGE_TYPES };
    items.forEach((item, i) => {
      const ref = reference.items[i]!;
      const label = JSON.stringify(item);
      expectRouge(rougeMulti(item.hyp, item.refs, options), ref.rouge, `multi ${label}`);
      expectRouge(
        rougeMulti(item.hyp, item.refs, { ...options, useStemmer: true }),
        ref.rouge_stem,
        `stem ${label}`,
      );
      expectRouge(rouge(item.hyp, item.refs[0]!, options), ref.rouge_single, `single ${label}`);
    });
  });

  it("stems like nltk's PorterStemmer", () => {
    STEM_WORDS.forEach((w, i) => {
      expect(porterStem(w), w).toBe(reference.stems[i]);
    });
  });

  it('exact match and token F1 like the SQuAD 2.0 script', () => {
    items.forEach((item, i) => {
      const ref = reference.items[i]!;
      expect(exactMatch(item.hyp, item.refs), JSON.stringify(item)).toBe(ref.exact);
      expectClose(tokenF1(item.hyp, item.refs), ref.f1, `F1 ${JSON.stringify(item)}`);
    });
  });

  it('precision, recall and F1 like scikit-learn', () => {
    binaryCases.forEach((c, i) => {
      const ours = binaryClassificationMetrics(c.predicted, c.actual);
      const ref = reference.binary[i]!;
      expectClose(ours.precision, ref.precision, `precision #${i}`);
      expectClose(ours.recall, ref.recall, `recall #${i}`);
      expectClose(ours.f1, ref.f1, `f1 #${i}`);
    });
  });
});
