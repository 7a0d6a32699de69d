import { describe, expect, it } from 'vitest';
import { RatchetError } from '../errors.js';
import { SeededRandom } from '../random.js';
import { defaultScoreConfigs, type ScoreConfig } from '../schemas/score-config.js';
import { cohenKappa, fleissKappa, fleissTable } from './kappa.js';
import {
  krippendorffAlpha,
  krippendorffAlphaFromCounts,
  krippendorffAlphaFromUnits,
} from './krippendorff.js';
import { agreementByCriterion, pairwiseCohenKappa, reliabilityMatrix } from './summary.js';
import { sortedDistinct } from './values.js';

const n = null;

describe("Fleiss' kappa on textbook examples", () => {
  it('gives 0.210 on the Wikipedia example (exactly 4211/20059 by hand)', () => {
    const table = [
      [0, 0, 0, 0, 14],
      [0, 2, 6, 4, 2],
      [0, 0, 3, 5, 6],
      [0, 3, 9, 2, 0],
      [2, 2, 8, 1, 1],
      [7, 7, 0, 0, 0],
      [3, 2, 6, 3, 0],
      [2, 5, 3, 2, 2],
      [6, 5, 2, 1, 0],
      [0, 2, 2, 3, 7],
    ];
    // p_j = 1/7, 1/5, 39/140, 3/20, 8/35; P-bar = 172/455; P-e = 417/1960.
    expect(fleissKappa(table)).toBeCloseTo(4211 / 20059, 14);
  });

  it("gives 0.4302445 on Fleiss' 1971 psychiatric diagnoses (30 patients, 6 raters, 5 diagnoses)", () => {
    // Patients x raters as in Fleiss (1971) and R's irr::diagnoses; kappam.fleiss reports 0.4302445.
    const diagnoses = [
      [4, 4, 4, 4, 4, 4],
      [2, 2, 2, 5, 5, 5],
      [2, 3, 3, 3, 3, 5],
      [5, 5, 5, 5, 5, 5],
      [2, 2, 2, 4, 4, 4],
      [1, 1, 3, 3, 3, 3],
      [3, 3, 3, 3, 5, 5],
      [1, 1, 3, 3, 3, 4],
      [1, 1, 4, 4, 4, 4],
      [5, 5, 5, 5, 5, 5],
      [1, 4, 4, 4, 4, 4],
      [1, 2, 4, 4, 4, 4],
      [2, 2, 2, 3, 3, 3],
      [1, 4, 4, 4, 4, 4],
      [2, 2, 4, 4, 4, 5],
      [3, 3, 3, 3, 3, 5],
      [1, 1, 1, 4, 5, 5],
      [1, 1, 1, 1, 1, 2],
      [2, 2, 4, 4, 4, 4],
      [1, 3, 3, 5, 5, 5],
      [5, 5, 5, 5, 5, 5],
      [2, 4, 4, 4, 4, 4],
      [2, 2, 4, 5, 5, 5],
      [1, 1, 4, 4, 4, 4],
      [1, 4, 4, 4, 4, 5],
      [2, 2, 2, 2, 2, 4],
      [1, 1, 1, 1, 5, 5],
      [2, 2, 4, 4, 4, 4],
      [1, 3, 3, 3, 3, 3],
      [5, 5, 5, 5, 5, 5],
    ];
    const ratersByUnits = diagnoses[0]!.map((_, r) => diagnoses.map((patient) => patient[r]!));
    const { categories, counts } = fleissTable(ratersByUnits);
    expect(categories).toEqual([1, 2, 3, 4, 5]);
    const columnTotals = categories.map((_, j) => counts.reduce((s, row) => s + row[j]!, 0));
    expect(columnTotals).toEqual([26, 26, 30, 55, 43]);
    expect(fleissKappa(counts)).toBeCloseTo(0.4302445, 7);
  });

  it('rejects tables with unequal raters per subject', () => {
    expect(() =>
      fleissKappa([
        [2, 1],
        [1, 1],
      ]),
    ).toThrow(RatchetError);
    expect(() => fleissKappa([[1, 0]])).toThrow(/two raters/);
  });
});

describe("Krippendorff's alpha", () => {
  const doc = [
    [n, n, n, n, n, 3, 4, 1, 2, 1, 1, 3, 3, n, 3],
    [1, n, 2, 1, 3, 3, 4, 3, n, n, n, n, n, n, n],
    [n, n, 2, 1, 3, 4, 4, n, 2, 1, 1, 3, 3, n, 4],
  ];

  it('reproduces the published examples', () => {
    // Krippendorff's own example, as in the `krippendorff` package docstring.
    expect(krippendorffAlpha(doc, { level: 'nominal' })).toBeCloseTo(0.691358, 6);
    expect(krippendorffAlpha(doc, { level: 'interval' })).toBeCloseTo(0.810845, 6);
    const ordinal = [
      [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
      [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
      [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
      [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ];
    expect(krippendorffAlpha(ordinal, { level: 'ordinal' })).toBeCloseTo(0.815, 3);
    expect(krippendorffAlpha(ordinal, { level: 'ratio' })).toBeCloseTo(0.797, 3);
    const words = ['very low', 'low', 'mid', 'high', 'very high'];
    const asWords = ordinal.map((row) => row.map((v) => (v === null ? null : words[v - 1]!)));
    expect(krippendorffAlpha(asWords, { level: 'ordinal', valueDomain: words })).toBeCloseTo(0.815, 3);
    expect(krippendorffAlpha(asWords, { level: 'nominal' })).toBeCloseTo(0.743, 3);
  });

  it('accepts value counts (units x values) like the package', () => {
    const counts = [
      [1, 0, 0, 0],
      [0, 0, 0, 0],
      [0, 2, 0, 0],
      [2, 0, 0, 0],
      [0, 0, 2, 0],
      [0, 0, 2, 1],
      [0, 0, 0, 3],
      [1, 0, 1, 0],
      [0, 2, 0, 0],
      [2, 0, 0, 0],
      [2, 0, 0, 0],
      [0, 0, 2, 0],
      [0, 0, 2, 0],
      [0, 0, 0, 0],
      [0, 0, 1, 1],
    ];
    expect(krippendorffAlphaFromCounts(counts, { level: 'nominal' })).toBeCloseTo(0.691358, 6);
  });

  it('is 1 for perfect agreement, NaN when undefined, and rejects bad input', () => {
    expect(
      krippendorffAlpha(
        [
          [1, 2, 3],
          [1, 2, 3],
        ],
        { level: 'interval' },
      ),
    ).toBe(1);
    expect(
      krippendorffAlpha(
        [
          [1, n],
          [n, 2],
        ],
        { level: 'nominal' },
      ),
    ).toBeNaN(); // nothing pairable
    expect(
      krippendorffAlpha(
        [
          [1, 1],
          [1, 1],
        ],
        { level: 'nominal' },
      ),
    ).toBeNaN(); // one value
    expect(() => krippendorffAlpha([[1, 2], [1]], { level: 'nominal' })).toThrow(/one entry per unit/);
    expect(() =>
      krippendorffAlpha(
        [
          ['a', 'b'],
          ['a', 'a'],
        ],
        { level: 'ordinal' },
      ),
    ).toThrow(/valueDomain/);
    expect(() =>
      krippendorffAlpha(
        [
          [1, 7],
          [1, 2],
        ],
        { level: 'ordinal', valueDomain: [1, 2, 3] },
      ),
    ).toThrow(/outside/);
    expect(() =>
      krippendorffAlpha(
        [
          [1, 'a'],
          [1, 2],
        ],
        { level: 'nominal' },
      ),
    ).toThrow(/mix/);
  });
});

describe("Cohen's kappa", () => {
  it('matches the scikit-learn docstring and drops missing pairs', () => {
    const a = ['negative', 'positive', 'negative', 'neutral', 'positive'];
    const b = ['negative', 'positive', 'negative', 'neutral', 'negative'];
    expect(cohenKappa(a, b)).toBeCloseTo(0.6875, 12);
    expect(cohenKappa([...a, 'x', null], [...b, null, 'y'])).toBeCloseTo(0.6875, 12);
    expect(cohenKappa([1, 1], [1, 1])).toBeNaN();
    expect(() => cohenKappa([1], [1, 2])).toThrow(RatchetError);
  });

  it('orders string categories by code point, as scikit-learn does', () => {
    // UTF-16 order would put the emoji (surrogates from U+D800) before the fullwidth z (U+FF5A)
    // and give -0.5; code point order is a < ｚ < 😀.
    expect(cohenKappa(['a', '😀', 'ｚ'], ['ｚ', '😀', 'a'], { weights: 'linear' })).toBeCloseTo(0.25, 12);
    expect(sortedDistinct(['😀', 'ｚ', 'a', 'ab', ''])).toEqual(['', 'a', 'ab', 'ｚ', '😀']);
  });
});

describe('agreement per criterion and overall', () => {
  const configs = new Map<string, ScoreConfig>([
    ...defaultScoreConfigs.map((c) => [c.name, c] as const),
    [
      'tone',
      {
        name: 'tone',
        usage: 'criterion',
        dataType: 'categorical',
        min: null,
        max: null,
        categories: ['rude', 'neutral', 'warm'],
        weight: 1,
        description: null,
      },
    ],
  ]);

  it('builds the matrix and computes alpha per criterion at the right level', () => {
    const rows = [
      ...[5, 4, 2, 1, 3].flatMap((v, u) => [
        { unitId: `u${u}`, raterId: 'ann', criterion: 'accuracy', value: v },
        { unitId: `u${u}`, raterId: 'bob', criterion: 'accuracy', value: Math.min(5, v + 1) },
      ]),
      ...['warm', 'neutral', 'rude', 'warm'].flatMap((v, u) => [
        { unitId: `u${u}`, raterId: 'ann', criterion: 'tone', value: v },
        { unitId: `u${u}`, raterId: 'bob', criterion: 'tone', value: u === 3 ? 'neutral' : v },
      ]),
    ];
    const { criteria, overall } = agreementByCriterion(rows, { scoreConfigs: configs });
    const accuracyMatrix = reliabilityMatrix(rows.filter((r) => r.criterion === 'accuracy'));
    expect(accuracyMatrix.raters).toEqual(['ann', 'bob']);
    expect(criteria['accuracy']!).toMatchObject({ level: 'interval', raters: 2, units: 5, pairableUnits: 5 });
    expect(criteria['accuracy']!.alpha).toBeCloseTo(
      krippendorffAlpha(accuracyMatrix.data, { level: 'interval' }),
      12,
    );
    const toneMatrix = reliabilityMatrix(rows.filter((r) => r.criterion === 'tone'));
    expect(criteria['tone']!.level).toBe('ordinal');
    expect(criteria['tone']!.alpha).toBeCloseTo(
      krippendorffAlpha(toneMatrix.data, { level: 'ordinal', valueDomain: ['rude', 'neutral', 'warm'] }),
      12,
    );
    expect(overall).toMatchObject({ level: 'interval', units: 9, pairableUnits: 9 });
    expect(overall!.alpha).toBeGreaterThan(0.5);
  });

  it('lists Cohen kappa for every pair of raters with enough shared units', () => {
    const matrix = reliabilityMatrix([
      { unitId: 'a', raterId: 'x', value: 1 },
      { unitId: 'b', raterId: 'x', value: 2 },
      { unitId: 'a', raterId: 'y', value: 1 },
      { unitId: 'b', raterId: 'y', value: 2 },
      { unitId: 'a', raterId: 'z', value: 2 },
    ]);
    const pairs = pairwiseCohenKappa(matrix);
    expect(pairs).toEqual([{ raterA: 'x', raterB: 'y', n: 2, kappa: 1 }]);
  });
});

describe('krippendorffAlphaFromUnits', () => {
  it('equals the dense reliability matrix on sparse random data, at every level', () => {
    const rng = new SeededRandom(17);
    const raters = 30;
    const units = 200;
    const dense = Array.from({ length: raters }, () =>
      Array.from({ length: units }, () => (rng.uniform() < 0.1 ? 1 + rng.int(5) : null)),
    );
    const byUnit = Array.from({ length: units }, (_, u) =>
      dense.map((row) => row[u]).filter((v) => v !== null),
    );
    for (const level of ['nominal', 'ordinal', 'interval', 'ratio'] as const) {
      expect(krippendorffAlphaFromUnits(byUnit, { level })).toBeCloseTo(
        krippendorffAlpha(dense, { level }),
        12,
      );
    }
  });
});
