import { winRate } from '@ratchet/core';
import { describe, expect, it } from 'vitest';
import { offlineAdvantageOf } from './canary-plan.js';

const verdicts = (wins: number, losses: number, ties: number) =>
  winRate([
    ...Array<'candidate'>(wins).fill('candidate'),
    ...Array<'baseline'>(losses).fill('baseline'),
    ...Array<'tie'>(ties).fill('tie'),
  ]);

describe('offlineAdvantageOf', () => {
  const summary = { winRate: { judge: verdicts(24, 8, 8), reward: verdicts(2, 30, 8) } };

  it("reads the win rate the gate trusts and carries it onto the metric's scale", () => {
    const judge = offlineAdvantageOf(summary, { winRate: { source: 'judge' } }, 'thumbs_up_rate')!;
    expect(judge.source).toBe('judge');
    expect(judge.estimate).toBeCloseTo((24 - 8) / 40, 12);
    expect(judge.items).toBe(40);
    expect(judge.lower).toBeLessThan(judge.estimate);
    expect(judge.upper).toBeGreaterThan(judge.estimate);
    // A reward on [-1, 1] moves twice as far as a rate for the same difference of like rates.
    const reward = offlineAdvantageOf(summary, { winRate: { source: 'judge' } }, 'mean_reward')!;
    expect(reward.estimate).toBeCloseTo(2 * judge.estimate, 12);
    // source 'reward' reads the reward model's comparison, which here says the opposite.
    const rm = offlineAdvantageOf(summary, { winRate: { source: 'reward' } }, 'thumbs_up_rate')!;
    expect(rm.source).toBe('reward model');
    expect(rm.estimate).toBeCloseTo((2 - 30) / 40, 12);
  });

  it('has nothing when the trusted source judged nothing or nothing was decisive', () => {
    expect(
      offlineAdvantageOf(
        { winRate: { judge: null, reward: verdicts(5, 1, 0) } },
        { winRate: { source: 'judge' } },
        'thumbs_up_rate',
      ),
    ).toBeNull();
    expect(
      offlineAdvantageOf({ winRate: { judge: verdicts(0, 0, 12), reward: null } }, {}, 'thumbs_up_rate'),
    ).toBeNull();
    expect(offlineAdvantageOf(null, {}, 'thumbs_up_rate')).toBeNull();
    // A judge's like-rate difference says nothing about how often people regenerate.
    expect(offlineAdvantageOf(summary, { winRate: { source: 'judge' } }, 'regenerate_rate')).toBeNull();
  });
});
