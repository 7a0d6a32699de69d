import { FeedbackInput, InteractionInput, parseInput, RatchetError } from '@ratchet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

const variants = [
  { name: 'control', upstream: 'local', model: 'bot-v1', weight: 1 },
  { name: 'treatment', upstream: 'local', model: 'bot-v2', weight: 1 },
];

for (const target of testDatabases()) {
  describe(`experiments, routes and evaluations on ${target.name}`, () => {
    let store: Store;
    let projectId: string;

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('exp')).id;
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('starts an experiment with its route in one step, and allows one running experiment per route', async () => {
      const exp = await store.experiments.start(
        projectId,
        {
          name: 'v2-vs-v1',
          route: 'support',
          control: 'control',
          variants,
          metric: 'thumbs_up_rate',
          engine: 'msprt',
          decisionRule: { minObservationsPerArm: 10 },
          bandit: false,
        },
        'test',
      );
      expect(exp).toMatchObject({ status: 'running', bandit: false, history: [], route: 'support' });
      expect((await store.routes.get(projectId, 'support'))?.variants).toEqual(variants);
      const clash = store.experiments.start(projectId, { ...exp, name: 'again', decisionRule: {} }, 'test');
      await expect(clash).rejects.toThrow(RatchetError);
      await expect(clash).rejects.toMatchObject({ path: 'route' });
      expect(await store.experiments.list(projectId)).toHaveLength(1);
    });

    it('totals feedback per variant in SQL: users, thumbs, stars and rewards', async () => {
      const exp = (await store.experiments.get(projectId, 'v2-vs-v1'))!;
      const now = Date.now();
      // 3 users on control (one of them twice), 2 on treatment; one call before the experiment.
      const calls = [
        ['c1', 'control', 'u1', 'up', 5],
        ['c2', 'control', 'u1', 'down', 2],
        ['c3', 'control', 'u2', 'down', null],
        ['c4', 'control', 'u3', null, 4],
        ['t1', 'treatment', 'u4', 'up', 5],
        ['t2', 'treatment', 'u5', 'up', 3],
      ] as const;
      await store.interactions.insert(projectId, [
        ...calls.map(([id, variant, userId]) =>
          parseInput(InteractionInput, {
            id,
            route: 'support',
            variant,
            model: 'm',
            userId,
            messages: [{ role: 'user', content: 'hi' }],
            output: { role: 'assistant', content: 'hello' },
            createdAt: now,
          }),
        ),
        parseInput(InteractionInput, {
          id: 'old',
          route: 'support',
          variant: 'control',
          model: 'm',
          messages: [{ role: 'user', content: 'hi' }],
          output: { role: 'assistant', content: 'hello' },
          createdAt: exp.startedAt - 60_000,
        }),
      ]);
      await store.feedback.insert(projectId, [
        ...calls.flatMap(([id, , , thumbs, stars]) => [
          ...(thumbs
            ? [parseInput(FeedbackInput, { kind: 'thumbs', interactionId: id, value: thumbs })]
            : []),
          ...(stars ? [parseInput(FeedbackInput, { kind: 'stars', interactionId: id, value: stars })] : []),
        ]),
        parseInput(FeedbackInput, { kind: 'thumbs', interactionId: 'old', value: 'up' }),
      ]);
      const totals = await store.experiments.variantTotals(projectId, 'support', exp.startedAt);
      const byName = Object.fromEntries(totals.map((t) => [t.variant, t]));
      expect(byName.control).toMatchObject({
        users: 3,
        interactions: 4,
        thumbs: { up: 1, total: 3 },
        stars: { n: 3, sum: 11, sumOfSquares: 45 },
      });
      expect(byName.treatment).toMatchObject({
        users: 2,
        interactions: 2,
        thumbs: { up: 2, total: 2 },
        stars: { n: 2, sum: 8, sumOfSquares: 34 },
      });
    });

    it('records decisions, moves bandit weights with them, and stops keeping the winner', async () => {
      const exp = (await store.experiments.get(projectId, 'v2-vs-v1'))!;
      const look = {
        at: Date.now(),
        decision: 'keep_running',
        variant: null,
        reasons: ['waiting'],
        actor: 'test',
      };
      await store.experiments.recordDecision(
        projectId,
        exp.id,
        { ...look, weights: { control: 0.2, treatment: 0.8 } },
        {
          treatment: { thumbs_up_rate: { n: 1 } },
        },
      );
      expect((await store.routes.get(projectId, 'support'))!.variants.map((v) => v.weight)).toEqual([
        0.2, 0.8,
      ]);
      const stopped = await store.experiments.stop(
        projectId,
        exp.id,
        { ...look, decision: 'ship', variant: 'treatment', reasons: ['won'] },
        'treatment',
      );
      expect(stopped.status).toBe('stopped');
      expect(stopped.history.map((h) => h.decision)).toEqual(['keep_running', 'ship']);
      expect(stopped.state).toEqual({ treatment: { thumbs_up_rate: { n: 1 } } });
      expect((await store.routes.get(projectId, 'support'))!.variants).toEqual([
        { ...variants[1], weight: 1 },
      ]);
      await expect(store.experiments.stop(projectId, exp.id, look)).rejects.toMatchObject({
        code: 'conflict',
      });
      expect((await store.routes.list()).map((r) => r.name)).toEqual(['support']);
    });

    it('keeps an evaluation whole: items, summary and gate land together', async () => {
      const e = await store.evaluations.create(projectId, { name: 'eval-1', spec: { suites: ['redteam'] } });
      expect(e).toMatchObject({ status: 'running', passed: null, summary: null });
      const items = Array.from({ length: 3 }, (_, i) => ({
        index: i,
        suite: 'redteam',
        itemId: `p${i}`,
        category: 'injection',
        judge: i === 0 ? 'baseline' : 'candidate',
        result: { candidate: { output: `c${i}` } },
      }));
      const done = await store.evaluations.complete(projectId, e.id, {
        items,
        summary: { items: 3 },
        gate: { passed: false, reasons: ['tag:billing'] },
      });
      expect(done).toMatchObject({ status: 'succeeded', passed: false, gate: { reasons: ['tag:billing'] } });
      expect(await store.evaluations.items(projectId, e.id, { judge: 'baseline' })).toEqual([items[0]]);
      expect(await store.evaluations.items(projectId, e.id)).toHaveLength(3);
      // A second completion (or one of an evaluation already done) changes nothing.
      await expect(
        store.evaluations.complete(projectId, e.id, { items: [], summary: {}, gate: { passed: true } }),
      ).rejects.toMatchObject({ code: 'conflict' });
      const failed = await store.evaluations.create(projectId, { spec: {} });
      await store.evaluations.fail(projectId, failed.id, 'upstream down');
      expect((await store.evaluations.get(projectId, failed.id))!).toMatchObject({
        status: 'failed',
        error: 'upstream down',
      });
      expect((await store.evaluations.list(projectId)).map((x) => x.id)).toEqual([failed.id, e.id]);
    });
  });
}
