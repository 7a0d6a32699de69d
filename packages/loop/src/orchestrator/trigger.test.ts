import { FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { type LoopContext, roundIsDue } from './loop.js';
import { LoopPolicy } from './policy.js';

describe('when a round is due', () => {
  const db = sqliteTestDatabase();
  afterAll(() => db.cleanup());

  async function setup(trigger: Record<string, unknown>) {
    const store = await Store.open(await db.create());
    const project = await store.projects.getOrCreate('p');
    const policy = LoopPolicy.parse({ route: 'r', baseModel: '/m', trigger });
    const ctx = { store, projectId: project.id, policy } as LoopContext;
    const rate = async (n: number, from: number) => {
      const ids = Array.from({ length: n }, (_, i) => `i${from + i}`);
      await store.interactions.insert(
        project.id,
        ids.map((id) =>
          parseInput(InteractionInput, {
            id,
            model: 'm',
            route: 'r',
            messages: [{ role: 'user', content: 'q' }],
            output: 'a',
          }),
        ),
      );
      await store.feedback.insert(
        project.id,
        ids.map((id) =>
          parseInput(FeedbackInput, { kind: 'thumbs', interactionId: id, raterId: 'u', value: 'up' }),
        ),
      );
    };
    return { store, project, ctx, rate };
  }

  it('starts on enough new feedback, counted since the last round started', async () => {
    const { store, project, ctx, rate } = await setup({ minNewFeedback: 3 });
    await rate(2, 0);
    expect(await roundIsDue(ctx)).toMatchObject({ due: false, newFeedback: 2 });
    await rate(1, 2);
    expect(await roundIsDue(ctx)).toMatchObject({ due: true, newFeedback: 3, why: 'feedback' });
    await store.loops.start(project.id, 'r', 'calibrate', {}, 'test');
    expect(await roundIsDue(ctx)).toMatchObject({ due: false, newFeedback: 0 });
    await store.close();
  });

  it('starts on the schedule once the interval passed, if anything new arrived', async () => {
    const { store, project, ctx, rate } = await setup({ minNewFeedback: 100, everyHours: 24 });
    const round = await store.loops.start(project.id, 'r', 'calibrate', {}, 'test');
    const later = (h: number) => round.createdAt + h * 3_600_000;
    expect(await roundIsDue(ctx, later(25))).toMatchObject({ due: false, newFeedback: 0 });
    await rate(1, 0);
    expect(await roundIsDue(ctx, later(23))).toMatchObject({ due: false, newFeedback: 1 });
    expect(await roundIsDue(ctx, later(25))).toMatchObject({ due: true, why: 'schedule' });
    await store.close();
  });
});
