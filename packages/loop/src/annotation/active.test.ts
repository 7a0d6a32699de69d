import { FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrateProject } from '../calibrate.js';
import { selectForAnnotation } from './policy.js';

describe('the active-learning annotation queue', () => {
  const db = sqliteTestDatabase();
  let store: Store;
  let projectId: string;

  beforeAll(async () => {
    store = await Store.open(await db.create());
    projectId = (await store.projects.create('al')).id;
    const topics = ['refund', 'shipping', 'password', 'invoice', 'warranty', 'coupon', 'address', 'size'];
    await store.interactions.insert(
      projectId,
      topics.map((t, i) =>
        parseInput(InteractionInput, {
          id: t,
          model: 'm',
          messages: [{ role: 'user', content: `a question about my ${t} number ${i} please` }],
          output: `an answer about ${t}`,
          createdAt: 1_000 + i,
        }),
      ),
    );
    const fb = (o: Record<string, unknown>) => parseInput(FeedbackInput, o);
    await store.feedback.insert(projectId, [
      // People agree on these: nothing to learn.
      ...['a', 'b', 'c'].map((r) => fb({ kind: 'thumbs', interactionId: 'refund', raterId: r, value: 'up' })),
      ...['a', 'b', 'c'].map((r) =>
        fb({ kind: 'thumbs', interactionId: 'shipping', raterId: r, value: 'down' }),
      ),
      // People split on this one.
      fb({ kind: 'thumbs', interactionId: 'password', raterId: 'a', value: 'up' }),
      fb({ kind: 'thumbs', interactionId: 'password', raterId: 'b', value: 'down' }),
      fb({ kind: 'thumbs', interactionId: 'password', raterId: 'c', value: 'up' }),
      fb({ kind: 'thumbs', interactionId: 'password', raterId: 'd', value: 'down' }),
      // The reward model is sure about this unrated one, unsure about that one.
      fb({
        kind: 'thumbs',
        interactionId: 'invoice',
        raterId: 'judge:rm',
        source: 'judge',
        value: 'up',
        metadata: { score: 6 },
      }),
      fb({
        kind: 'thumbs',
        interactionId: 'warranty',
        raterId: 'judge:rm',
        source: 'judge',
        value: 'up',
        metadata: { score: 0.1 },
      }),
    ]);
    await calibrateProject(store, projectId);
  });
  afterAll(async () => {
    await store?.close();
    await db.cleanup();
  });

  it('puts what a rating would teach most first, and what is settled last', async () => {
    const { policy, items } = await selectForAnnotation(store, { projectId, limit: 8 }, 'active-learning');
    expect(policy).toBe('active-learning');
    const order = items.map((i) => i.interactionId);
    expect(order).toEqual(
      expect.arrayContaining(['warranty', 'invoice', 'password', 'refund', 'shipping', 'coupon']),
    );
    const rank = (id: string) => order.indexOf(id);
    // The unsure reward model and the split raters come before the confident label and the agreed items.
    expect(rank('warranty')).toBeLessThan(rank('invoice'));
    expect(rank('password')).toBeLessThan(rank('refund'));
    expect(rank('password')).toBeLessThan(rank('shipping'));
    // Never-scored, never-rated items are fully uncertain and come early too.
    expect(rank('coupon')).toBeLessThan(rank('invoice'));
    expect(new Set(order).size).toBe(order.length);
  });
});

describe('the active-learning queue with the positives objective', () => {
  const db = sqliteTestDatabase();
  let store: Store;
  let projectId: string;
  const liked =
    'thank you for asking, your refund for order 1001 is on its way and arrives within three days';
  const disliked = 'no idea. ask someone else about your parcel, this is not something we deal with here';

  beforeAll(async () => {
    store = await Store.open(await db.create());
    projectId = (await store.projects.create('al-positives')).id;
    const answers: [string, string, string][] = [
      ['liked', 'where is my refund for order 1001', liked],
      ['disliked', 'where is my parcel 17', disliked],
      ['like-the-liked', 'when do i get my refund for order 2002', liked.replace('1001', '2002')],
      ['like-the-disliked', 'my parcel 42 has not arrived yet', disliked.replace('parcel', 'package')],
      [
        'fresh',
        'can i change my delivery address',
        'the warranty covers two years of repairs for every kettle',
      ],
    ];
    await store.interactions.insert(
      projectId,
      answers.map(([id, prompt, output], i) =>
        parseInput(InteractionInput, {
          id,
          model: 'm',
          messages: [{ role: 'user', content: prompt }],
          output,
          createdAt: 1_000 + i,
        }),
      ),
    );
    const fb = (o: Record<string, unknown>) => parseInput(FeedbackInput, o);
    await store.feedback.insert(projectId, [
      ...['a', 'b', 'c'].map((r) => fb({ kind: 'thumbs', interactionId: 'liked', raterId: r, value: 'up' })),
      ...['a', 'b', 'c'].map((r) =>
        fb({ kind: 'thumbs', interactionId: 'disliked', raterId: r, value: 'down' }),
      ),
    ]);
    await calibrateProject(store, projectId);
  });
  afterAll(async () => {
    await store?.close();
    await db.cleanup();
  });

  it('asks first about unrated answers like those people liked, last about those like the disliked', async () => {
    const { items } = await selectForAnnotation(
      store,
      { projectId, limit: 5, objective: 'positives' },
      'active-learning',
    );
    const order = items.map((i) => i.interactionId);
    expect(order.slice(0, 3)).toEqual(['like-the-liked', 'fresh', 'like-the-disliked']);
    // The default objective asks about the unknown answer before the one that is all but settled.
    const { items: unsure } = await selectForAnnotation(store, { projectId, limit: 5 }, 'active-learning');
    const rank = (id: string) => unsure.map((i) => i.interactionId).indexOf(id);
    expect(rank('fresh')).toBeLessThan(rank('like-the-liked'));
  });

  it('rejects an unknown objective by name', async () => {
    await expect(
      selectForAnnotation(store, { projectId, limit: 5, objective: 'fun' as 'positives' }, 'active-learning'),
    ).rejects.toThrow(/objective/);
  });
});
