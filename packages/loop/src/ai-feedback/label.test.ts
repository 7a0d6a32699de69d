import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase, testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrateProject } from '../calibrate.js';
import { chatDouble } from '../training/testing.js';
import { labelFromRatings, labelWithJudge, labelWithRewardModel } from './label.js';

/**
 * Stands in for an LLM judge, which here would be a remote paid API. It grades the answer in the
 * prompt: GOOD when it contains "reset link", BAD when it contains "figure it out", and for an
 * answer containing "maybe" it alternates, as a judge unsure of it would across samples.
 */
function judgeDouble() {
  let flip = false;
  return chatDouble(({ messages, temperature }) => {
    const answer = /\[ANSWER\]\n([\s\S]*?)\n\[TASK\]/.exec(messages.at(-1)!.content)![1]!;
    let verdict = answer.includes('reset link') ? 'GOOD' : 'BAD';
    if (answer.includes('maybe')) {
      flip = !flip;
      verdict = flip ? 'GOOD' : 'BAD';
    }
    return `At temperature ${temperature}.\nVERDICT: ${verdict}`;
  });
}

/**
 * Stands in for a reward model's `/v1/score` (a trained one is not predictable enough to test
 * the rule with): +2 for an answer with "reset link", -2 for "figure it out", 0 for "maybe"; the
 * model named "inverted" scores the reset links -2 too (confidently wrong on liked answers).
 */
function scoreDouble() {
  let scored = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const { model, conversations } = JSON.parse(body) as {
        model: string;
        conversations: { content: string }[][];
      };
      scored += conversations.length;
      const score = (c: { content: string }[]) => {
        const answer = c.at(-1)!.content;
        if (answer.includes('maybe')) return 0;
        if (answer.includes('reset link')) return model === 'inverted' ? -2 : 2;
        return -2;
      };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ data: conversations.map((c, index) => ({ index, score: score(c) })) }));
    });
  });
  return {
    scored: () => scored,
    start: () =>
      new Promise<string>((resolve) =>
        server.listen(0, '127.0.0.1', () =>
          resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`),
        ),
      ),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const goodAnswer = (i: number) => `We just sent a reset link to your address (${i}).`;
const badAnswer = (i: number) => `Not my problem, figure it out (${i}).`;

/**
 * A project with 30 liked and 30 disliked answers rated by people (15 of each check the thresholds the others choose) (calibrated), and unrated
 * answers: `unratedGood` good, `unratedBad` bad, and 2 the labellers cannot call ("maybe").
 */
async function project(store: Store, name: string, unratedGood: number, unratedBad: number) {
  const projectId = (await store.projects.create(name)).id;
  const rows: { id: string; output: string; thumb?: 'up' | 'down' }[] = [];
  for (let i = 0; i < 30; i++) rows.push({ id: `liked-${i}`, output: goodAnswer(i), thumb: 'up' });
  for (let i = 0; i < 30; i++) rows.push({ id: `disliked-${i}`, output: badAnswer(i), thumb: 'down' });
  for (let i = 0; i < unratedGood; i++) rows.push({ id: `good-${i}`, output: goodAnswer(100 + i) });
  for (let i = 0; i < unratedBad; i++) rows.push({ id: `bad-${i}`, output: badAnswer(100 + i) });
  for (let i = 0; i < 2; i++) rows.push({ id: `maybe-${i}`, output: `It maybe works later (${i}).` });
  await store.interactions.insert(
    projectId,
    rows.map((r) =>
      parseInput(InteractionInput, {
        id: r.id,
        model: 'support-v1',
        route: 'support-bot',
        messages: [{ role: 'user', content: 'I forgot my password.' }],
        output: r.output,
      }),
    ),
  );
  await store.feedback.insert(
    projectId,
    rows
      .filter((r) => r.thumb)
      .map((r, k) =>
        parseInput(FeedbackInput, {
          kind: 'thumbs',
          interactionId: r.id,
          raterId: `user-${k % 7}`,
          value: r.thumb,
        }),
      ),
  );
  await calibrateProject(store, projectId);
  return projectId;
}

const judgeThumbs = async (store: Store, projectId: string) =>
  (await store.feedback.currentOfKinds(projectId, ['thumbs']))
    .filter((f) => f.source === 'judge')
    .map((f) => [f.interactionId, f.value] as const)
    .sort();

describe('the reward model labels unrated answers where held-out ratings show it right (score endpoint is a local test double)', () => {
  const db = sqliteTestDatabase();
  const rm = scoreDouble();
  let store: Store;
  let baseURL: string;

  beforeAll(async () => {
    baseURL = await rm.start();
    store = await Store.open(await db.create());
  });
  afterAll(async () => {
    await store?.close();
    await rm.close();
    await db.cleanup();
  });

  it('labels past the thresholds the held-out answers chose, reports their precision and the share labelled', async () => {
    const projectId = await project(store, 'rm-reliable', 3, 3);
    const report = await labelWithRewardModel(store, projectId, {
      rewardModel: { baseURL, model: 'reliable' },
      route: 'support-bot',
    });
    expect(report).toMatchObject({ looked: 8, labeled: 6, up: 3, down: 3, unsure: 2, share: 0.75 });
    expect(report.reliability).toMatchObject({
      targetPrecision: 0.8,
      heldOut: 60,
      // Cross-fitted (5 folds): every held-out answer checks thresholds the other folds chose.
      folds: 5,
      fit: 60,
      check: 60,
      checkLabeled: 60,
      minCheck: 14,
      precision: 1,
      upThreshold: 2,
      downThreshold: -2,
      reasons: [],
    });
    expect(report.reliability.lower!).toBeGreaterThanOrEqual(0.8);
    expect(await judgeThumbs(store, projectId)).toEqual([
      ['bad-0', -1],
      ['bad-1', -1],
      ['bad-2', -1],
      ['good-0', 1],
      ['good-1', 1],
      ['good-2', 1],
    ]);
    const label = (await store.feedback.currentOfKinds(projectId, ['thumbs'])).find(
      (f) => f.interactionId === 'good-0',
    )!;
    expect(label).toMatchObject({ raterId: 'judge:reliable', source: 'judge' });
    expect(label.metadata).toMatchObject({ score: 2, pLiked: 1, confidence: 1, model: 'reliable' });
  });

  it('does not check the model on answers it trained on, nor on answers AI labelled before', async () => {
    const projectId = await project(store, 'rm-trained', 3, 3);
    // Trained on all but 10 liked answers: the disliked side has no held-out answers left.
    const trainedOn = [...Array.from({ length: 20 }, (_, i) => `liked-${i}`)];
    trainedOn.push(...Array.from({ length: 30 }, (_, i) => `disliked-${i}`));
    const before = rm.scored();
    const report = await labelWithRewardModel(store, projectId, {
      rewardModel: { baseURL, model: 'reliable' },
      trainedOn,
    });
    // 10 liked answers, all checking, are too few to show 0.8 at 95% even if all agree: nothing
    // is labelled, and the unrated are not scored.
    expect(report).toMatchObject({ looked: 8, labeled: 0, unsure: 8, share: 0 });
    expect(report.reliability).toMatchObject({ heldOut: 10, precision: null, upThreshold: null });
    expect(report.reliability.reasons).toEqual([
      'up: 10 held-out answers; showing 80.0% precision at 0.95 confidence needs at least 14 past the threshold even if all agree',
      'down: 10 held-out answers; showing 80.0% precision at 0.95 confidence needs at least 14 past the threshold even if all agree',
    ]);
    // One split (folds 1) checks on half of them only.
    const split = await labelWithRewardModel(store, projectId, {
      rewardModel: { baseURL, model: 'reliable' },
      trainedOn,
      folds: 1,
    });
    expect(split.reliability).toMatchObject({ folds: 1, fit: 5, check: 5 });
    expect(rm.scored() - before).toBe(20);

    // A first pass labels; the second finds those labels among the rated and leaves them out of
    // its held-out set (a labeller is not graded against its own labels).
    await labelWithRewardModel(store, projectId, { rewardModel: { baseURL, model: 'reliable' } });
    await calibrateProject(store, projectId);
    const again = await labelWithRewardModel(store, projectId, {
      rewardModel: { baseURL, model: 'reliable' },
    });
    expect(again.reliability.heldOut).toBe(60);
    expect(again).toMatchObject({ looked: 2, labeled: 0, unsure: 2 });
  });

  it('labels none where its score does not tell liked from disliked, and says why', async () => {
    const projectId = await project(store, 'rm-inverted', 3, 3);
    const report = await labelWithRewardModel(store, projectId, {
      rewardModel: { baseURL, model: 'inverted' },
    });
    // Every held-out answer scores -2, liked and disliked alike: the score says nothing either way.
    expect(report).toMatchObject({ looked: 8, labeled: 0, up: 0, down: 0 });
    expect(report.reliability).toMatchObject({ heldOut: 60, precision: null });
    expect(report.reliability.reasons).toEqual([
      'up: on no fit answer does the score make "liked" the likelier outcome',
      'down: on no fit answer does the score make "disliked" the likelier outcome',
    ]);
    expect(await judgeThumbs(store, projectId)).toEqual([]);
  });

  it('names the bad field', async () => {
    const projectId = (await store.projects.create('rm-bad')).id;
    await expect(
      labelWithRewardModel(store, projectId, { rewardModel: { baseURL, model: 'm' }, targetPrecision: 2 }),
    ).rejects.toMatchObject({ path: 'aiFeedback.targetPrecision' });
  });
});

describe('the LLM judge labels unrated answers where held-out ratings show it right (judge is a local test double)', () => {
  const db = sqliteTestDatabase();
  const judge = judgeDouble();
  let store: Store;
  let baseURL: string;

  beforeAll(async () => {
    baseURL = await judge.start();
    store = await Store.open(await db.create());
  });
  afterAll(async () => {
    await store?.close();
    await judge.close();
    await db.cleanup();
  });

  it('grades held-out and unrated answers, writes calls past its thresholds with their votes, skips the unsure', async () => {
    const projectId = await project(store, 'judge-labels', 1, 1);
    const report = await labelWithJudge(store, projectId, {
      judge: { baseURL, model: 'judge-large' },
      route: 'support-bot',
      samples: 3,
      concurrency: 1,
    });
    // Unanimous on the 60 held-out answers and on good-0 and bad-0; split on the maybes.
    expect(report).toMatchObject({
      looked: 4,
      labeled: 2,
      up: 1,
      down: 1,
      unsure: 2,
      share: 0.5,
      rater: 'judge:judge-large',
    });
    expect(report.reliability).toMatchObject({ heldOut: 60, precision: 1, upThreshold: 1, downThreshold: 0 });
    expect(judge.calls()).toBe(3 * (60 + 4));
    expect(await judgeThumbs(store, projectId)).toEqual([
      ['bad-0', -1],
      ['good-0', 1],
    ]);
    const labels = (await store.feedback.currentOfKinds(projectId, ['thumbs'])).filter(
      (f) => f.source === 'judge',
    );
    expect(labels.every((f) => f.raterId === 'judge:judge-large')).toBe(true);
    expect(labels[0]!.metadata).toMatchObject({
      confidence: 1,
      votes: { good: 0, bad: 3, asked: 3 },
      model: 'judge-large',
    });

    // Labeled answers are rated now: a second pass asks only about what is still unrated.
    const again = await labelWithJudge(store, projectId, {
      judge: { baseURL, model: 'judge-large' },
      route: 'support-bot',
      samples: 3,
      concurrency: 1,
    });
    expect(again).toMatchObject({ looked: 2, labeled: 0, unsure: 2 });
  });

  it('names the bad field', async () => {
    const projectId = (await store.projects.create('judge-bad')).id;
    await expect(
      labelWithJudge(store, projectId, { judge: { baseURL, model: 'j' }, samples: 0 }),
    ).rejects.toThrow(/samples/);
    await expect(
      labelWithJudge(store, projectId, { judge: { baseURL: 'not a url', model: 'j' } } as never),
    ).rejects.toThrow(/judge\.baseURL|baseURL/);
  });
});

for (const target of testDatabases()) {
  describe(`people's ratings label unrated answers where they are shown right (${target.name})`, () => {
    let store: Store;
    beforeAll(async () => {
      store = await Store.open(await target.create());
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    for (const scorer of ['words', 'similar'] as const)
      it(`labels answers like the liked ones up and like the disliked ones down, each rated answer scored without its own rating (${scorer})`, async () => {
        const projectId = await project(store, `ratings-${scorer}`, 3, 3);
        const report = await labelFromRatings(store, projectId, { scorer, route: 'support-bot' });
        // The "maybe" answers share no telling word with a rated one: too close to call.
        expect(report).toMatchObject({
          looked: 8,
          labeled: 6,
          up: 3,
          down: 3,
          unsure: 2,
          share: 0.75,
          rater: `judge:ratings-${scorer}`,
        });
        // Every rated answer is held out and checks thresholds chosen on the other folds.
        expect(report.reliability).toMatchObject({ heldOut: 60, folds: 5, check: 60, precision: 1 });
        // Far more than the 30 a single split would check on.
        expect(report.reliability.checkLabeled).toBeGreaterThanOrEqual(50);
        expect(report.reliability.lower!).toBeGreaterThanOrEqual(0.8);
        expect(await judgeThumbs(store, projectId)).toEqual([
          ['bad-0', -1],
          ['bad-1', -1],
          ['bad-2', -1],
          ['good-0', 1],
          ['good-1', 1],
          ['good-2', 1],
        ]);
        const label = (await store.feedback.currentOfKinds(projectId, ['thumbs'])).find(
          (f) => f.interactionId === 'good-0',
        )!;
        expect(label.metadata).toMatchObject({ pLiked: 1, confidence: 1, model: `ratings-${scorer}` });
        expect(label.metadata!.score as number).toBeGreaterThan(0);
      });

    it('labels none when too few answers were rated to show the target, and says why', async () => {
      const projectId = (await store.projects.create('ratings-few')).id;
      const outputs = [
        ...Array.from({ length: 6 }, (_, i) => ({
          id: `liked-${i}`,
          output: goodAnswer(i),
          thumb: 'up' as const,
        })),
        ...Array.from({ length: 6 }, (_, i) => ({
          id: `disliked-${i}`,
          output: badAnswer(i),
          thumb: 'down' as const,
        })),
        { id: 'good-0', output: goodAnswer(100) },
      ];
      await store.interactions.insert(
        projectId,
        outputs.map((r) =>
          parseInput(InteractionInput, {
            id: r.id,
            model: 'support-v1',
            messages: [{ role: 'user', content: 'I forgot my password.' }],
            output: r.output,
          }),
        ),
      );
      await store.feedback.insert(
        projectId,
        outputs.flatMap((r, k) =>
          'thumb' in r
            ? [
                parseInput(FeedbackInput, {
                  kind: 'thumbs',
                  interactionId: r.id,
                  raterId: `user-${k % 3}`,
                  value: r.thumb,
                }),
              ]
            : [],
        ),
      );
      await calibrateProject(store, projectId);
      const report = await labelFromRatings(store, projectId, {});
      expect(report).toMatchObject({ looked: 1, labeled: 0, share: 0 });
      expect(report.reliability).toMatchObject({ heldOut: 12, precision: null });
      expect(report.reliability.reasons[0]).toBe(
        'up: 12 held-out answers; showing 80.0% precision at 0.95 confidence needs at least 14 past the threshold even if all agree',
      );
      expect(await judgeThumbs(store, projectId)).toEqual([]);
    });

    it('names the bad field', async () => {
      await expect(labelFromRatings(store, 'p', { priorWeight: -1 })).rejects.toMatchObject({
        path: 'ratingsLabels.priorWeight',
      });
      await expect(labelFromRatings(store, 'p', { scorer: 'vibes' as 'words' })).rejects.toMatchObject({
        path: 'ratingsLabels.scorer',
      });
    });
  });
}
