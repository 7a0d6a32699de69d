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

    it('totals feedback per variant in SQL: users served, and each user’s thumbs and stars once', async () => {
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
      // Control: u1's thumbs up and down are one user at 0.5, u2's down one at 0; u1's stars 5 and
      // 2 are one user at 3.5, u3's 4 another.
      expect(byName.control).toMatchObject({
        users: 3,
        interactions: 4,
        thumbs: { users: 2, events: 3, up: 1, sum: 0.5, sumOfSquares: 0.25 },
        stars: { users: 2, events: 3, sum: 7.5, sumOfSquares: 28.25 },
        otherSources: [],
      });
      expect(byName.treatment).toMatchObject({
        users: 2,
        interactions: 2,
        thumbs: { users: 2, events: 2, up: 2, sum: 2, sumOfSquares: 2 },
        stars: { users: 2, events: 2, sum: 8, sumOfSquares: 34 },
      });
    });

    it('counts a user who rated 10 answers as one unit, users for the SRM check, and other sources apart', async () => {
      const now = Date.now();
      const call = (id: string, variant: string, userId?: string) =>
        parseInput(InteractionInput, {
          id,
          route: 'clustered',
          variant,
          model: 'm',
          ...(userId ? { userId } : {}),
          messages: [{ role: 'user', content: 'hi' }],
          output: { role: 'assistant', content: 'hello' },
          createdAt: now,
        });
      const heavy = Array.from({ length: 10 }, (_, k) => `h${k}`);
      await store.interactions.insert(projectId, [
        ...heavy.map((id) => call(id, 'control', 'heavy')),
        call('l0', 'control', 'light'),
        // No user id: each call was assigned on its own, so each is its own unit.
        call('a0', 'control'),
        call('a1', 'control'),
        call('tr0', 'treatment', 't1'),
        call('tr1', 'treatment', 't1'),
        call('tr2', 'treatment', 't2'),
        call('tr3', 'treatment', 't3'),
      ]);
      const thumb = (interactionId: string, value: 'up' | 'down', extra: object = {}) =>
        parseInput(FeedbackInput, { kind: 'thumbs', interactionId, value, ...extra });
      const judge = { source: 'judge', raterId: 'judge-1' };
      const annotator = { source: 'annotator', raterId: 'ann-1' };
      await store.feedback.insert(projectId, [
        // heavy: 9 up and 1 down from the user; a judge says down and an annotator gives 1 star to all.
        ...heavy.map((id, k) => thumb(id, k < 9 ? 'up' : 'down')),
        ...heavy.map((id) => thumb(id, 'down', judge)),
        ...heavy.map((id) =>
          parseInput(FeedbackInput, { kind: 'stars', interactionId: id, value: 1, ...annotator }),
        ),
        thumb('l0', 'down'),
        thumb('a0', 'up'),
        thumb('a1', 'up'),
        thumb('tr0', 'up'),
        thumb('tr1', 'up'),
        thumb('tr2', 'down'),
        // t3's answer was rated only by the judge: no user outcome, but a user served.
        thumb('tr3', 'up', judge),
        thumb('tr0', 'up', judge),
      ]);
      const rewards = [
        ...heavy.map((id, k) => [id, k < 5 ? 1 : 0] as const),
        ['l0', -1],
        ['tr0', 0.2],
        ['tr1', 0.4],
        ['tr2', 0],
        ['tr3', 1],
      ] as const;
      await store.calibration.save(
        projectId,
        {},
        {},
        [],
        rewards.map(([interactionId, reward]) => ({
          interactionId,
          n: 1,
          rawMean: reward,
          reward,
          sd: 0.1,
          lower: reward - 0.2,
          upper: reward + 0.2,
        })),
      );
      const totals = await store.experiments.variantTotals(projectId, 'clustered', now - 1000);
      const byName = Object.fromEntries(totals.map((t) => [t.variant, t]));
      const control = byName.control!;
      const treatment = byName.treatment!;
      // The SRM check counts users: heavy, light and the two anonymous calls; t1, t2 and t3.
      expect([control.users, control.interactions]).toEqual([4, 13]);
      expect([treatment.users, treatment.interactions]).toEqual([3, 4]);
      // Thumbs, users' own only: heavy 0.9, light 0, each anonymous call 1: 4 units of 13 ratings.
      expect(control.thumbs).toMatchObject({ users: 4, events: 13, up: 11 });
      expect(control.thumbs.sum).toBeCloseTo(2.9, 12);
      expect(control.thumbs.sumOfSquares).toBeCloseTo(2.81, 12);
      expect(treatment.thumbs).toEqual({ users: 2, events: 3, up: 2, sum: 1, sumOfSquares: 1 });
      // No stars from users: the annotator's are not the users' outcome.
      expect(control.stars).toMatchObject({ users: 0, events: 0 });
      // Rewards of the answers users rated: heavy 0.5 (ten answers, one unit), light -1; t1 0.3, t2
      // 0; t3's answer only the judge rated.
      expect(control.reward).toMatchObject({ users: 2, events: 11 });
      expect(control.reward.sum).toBeCloseTo(-0.5, 12);
      expect(control.reward.sumOfSquares).toBeCloseTo(1.25, 12);
      expect(treatment.reward).toMatchObject({ users: 2, events: 3 });
      expect(treatment.reward.sum).toBeCloseTo(0.3, 12);
      expect(treatment.reward.sumOfSquares).toBeCloseTo(0.09, 12);
      // The judge and annotator labels are reported apart, at event level.
      expect(control.otherSources).toEqual([
        { source: 'annotator', thumbs: { up: 0, total: 0 }, stars: { n: 10, sum: 10 } },
        { source: 'judge', thumbs: { up: 0, total: 10 }, stars: { n: 0, sum: 0 } },
      ]);
      expect(treatment.otherSources).toEqual([
        { source: 'judge', thumbs: { up: 2, total: 2 }, stars: { n: 0, sum: 0 } },
      ]);
    });

    it('joins each user’s pre-period mean of the same metric to their experiment mean (CUPED’s sums)', async () => {
      const now = Date.now();
      const start = now - 1000;
      const call = (id: string, userId: string, at: number, variant?: string) =>
        parseInput(InteractionInput, {
          id,
          route: 'cuped',
          ...(variant ? { variant } : {}),
          model: 'm',
          userId,
          messages: [{ role: 'user', content: 'hi' }],
          output: { role: 'assistant', content: 'hello' },
          createdAt: at,
        });
      const pre = start - 5000;
      await store.interactions.insert(projectId, [
        // Before the experiment (no variant yet): alice 2 up of 3 and 4 stars, bob down, dave down
        // (and an older up, outside the 10 s pre-period), erin (never in the experiment) up.
        call('p-a1', 'alice', pre),
        call('p-a2', 'alice', pre),
        call('p-a3', 'alice', pre),
        call('p-b1', 'bob', pre),
        call('p-d1', 'dave', pre),
        call('p-d0', 'dave', start - 20_000),
        call('p-e1', 'erin', pre),
        call('p-c1', 'carol', pre),
        // The experiment: alice up (and 5 stars), bob up and down on control; carol up, dave down
        // twice on treatment.
        call('x-a1', 'alice', now, 'control'),
        call('x-b1', 'bob', now, 'control'),
        call('x-b2', 'bob', now, 'control'),
        call('x-c1', 'carol', now, 'treatment'),
        call('x-d1', 'dave', now, 'treatment'),
        call('x-d2', 'dave', now, 'treatment'),
      ]);
      const thumb = (interactionId: string, value: 'up' | 'down', extra: object = {}) =>
        parseInput(FeedbackInput, { kind: 'thumbs', interactionId, value, ...extra });
      const stars = (interactionId: string, value: number) =>
        parseInput(FeedbackInput, { kind: 'stars', interactionId, value });
      await store.feedback.insert(projectId, [
        thumb('p-a1', 'up'),
        thumb('p-a2', 'up'),
        thumb('p-a3', 'down'),
        stars('p-a1', 4),
        thumb('p-b1', 'down'),
        thumb('p-d1', 'down'),
        thumb('p-d0', 'up'),
        thumb('p-e1', 'up'),
        // carol's pre-period answer only a judge rated: she has no pre-period outcome.
        thumb('p-c1', 'up', { source: 'judge', raterId: 'judge-1' }),
        thumb('x-a1', 'up'),
        stars('x-a1', 5),
        thumb('x-b1', 'up'),
        thumb('x-b2', 'down'),
        thumb('x-c1', 'up'),
        thumb('x-d1', 'down'),
        thumb('x-d2', 'down'),
      ]);
      await store.calibration.save(
        projectId,
        {},
        {},
        [],
        [
          ['p-a1', 0.5],
          ['x-a1', 1],
        ].map(([interactionId, reward]) => ({
          interactionId: interactionId as string,
          n: 1,
          rawMean: reward as number,
          reward: reward as number,
          sd: 0.1,
          lower: 0,
          upper: 1,
        })),
      );
      const totals = await store.experiments.variantTotals(projectId, 'cuped', start, undefined, {
        prePeriodMs: 10_000,
      });
      const byName = Object.fromEntries(totals.map((t) => [t.variant, t]));
      const control = byName.control!;
      const treatment = byName.treatment!;
      // Control: alice x = 2/3, y = 1; bob x = 0, y = 0.5.
      expect(control.thumbs).toMatchObject({ users: 2, events: 3, sum: 1.5 });
      expect(control.prePeriod.thumbs.users).toBe(2);
      expect(control.prePeriod.thumbs.sum).toBeCloseTo(2 / 3, 12);
      expect(control.prePeriod.thumbs.sumOfSquares).toBeCloseTo(4 / 9, 12);
      expect(control.prePeriod.thumbs.crossSum).toBeCloseTo(2 / 3, 12);
      expect(control.prePeriod.thumbs.outcomeSum).toBeCloseTo(1.5, 12);
      // Treatment: carol has no pre-period outcome (the judge's is not hers); dave x = 0 (his
      // older up is outside the window), y = 0. erin was never in the experiment.
      expect(treatment.thumbs).toMatchObject({ users: 2, sum: 1 });
      expect(treatment.prePeriod.thumbs).toEqual({
        users: 1,
        sum: 0,
        sumOfSquares: 0,
        crossSum: 0,
        outcomeSum: 0,
      });
      // Stars and rewards: alice 4 -> 5 stars, reward 0.5 -> 1.
      expect(control.prePeriod.stars).toEqual({
        users: 1,
        sum: 4,
        sumOfSquares: 16,
        crossSum: 20,
        outcomeSum: 5,
      });
      expect(control.prePeriod.reward.users).toBe(1);
      expect(control.prePeriod.reward.sum).toBeCloseTo(0.5, 12);
      expect(control.prePeriod.reward.crossSum).toBeCloseTo(0.5, 12);
      expect(control.prePeriod.reward.outcomeSum).toBeCloseTo(1, 12);
      // Without a pre-period nothing is joined, and the experiment's sums are the same.
      const plain = await store.experiments.variantTotals(projectId, 'cuped', start);
      const plainControl = plain.find((t) => t.variant === 'control')!;
      expect(plainControl.prePeriod.thumbs.users).toBe(0);
      expect(plainControl.thumbs).toEqual(control.thumbs);
    });

    it('leaves out the ratings of raters calibration flagged, when asked, before and during the experiment', async () => {
      const now = Date.now();
      const call = (id: string, userId: string, at: number, variant?: string) =>
        parseInput(InteractionInput, {
          id,
          route: 'flagged',
          ...(variant ? { variant } : {}),
          model: 'm',
          userId,
          messages: [{ role: 'user', content: 'hi' }],
          output: { role: 'assistant', content: 'hello' },
          createdAt: at,
        });
      await store.interactions.insert(projectId, [
        call('f-pre-honest', 'honest', now - 5000),
        call('f-pre-troll', 'troll', now - 5000),
        call('f-honest', 'honest', now, 'control'),
        call('f-troll', 'troll', now, 'control'),
      ]);
      const thumb = (interactionId: string, value: 'up' | 'down', raterId: string) =>
        parseInput(FeedbackInput, { kind: 'thumbs', interactionId, value, raterId });
      await store.feedback.insert(projectId, [
        thumb('f-pre-honest', 'up', 'honest'),
        thumb('f-pre-troll', 'down', 'troll'),
        thumb('f-honest', 'up', 'honest'),
        thumb('f-troll', 'down', 'troll'),
      ]);
      const rater = (raterId: string, flagged: boolean) => ({
        raterId,
        bias: 0,
        scale: flagged ? -1 : 1,
        noiseSd: 0.5,
        reliability: 0.5,
        consensusCorrelation: flagged ? -0.9 : 0.9,
        influence: flagged ? 0 : 1,
        flagged,
        reason: flagged ? 'runs against the consensus' : null,
      });
      await store.calibration.save(projectId, {}, {}, [rater('honest', false), rater('troll', true)], []);
      const totals = async (excludeFlaggedRaters: boolean) =>
        (
          await store.experiments.variantTotals(projectId, 'flagged', now - 1000, undefined, {
            prePeriodMs: 10_000,
            excludeFlaggedRaters,
          })
        ).find((t) => t.variant === 'control')!;
      const all = await totals(false);
      expect(all.thumbs).toMatchObject({ users: 2, sum: 1, up: 1 });
      expect(all.prePeriod.thumbs).toMatchObject({ users: 2, sum: 1 });
      const clean = await totals(true);
      expect(clean.thumbs).toMatchObject({ users: 1, events: 1, sum: 1, up: 1 });
      expect(clean.prePeriod.thumbs).toEqual({
        users: 1,
        sum: 1,
        sumOfSquares: 1,
        crossSum: 1,
        outcomeSum: 1,
      });
      // The troll is still a user served: the sample ratio check counts assignment, not ratings.
      expect(clean.users).toBe(2);
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
