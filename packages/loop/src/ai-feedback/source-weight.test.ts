import { FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { calibrateProject } from '../calibrate.js';

/**
 * 40 answers, the first 20 good: three people rate each correctly; one more rater gets the first
 * ten wrong. As a judge (AI feedback) that rater should move those ten less than as a person.
 */
async function world(extraRaterSource: 'user' | 'judge', judgeWeight?: number) {
  const db = sqliteTestDatabase();
  const store = await Store.open(await db.create());
  const projectId = (await store.projects.create('w')).id;
  await store.interactions.insert(
    projectId,
    Array.from({ length: 40 }, (_, i) =>
      parseInput(InteractionInput, {
        id: `a${i}`,
        model: 'm',
        messages: [{ role: 'user', content: `q${i}` }],
        output: `answer ${i}`,
      }),
    ),
  );
  const thumbs = (i: number, raterId: string, up: boolean, source: string) =>
    parseInput(FeedbackInput, {
      kind: 'thumbs',
      interactionId: `a${i}`,
      raterId,
      source,
      value: up ? 'up' : 'down',
    });
  const events = [];
  for (let i = 0; i < 40; i++) {
    const good = i < 20;
    for (const r of ['p1', 'p2', 'p3']) events.push(thumbs(i, r, good, 'user'));
    events.push(thumbs(i, 'extra', i < 10 ? !good : good, extraRaterSource));
  }
  await store.feedback.insert(projectId, events);
  await calibrateProject(
    store,
    projectId,
    judgeWeight === undefined ? {} : { mapping: { sourceWeight: { judge: judgeWeight } } },
  );
  const rewards = await store.db.selectFrom('current_rewards').select(['interaction_id', 'reward']).execute();
  const mean = (ids: number[]) =>
    ids.reduce((s, i) => s + rewards.find((r) => r.interaction_id === `a${i}`)!.reward, 0) / ids.length;
  const firstTen = mean(Array.from({ length: 10 }, (_, i) => i));
  await store.close();
  await db.cleanup();
  return firstTen;
}

describe('the human/AI feedback mix', () => {
  const results: number[] = [];
  afterAll(() => {
    console.log(
      `mean reward of the 10 answers the extra rater got wrong: as a person ${results[0]?.toFixed(3)}, as a judge ${results[1]?.toFixed(3)}, judge at weight 1 ${results[2]?.toFixed(3)}`,
    );
  });

  it('counts judge labels for less than people by default, as configured', async () => {
    const asPerson = await world('user');
    const asJudge = await world('judge');
    const asFullJudge = await world('judge', 1);
    results.push(asPerson, asJudge, asFullJudge);
    expect(asJudge).toBeGreaterThan(asPerson + 0.02);
    expect(asFullJudge).toBeCloseTo(asPerson, 6);
  });
});
