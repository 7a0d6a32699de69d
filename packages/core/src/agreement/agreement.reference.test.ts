import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { SeededRandom } from '../random.js';
import { cohenKappa, fleissKappa } from './kappa.js';
import { krippendorffAlpha, krippendorffAlphaFromCounts, type MeasurementLevel } from './krippendorff.js';
import type { RatingValue } from './values.js';

/**
 * Cross-check against the reference implementations: the `krippendorff` package and
 * scikit-learn's `cohen_kappa_score` (and statsmodels' `fleiss_kappa` when installed), run by the
 * repository's Python venv on the same cases. Every number must agree to 1e-9.
 */
const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
const python = `${repoRoot}.venv/bin/python`;
const script = fileURLToPath(new URL('./reference/reference_agreement.py', import.meta.url));
const TOLERANCE = 1e-9;

type AlphaCase = {
  type: 'alpha';
  level: MeasurementLevel;
  data?: RatingValue[][];
  valueCounts?: number[][];
  valueDomain?: (number | string)[];
};
type CohenCase = {
  type: 'cohen';
  a: (number | string)[];
  b: (number | string)[];
  weights: 'linear' | 'quadratic' | null;
  labels?: (number | string)[];
  sampleWeight?: number[];
};
type FleissCase = { type: 'fleiss'; table: number[][] };
type Case = (AlphaCase | CohenCase | FleissCase) & { name: string };

function ours(c: Case): number {
  if (c.type === 'alpha') {
    const options = { level: c.level, ...(c.valueDomain ? { valueDomain: c.valueDomain } : {}) };
    return c.valueCounts
      ? krippendorffAlphaFromCounts(c.valueCounts, options)
      : krippendorffAlpha(c.data!, options);
  }
  if (c.type === 'cohen') {
    return cohenKappa(c.a, c.b, {
      weights: c.weights,
      ...(c.labels ? { labels: c.labels } : {}),
      ...(c.sampleWeight ? { sampleWeight: c.sampleWeight } : {}),
    });
  }
  return fleissKappa(c.table);
}

/** A raters x units matrix with missing values, valid for the package (two values in some unit). */
function randomMatrix(rng: SeededRandom, draw: () => RatingValue, missingRate: number): RatingValue[][] {
  for (;;) {
    const raters = 2 + rng.int(5);
    const units = 5 + rng.int(36);
    const data = Array.from({ length: raters }, () =>
      Array.from({ length: units }, () => (rng.uniform() < missingRate ? null : draw())),
    );
    const distinct = new Set(data.flat().filter((v) => v !== null));
    const pairable = data[0]!.some((_, u) => data.filter((row) => row[u] !== null).length >= 2);
    if (distinct.size >= 2 && pairable) return data;
  }
}

function alphaCases(rng: SeededRandom): Case[] {
  const cases: Case[] = [];
  const levels: MeasurementLevel[] = ['nominal', 'ordinal', 'interval', 'ratio'];
  for (let i = 0; i < 48; i++) {
    const level = levels[i % 4]!;
    const categories = 2 + rng.int(6);
    const missingRate = [0, 0.2, 0.5][i % 3]!;
    const data = randomMatrix(rng, () => 1 + rng.int(categories), missingRate);
    cases.push({
      name: `random ${level} #${i} (${categories} values, ${missingRate * 100}% missing)`,
      type: 'alpha',
      level,
      data,
    });
  }
  for (let i = 0; i < 6; i++) {
    const data = randomMatrix(rng, () => Math.round(rng.normal(0, 1) * 1000) / 1000, 0.3);
    cases.push({ name: `continuous interval #${i}`, type: 'alpha', level: 'interval', data });
    cases.push({
      name: `continuous ratio #${i}`,
      type: 'alpha',
      level: 'ratio',
      data: data.map((row) => row.map((v) => (v === null ? null : Math.abs(v as number)))),
    });
  }
  const grades = ['poor', 'fair', 'good', 'great', 'superb'];
  for (let i = 0; i < 6; i++) {
    const data = randomMatrix(rng, () => grades[rng.int(4)]!, 0.25);
    cases.push({ name: `strings nominal #${i}`, type: 'alpha', level: 'nominal', data });
    // The domain includes a grade nobody used: ordinal distances still count its rank.
    cases.push({
      name: `strings ordinal with domain #${i}`,
      type: 'alpha',
      level: 'ordinal',
      data,
      valueDomain: grades,
    });
  }
  for (let i = 0; i < 4; i++) {
    const data = randomMatrix(rng, () => 1 + rng.int(3), 0.2);
    cases.push({
      name: `ordinal with unused domain values #${i}`,
      type: 'alpha',
      level: 'ordinal',
      data,
      valueDomain: [0, 1, 2, 3, 4, 5],
    });
    const valueCounts = Array.from({ length: 12 }, () => Array.from({ length: 4 }, () => rng.int(3)));
    valueCounts[0] = [2, 1, 0, 0];
    cases.push({ name: `value counts ordinal #${i}`, type: 'alpha', level: 'ordinal', valueCounts });
  }
  // The package's own docstring example.
  const n = null;
  const doc = [
    [n, n, n, n, n, 3, 4, 1, 2, 1, 1, 3, 3, n, 3],
    [1, n, 2, 1, 3, 3, 4, 3, n, n, n, n, n, n, n],
    [n, n, 2, 1, 3, 4, 4, n, 2, 1, 1, 3, 3, n, 4],
  ];
  for (const level of levels) cases.push({ name: `docstring ${level}`, type: 'alpha', level, data: doc });
  return cases;
}

function cohenCases(rng: SeededRandom): Case[] {
  const cases: Case[] = [];
  const weights = [null, 'linear', 'quadratic'] as const;
  for (let i = 0; i < 36; i++) {
    const w = weights[i % 3]!;
    const categories = 2 + rng.int(5);
    const size = 10 + rng.int(60);
    const a = Array.from({ length: size }, () => 1 + rng.int(categories));
    // Rater b agrees with a most of the time, else guesses.
    const b = a.map((x) => (rng.uniform() < 0.6 ? x : 1 + rng.int(categories)));
    cases.push({ name: `random ${w ?? 'unweighted'} #${i}`, type: 'cohen', a, b, weights: w });
  }
  const words = ['negative', 'neutral', 'positive'];
  for (let i = 0; i < 6; i++) {
    const a = Array.from({ length: 30 }, () => words[rng.int(3)]!);
    const b = a.map((x) => (rng.uniform() < 0.5 ? x : words[rng.int(3)]!));
    cases.push({
      name: `strings ${weights[i % 3] ?? 'unweighted'} #${i}`,
      type: 'cohen',
      a,
      b,
      weights: weights[i % 3]!,
    });
  }
  for (let i = 0; i < 6; i++) {
    const a = Array.from({ length: 40 }, () => 1 + rng.int(5));
    const b = a.map((x) => (rng.uniform() < 0.5 ? x : 1 + rng.int(5)));
    const sampleWeight = a.map(() => Math.round(rng.uniform() * 100) / 10 + 0.1);
    cases.push({
      name: `labels subset + sample weights #${i}`,
      type: 'cohen',
      a,
      b,
      weights: weights[i % 3]!,
      labels: [5, 3, 1, 2],
      sampleWeight,
    });
  }
  cases.push({
    name: 'sklearn docstring',
    type: 'cohen',
    a: ['negative', 'positive', 'negative', 'neutral', 'positive'],
    b: ['negative', 'positive', 'negative', 'neutral', 'negative'],
    weights: null,
  });
  // Characters above U+FFFF and in U+E000..U+FFFF: UTF-16 and code point order differ.
  for (const weights of ['linear', 'quadratic'] as const)
    cases.push({
      name: `code point order ${weights}`,
      type: 'cohen',
      a: ['a', '😀', 'ｚ', '\uE000', '😀'],
      b: ['ｚ', '😀', 'a', '😀', '\uE000'],
      weights,
    });
  return cases;
}

function fleissCases(rng: SeededRandom): Case[] {
  return Array.from({ length: 10 }, (_, i) => {
    const raters = 2 + rng.int(8);
    const categories = 2 + rng.int(4);
    const table = Array.from({ length: 5 + rng.int(20) }, () => {
      const row = new Array<number>(categories).fill(0);
      for (let r = 0; r < raters; r++) row[rng.int(categories)]!++;
      return row;
    });
    return { name: `random table #${i}`, type: 'fleiss' as const, table };
  });
}

describe('agreement equals the reference implementations (Python venv)', () => {
  const rng = new SeededRandom(20240601);
  const cases = [...alphaCases(rng), ...cohenCases(rng), ...fleissCases(rng)];
  let reference: { results: (number | null)[]; statsmodels: boolean };

  beforeAll(() => {
    if (!existsSync(python)) {
      throw new Error(
        `the reference cross-check needs the repository venv at ${python} ` +
          '(with krippendorff and scikit-learn installed); it is missing',
      );
    }
    // Importing scikit-learn compiles hundreds of modules; with bytecode caching off (as in this
    // environment) that is ~6 s of CPU on every run. Cache the bytecode outside the repository.
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPYCACHEPREFIX: join(tmpdir(), 'ratchet-pycache') };
    delete env['PYTHONDONTWRITEBYTECODE'];
    const input = JSON.stringify({ cases });
    const run = spawnSync(python, [script], { input, env, encoding: 'utf8', timeout: 60_000 });
    if (run.status !== 0)
      throw new Error(`reference script failed (${run.status}): ${run.stderr || run.error}`);
    reference = JSON.parse(run.stdout);
  });

  function compare(kind: Case['type']) {
    let compared = 0;
    let largest = 0;
    cases.forEach((c, i) => {
      if (c.type !== kind) return;
      const expected = reference.results[i];
      const actual = ours(c);
      if (expected === null || expected === undefined) {
        expect(Number.isNaN(actual), `${c.name}: reference is undefined, ours ${actual}`).toBe(true);
      } else {
        expect(
          Math.abs(actual - expected),
          `${c.name}: ours ${actual}, reference ${expected}`,
        ).toBeLessThanOrEqual(TOLERANCE);
        largest = Math.max(largest, Math.abs(actual - expected));
      }
      compared++;
    });
    console.log(
      `${kind}: ${compared} cases, largest difference from the reference ${largest.toExponential(2)}`,
    );
    return compared;
  }

  it("Krippendorff's alpha (nominal, ordinal, interval, ratio, missing data) matches `krippendorff`", () => {
    expect(compare('alpha')).toBeGreaterThan(80);
  });

  it("Cohen's kappa (unweighted, linear, quadratic) matches scikit-learn's cohen_kappa_score", () => {
    expect(compare('cohen')).toBeGreaterThan(40);
  });

  it("Fleiss' kappa matches statsmodels when it is installed", (context) => {
    if (!reference.statsmodels)
      context.skip('statsmodels is not installed; see the textbook examples in agreement.test.ts');
    expect(compare('fleiss')).toBe(10);
  });
});
