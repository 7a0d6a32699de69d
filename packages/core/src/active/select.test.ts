import { describe, expect, it } from 'vitest';
import { type RatingCandidate, selectForRating } from './select.js';

const candidate = (id: string, over: Partial<RatingCandidate> = {}): RatingCandidate => ({
  id,
  prompt: `question number ${id} about something entirely different ${id}`,
  humanRated: true,
  rewardModelProbability: 0.95,
  calibratedSd: 0.05,
  ...over,
});

describe('selectForRating', () => {
  it('prefers what the reward model cannot tell, then disagreement, within the budget', () => {
    const picks = selectForRating(
      [
        candidate('sure'),
        candidate('coin-flip', { rewardModelProbability: 0.5 }),
        candidate('disputed', { raterSpread: 0.9 }),
        candidate('judge-vs-people', { judgeHumanGap: 0.6 }),
        candidate('fairly-sure', { rewardModelProbability: 0.8 }),
      ],
      { budget: 3, weights: { novelty: 0 } },
    );
    expect(picks.map((p) => p.id)).toEqual(['coin-flip', 'disputed', 'judge-vs-people']);
    expect(picks[0]!.reason).toMatch(/reward model unsure \(p=0.50\)/);
    expect(picks[1]!.reason).toMatch(/raters disagree/);
    expect(picks[2]!.reason).toMatch(/judge and people disagree/);
  });

  it('treats an unrated, unscored interaction as fully uncertain', () => {
    const [pick] = selectForRating(
      [
        candidate('known'),
        candidate('unknown', {
          humanRated: false,
          rewardModelProbability: undefined,
          calibratedSd: undefined,
        }),
      ],
      { budget: 1, weights: { novelty: 0 } },
    );
    expect(pick).toMatchObject({ id: 'unknown', uncertainty: 1 });
    expect(pick!.reason).toMatch(/^not rated or scored yet/);
  });

  it('values prompts unlike those already rated, and does not spend the budget on near-duplicates', () => {
    const same = 'how do i reset the password on my account please help';
    const picks = selectForRating(
      [
        candidate('a', { prompt: same, rewardModelProbability: 0.5 }),
        candidate('a-again', { prompt: `${same} now`, rewardModelProbability: 0.5 }),
        candidate('rated-before', {
          prompt: 'where is my parcel with the blue kettle it is late',
          rewardModelProbability: 0.6,
        }),
        candidate('fresh', {
          prompt: 'can i change the delivery address after paying for the order',
          rewardModelProbability: 0.6,
        }),
      ],
      { budget: 3, ratedPrompts: ['where is my parcel with the blue kettle it is late'] },
    );
    expect(picks.map((p) => p.id)).toEqual(['a', 'fresh', 'rated-before']);
    expect(picks.find((p) => p.id === 'rated-before')!.novelty).toBeLessThan(0.1);
    expect(picks.find((p) => p.id === 'fresh')!.novelty).toBe(1);
  });

  it('rejects a bad budget by name', () => {
    expect(() => selectForRating([], { budget: -1 })).toThrow(/activeLearning\.budget/);
  });
});
