import { describe, expect, it } from 'vitest';
import type { Feedback } from '../feedback-kinds.js';
import { defaultScoreConfigs, type ScoreConfig } from '../schemas/score-config.js';
import { pairwiseEvidence } from './pairwise.js';
import { normalizeFeedback, normalizeFeedbackRows } from './reward.js';
import { defaultRewardMapping, RewardMapping } from './reward-mapping.js';
import { categoryToReward, criteriaReward, implicitReward, scaleToReward } from './scales.js';

let nextId = 0;
function row(partial: Partial<Feedback> & Pick<Feedback, 'kind'>): Feedback {
  nextId++;
  return {
    id: `f${nextId}`,
    projectId: 'p',
    interactionId: 'i1',
    raterId: 'r1',
    source: 'user',
    value: null,
    label: null,
    text: null,
    data: null,
    idempotencyKey: null,
    metadata: {},
    createdAt: 0,
    receivedAt: 0,
    current: true,
    ...partial,
  };
}

const configs = new Map<string, ScoreConfig>([
  ...defaultScoreConfigs.map((c) => [c.name, c] as const),
  [
    'nps',
    {
      name: 'nps',
      usage: 'stars',
      dataType: 'numeric',
      min: 0,
      max: 10,
      categories: null,
      weight: 1,
      description: null,
    },
  ],
  [
    'tone',
    {
      name: 'tone',
      usage: 'criterion',
      dataType: 'categorical',
      min: null,
      max: null,
      categories: ['rude', 'neutral', 'warm'],
      weight: 2,
      description: null,
    },
  ],
]);

describe('scale mapping', () => {
  it('maps a scale linearly onto [-1, 1] and clamps', () => {
    expect(scaleToReward(1, 1, 5)).toBe(-1);
    expect(scaleToReward(3, 1, 5)).toBe(0);
    expect(scaleToReward(4, 1, 5)).toBe(0.5);
    expect(scaleToReward(5, 1, 5)).toBe(1);
    expect(scaleToReward(9, 1, 5)).toBe(1);
    expect(scaleToReward(7, 0, 10)).toBeCloseTo(0.4, 12);
  });

  it('spaces ordered categories evenly', () => {
    expect([0, 1, 2].map((i) => categoryToReward(i, 3))).toEqual([-1, 0, 1]);
    expect(categoryToReward(1, 4)).toBeCloseTo(-1 / 3, 12);
  });
});

describe('normalizeFeedback', () => {
  it('maps thumbs to ±1 and honours a configured mapping', () => {
    expect(normalizeFeedback(row({ kind: 'thumbs', value: 1, label: 'up' }))).toEqual({
      reward: 1,
      weight: 1,
    });
    expect(normalizeFeedback(row({ kind: 'thumbs', value: -1, label: 'down' })).reward).toBe(-1);
    const mapping = RewardMapping.parse({ thumbs: { down: -0.5 } });
    expect(normalizeFeedback(row({ kind: 'thumbs', value: -1 }), { mapping }).reward).toBe(-0.5);
  });

  it('maps stars on the scale named by the label', () => {
    const ctx = { scoreConfigs: configs };
    expect(normalizeFeedback(row({ kind: 'stars', value: 4, label: 'stars' }), ctx).reward).toBe(0.5);
    expect(normalizeFeedback(row({ kind: 'stars', value: 10, label: 'nps' }), ctx).reward).toBe(1);
    expect(normalizeFeedback(row({ kind: 'stars', value: 2, label: 'nps' }), ctx).reward).toBeCloseTo(
      -0.6,
      12,
    );
    const unknown = normalizeFeedback(row({ kind: 'stars', value: 2, label: 'mood' }), ctx);
    expect(unknown).toEqual({ reward: null, weight: 0, reason: 'unknown star scale "mood"' });
  });

  it('combines criteria with config weights, categorical by index, overridable weights', () => {
    // relevance 5 -> 1 (w1), accuracy 1 -> -1 (w1), tone warm -> 1 (w2): (1 - 1 + 2) / 4
    const scores = { relevance: 5, accuracy: 1, tone: 'warm' };
    const r = row({ kind: 'criteria', data: { scores } });
    expect(normalizeFeedback(r, { scoreConfigs: configs }).reward).toBeCloseTo(0.5, 12);
    const mapping = RewardMapping.parse({ criteria: { weights: { accuracy: 3, tone: 0 } } });
    // relevance 1 (w1), accuracy -1 (w3): -2 / 4
    expect(normalizeFeedback(r, { scoreConfigs: configs, mapping }).reward).toBeCloseTo(-0.5, 12);
    expect(criteriaReward({ unknown: 3 }, configs)).toBeNull();
    expect(normalizeFeedback(row({ kind: 'criteria', data: { scores: { unknown: 3 } } })).reward).toBeNull();
  });

  it('maps implicit signals by their weights, scaled by magnitude', () => {
    const ctx = {};
    expect(normalizeFeedback(row({ kind: 'implicit', label: 'copied' }), ctx)).toEqual({
      reward: 0.5,
      weight: 0.5,
    });
    expect(normalizeFeedback(row({ kind: 'implicit', label: 'regenerated' })).reward).toBe(-0.5);
    expect(normalizeFeedback(row({ kind: 'implicit', label: 'abandoned' })).reward).toBe(-0.5);
    expect(normalizeFeedback(row({ kind: 'implicit', label: 'edited' })).reward).toBe(-0.25);
    expect(normalizeFeedback(row({ kind: 'implicit', label: 'edited', value: 0.4 })).reward).toBeCloseTo(
      -0.1,
      12,
    );
    expect(implicitReward('edited', 7)).toBe(-0.25);
    const mapping = RewardMapping.parse({ implicit: { copied: 0.8, scaleByMagnitude: false } });
    expect(
      normalizeFeedback(row({ kind: 'implicit', label: 'copied', value: 0.1 }), { mapping }).reward,
    ).toBe(0.8);
    expect(normalizeFeedback(row({ kind: 'implicit', label: 'liked' })).reward).toBeNull();
  });

  it('rejects a mapping outside [-1, 1]', () => {
    expect(() => RewardMapping.parse({ thumbs: { up: 2 } })).toThrow();
    expect(() => RewardMapping.parse({ implicit: { copied: 'yes' } })).toThrow();
    expect(defaultRewardMapping.implicit.copied).toBe(0.5);
  });

  it('keeps only current events and lists every skipped one with its reason', () => {
    const rows = [
      row({ kind: 'thumbs', value: 1 }),
      row({ kind: 'thumbs', value: -1, current: false }),
      row({ kind: 'comment', text: 'meh' }),
      row({ kind: 'stars', value: 2 }),
    ];
    const { rewards, skipped } = normalizeFeedbackRows(rows);
    expect(rewards.map((r) => r.reward)).toEqual([1, -0.5]);
    expect(skipped).toEqual([
      { feedbackId: rows[2]!.id, kind: 'comment', reason: 'comment carries no reward' },
    ]);
    expect(normalizeFeedbackRows(rows, { includeHistory: true }).rewards).toHaveLength(3);
  });
});

describe('pairwiseEvidence', () => {
  const ids = (c: { winner: { interactionId: string }; loser: { interactionId: string } }) =>
    `${c.winner.interactionId}>${c.loser.interactionId}`;

  it('turns this/other/tie preferences into comparisons', () => {
    const out = pairwiseEvidence([
      row({ kind: 'preference', interactionId: 'a', label: 'this', data: { other: 'b' } }),
      row({ kind: 'preference', interactionId: 'c', label: 'other', data: { other: 'd' } }),
      row({ kind: 'preference', interactionId: 'e', label: 'tie', data: { other: 'f' } }),
    ]);
    expect(out.map(ids)).toEqual(['a>b', 'd>c', 'e>f', 'f>e']);
    expect(out.map((c) => c.weight)).toEqual([1, 1, 0.5, 0.5]);
    expect(out.map((c) => c.tie)).toEqual([false, false, true, true]);
  });

  it('expands a ranking into all pairs or adjacent pairs', () => {
    const ranking = row({
      kind: 'preference',
      interactionId: 'b',
      label: 'ranking',
      data: { ranking: ['a', 'b', 'c'] },
    });
    expect(pairwiseEvidence([ranking]).map(ids)).toEqual(['a>b', 'a>c', 'b>c']);
    const mapping = RewardMapping.parse({ pairwise: { rankingPairs: 'adjacent', tie: 0 } });
    expect(pairwiseEvidence([ranking], { mapping }).map(ids)).toEqual(['a>b', 'b>c']);
  });

  it('makes a correction beat its original, and drops ties when their weight is 0', () => {
    const mapping = RewardMapping.parse({ pairwise: { tie: 0 } });
    const out = pairwiseEvidence(
      [
        row({ kind: 'correction', interactionId: 'x', text: 'better answer' }),
        row({ kind: 'preference', interactionId: 'e', label: 'tie', data: { other: 'f' } }),
        row({ kind: 'thumbs', value: 1 }),
      ],
      { mapping },
    );
    expect(out).toHaveLength(1);
    expect(out[0]!.winner).toMatchObject({ type: 'correction', interactionId: 'x', text: 'better answer' });
    expect(out[0]!.loser).toEqual({ type: 'interaction', interactionId: 'x' });
    expect(out[0]!.source).toBe('correction');
  });

  it("weighs a judge's correction by the judge's source weight, a person's in full", () => {
    const [judge, person] = pairwiseEvidence([
      row({ kind: 'correction', interactionId: 'x', text: 'revised by the model', source: 'judge' }),
      row({ kind: 'correction', interactionId: 'y', text: 'fixed by a person', source: 'user' }),
    ]);
    expect(judge!.weight).toBeCloseTo(defaultRewardMapping.pairwise.correction * 0.3);
    expect(person!.weight).toBe(defaultRewardMapping.pairwise.correction);
  });
});
