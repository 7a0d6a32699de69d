import { describe, expect, it } from 'vitest';
import {
  activeLearningObjectiveFor,
  expectedGood,
  type RatingCandidate,
  selectForRating,
  similarRatedRewards,
} from './select.js';

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

  it('rejects an unknown objective by name', () => {
    expect(() =>
      selectForRating([candidate('x')], { budget: 1, objective: 'most-fun' as 'positives' }),
    ).toThrow(/activeLearning\.objective/);
  });
});

describe('the positives objective', () => {
  const unrated = (id: string, over: Partial<RatingCandidate> = {}) =>
    candidate(id, { humanRated: false, calibratedSd: undefined, rewardModelProbability: undefined, ...over });
  const pool = [
    unrated('coin-flip', { rewardModelProbability: 0.5 }),
    unrated('like-liked', { similarRated: { reward: 1, weight: 4 } }),
    unrated('like-disliked', { similarRated: { reward: -0.9, weight: 3 } }),
    unrated('model-likes', { rewardModelProbability: 0.85 }),
    candidate('rated-split', { raterSpread: 1, rewardModelProbability: 0.9 }),
  ];

  it('asks about the unrated answers most likely liked, where uncertainty asks about coin flips', () => {
    const positives = selectForRating(pool, { budget: 3, objective: 'positives', weights: { novelty: 0 } });
    expect(positives.map((p) => p.id)).toEqual(['like-liked', 'model-likes', 'coin-flip']);
    expect(positives[0]!.positive).toBeGreaterThan(0.8);
    expect(positives[0]!.reason).toMatch(/likely liked \(p=0\.\d\d, like 4\.0 similar rated answers\)/);
    const uncertain = selectForRating(pool, { budget: 2, weights: { novelty: 0 } });
    expect(uncertain.map((p) => p.id)).toEqual(['coin-flip', 'rated-split']);
  });

  it('gives a rated answer no positive value: another rating adds no new liked answer', () => {
    const picks = selectForRating(pool, { budget: 5, objective: 'positives' });
    expect(picks.find((p) => p.id === 'rated-split')!.positive).toBe(0);
    expect(picks.at(-1)!.id).toBe('rated-split');
  });

  it('lets explicit weights override the objective defaults', () => {
    const picks = selectForRating(pool, {
      budget: 1,
      objective: 'positives',
      weights: { positive: 0, disagreement: 1, novelty: 0, uncertainty: 0 },
    });
    expect(picks[0]!.id).toBe('rated-split');
  });

  it('moves the reward model call toward similar rated answers by their weight', () => {
    expect(expectedGood(unrated('none'))).toBeUndefined();
    expect(expectedGood(unrated('m', { rewardModelProbability: 0.7 }))).toBeCloseTo(0.7);
    // One near-copy rated +1 against a model at 0.5: halfway.
    expect(expectedGood(unrated('n', { similarRated: { reward: 1, weight: 1 } }))).toBeCloseTo(0.75);
    // Much similar evidence outweighs the model.
    expect(
      expectedGood(unrated('both', { rewardModelProbability: 0.9, similarRated: { reward: -1, weight: 9 } })),
    ).toBeCloseTo(0.09);
  });

  it('is the default for sft, whose dataset keeps liked answers only', () => {
    expect(activeLearningObjectiveFor('sft')).toBe('positives');
    for (const m of ['kto', 'rwsft', 'dpo', 'reward'])
      expect(activeLearningObjectiveFor(m)).toBe('uncertainty');
  });
});

describe('similarRatedRewards', () => {
  const liked =
    'thank you for reaching out, your refund for order 1234 was issued today and arrives in 3 days';
  const disliked = 'no. read the faq yourself, we do not answer questions about parcels here at all';

  it('scores an answer by the ratings of near-copies and ignores unrelated ones', () => {
    const rated = [
      { id: 'r1', text: liked, reward: 0.8 },
      { id: 'r2', text: disliked, reward: -0.6 },
    ];
    const out = similarRatedRewards(
      [
        { id: 'near-liked', text: liked.replace('1234', '9876') },
        { id: 'near-disliked', text: `${disliked} sorry` },
        { id: 'unrelated', text: 'the warranty covers two years of repairs for every kettle we sell' },
        { id: 'r1', text: liked },
      ],
      rated,
    );
    expect(out.get('near-liked')!.reward).toBeCloseTo(0.8);
    expect(out.get('near-liked')!.weight).toBeGreaterThan(0.3);
    expect(out.get('near-disliked')!.reward).toBeCloseTo(-0.6);
    expect(out.has('unrelated')).toBe(false);
    // A rated answer is not its own evidence.
    expect(out.has('r1')).toBe(false);
  });

  it('weighs closer copies more', () => {
    const base =
      'your order 55 ships tomorrow from our warehouse in leeds and the tracking link follows by email';
    const out = similarRatedRewards(
      [{ id: 't', text: base }],
      [
        { id: 'same', text: base, reward: 1 },
        { id: 'looser', text: base.replace('by email', 'by post tomorrow'), reward: -1 },
      ],
    );
    const t = out.get('t')!;
    // The copy counts 1, the looser one less: the mean leans to the copy, but both count.
    expect(t.reward).toBeGreaterThan(0.3);
    expect(t.reward).toBeLessThan(1);
    expect(t.weight).toBeGreaterThan(1);
  });
});
