import { FeedbackInput, InteractionInput, parseInput, SeededRandom } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrateProject } from '../calibrate.js';
import { experimentStatus, startExperiment, stopExperiment } from './experiments.js';

/** Users of a route's variants, each rating one answer with probability `up[variant]` of a thumbs up. */
async function traffic(
  store: Store,
  projectId: string,
  route: string,
  up: Record<string, number>,
  users: number,
  seed: number,
) {
  const rng = new SeededRandom(seed);
  const names = Object.keys(up);
  const now = Date.now();
  const rows = Array.from({ length: users }, (_, i) => ({
    id: `${route}-${i}`,
    variant: names[i % names.length]!,
    thumb: rng.uniform(),
  }));
  await store.interactions.insert(
    projectId,
    rows.map((r) =>
      parseInput(InteractionInput, {
        id: r.id,
        route,
        variant: r.variant,
        model: r.variant,
        userId: `u-${r.id}`,
        messages: [{ role: 'user', content: 'hi' }],
        output: 'hello',
        createdAt: now,
      }),
    ),
  );
  await store.feedback.insert(
    projectId,
    rows.map((r) =>
      parseInput(FeedbackInput, {
        kind: 'thumbs',
        interactionId: r.id,
        value: r.thumb < up[r.variant]! ? 'up' : 'down',
      }),
    ),
  );
}

/**
 * Returning users: each has a propensity of 0.15 or 0.85 that persists; they rated 8 answers on
 * the route a day before `start` (no variant yet) and rate 2 during the experiment.
 */
async function returningUsers(store: Store, projectId: string, route: string, users: number, seed: number) {
  const rng = new SeededRandom(seed);
  const interactions: ReturnType<typeof parseInput<typeof InteractionInput>>[] = [];
  const feedback: ReturnType<typeof parseInput<typeof FeedbackInput>>[] = [];
  const rate = (u: number) => (u % 2 === 0 ? 0.15 : 0.85);
  const answer = (id: string, u: number, at: number, variant?: string) => {
    interactions.push(
      parseInput(InteractionInput, {
        id,
        route,
        ...(variant ? { variant } : {}),
        model: 'm',
        userId: `${route}-user-${u}`,
        messages: [{ role: 'user', content: 'hi' }],
        output: 'hello',
        createdAt: at,
      }),
    );
    feedback.push(
      parseInput(FeedbackInput, {
        kind: 'thumbs',
        interactionId: id,
        value: rng.uniform() < rate(u) ? 'up' : 'down',
      }),
    );
  };
  const before = Date.now() - 24 * 60 * 60 * 1000;
  for (let u = 0; u < users; u++) for (let k = 0; k < 8; k++) answer(`${route}-pre-${u}-${k}`, u, before);
  return async () => {
    const now = Date.now();
    // Sticky assignment: a user's two answers come from the same variant.
    for (let u = 0; u < users; u++)
      for (let k = 0; k < 2; k++) answer(`${route}-x-${u}-${k}`, u, now, Math.floor(u / 2) % 2 ? 'b' : 'a');
    await store.interactions.insert(projectId, interactions);
    await store.feedback.insert(projectId, feedback);
  };
}

/**
 * Users who mostly do not rate: `regenerate[variant]` of each variant's answers are regenerated
 * (an implicit signal, sent as the SDK does), and one answer in eight gets a thumb whose share of
 * ups is `up[variant]`.
 */
async function quietUsers(
  store: Store,
  projectId: string,
  route: string,
  arms: Record<string, { regenerate: number; up: number }>,
  users: number,
  seed: number,
) {
  const rng = new SeededRandom(seed);
  const names = Object.keys(arms);
  const now = Date.now();
  const interactions: ReturnType<typeof parseInput<typeof InteractionInput>>[] = [];
  const feedback: ReturnType<typeof parseInput<typeof FeedbackInput>>[] = [];
  for (let u = 0; u < users; u++) {
    const variant = names[u % names.length]!;
    for (let k = 0; k < 2; k++) {
      const id = `${route}-${u}-${k}`;
      interactions.push(
        parseInput(InteractionInput, {
          id,
          route,
          variant,
          model: variant,
          userId: `${route}-user-${u}`,
          messages: [{ role: 'user', content: 'hi' }],
          output: 'hello',
          createdAt: now,
        }),
      );
      if (rng.bernoulli(1 / 8))
        feedback.push(
          parseInput(FeedbackInput, {
            kind: 'thumbs',
            interactionId: id,
            value: rng.bernoulli(arms[variant]!.up) ? 'up' : 'down',
          }),
        );
      else if (rng.bernoulli(arms[variant]!.regenerate))
        feedback.push(
          parseInput(FeedbackInput, {
            kind: 'implicit',
            signal: 'regenerated',
            source: 'implicit',
            raterId: `implicit:${route}-user-${u}`,
            interactionId: id,
          }),
        );
    }
  }
  await store.interactions.insert(projectId, interactions);
  await store.feedback.insert(projectId, feedback);
}

const variants = (a: string, b: string) => [
  { name: a, upstreamModel: a, weight: 1, upstream: 'local' },
  { name: b, upstreamModel: b, weight: 1, upstream: 'local' },
];

for (const target of testDatabases()) {
  describe(`experiment decisions on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('decisions')).id;
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('adjusts by users’ pre-period outcomes (CUPED) and says so: a narrower interval on the same users', async () => {
      const intervals: Record<string, number> = {};
      for (const [route, cuped] of [
        ['cuped-on', true],
        ['cuped-off', false],
      ] as const) {
        // The same seed: both routes get the very same users and thumbs.
        const during = await returningUsers(store, projectId, route, 400, 7);
        await startExperiment(store, projectId, {
          name: route,
          route,
          control: 'a',
          variants: variants('a', 'b'),
          decisionRule: { minObservationsPerArm: 50, cuped: { enabled: cuped, prePeriodDays: 7 } },
        });
        await during();
        const s = await experimentStatus(store, projectId, route);
        const c = s.decision.comparisons[0]!;
        intervals[route] = c.sequentialInterval.upper - c.sequentialInterval.lower;
        // No rule named the effect: the metric's default (5 points) was written at the start.
        expect(s.experiment.decisionRule).toMatchObject({ expectedEffect: 0.05 });
        expect(s.adjustments.mixture).toEqual({ expectedEffect: 0.05 });
        if (!cuped) {
          expect(s.adjustments.cuped).toBeNull();
          continue;
        }
        // Propensities 0.15 / 0.85: the users' pre-period means explain most of their thumbs.
        const a = s.adjustments.cuped!;
        expect(a.prePeriodDays).toBe(7);
        expect(a.coveredShare).toBe(1);
        expect(a.theta).toBeGreaterThan(0.6);
        expect(a.theta).toBeLessThan(1.2);
        expect(a.varianceReduction).toBeGreaterThan(0.3);
        // The arms' means as people read them stay unadjusted.
        expect(s.variants[0]!.thumbsUpRate.users).toBe(200);
      }
      expect(intervals['cuped-on']!).toBeLessThan(0.85 * intervals['cuped-off']!);
    });

    it('leaves out flagged raters: with a third adversarial the raw difference shrinks, the cleaned one does not', async () => {
      const rng = new SeededRandom(21);
      const users = 600;
      const troll = (u: number) => u % 3 === 0;
      const difference: Record<string, number> = {};
      for (const clean of [true, false]) {
        const route = clean ? 'trolls-clean' : 'trolls-raw';
        await startExperiment(store, projectId, {
          name: route,
          route,
          control: 'a',
          variants: variants('a', 'b'),
          decisionRule: { minObservationsPerArm: 50, excludeFlaggedRaters: clean },
        });
        const now = Date.now();
        const rows = Array.from({ length: users }, (_, u) => {
          const variant = u % 2 ? 'b' : 'a';
          // Truly 40% liked on a, 80% on b; an adversary answers the opposite of what they think.
          const liked = rng.uniform() < (variant === 'b' ? 0.8 : 0.4);
          return { id: `${route}-${u}`, u, variant, up: troll(u) ? !liked : liked };
        });
        await store.interactions.insert(
          projectId,
          rows.map((r) =>
            parseInput(InteractionInput, {
              id: r.id,
              route,
              variant: r.variant,
              model: r.variant,
              userId: `rater-${r.u}`,
              messages: [{ role: 'user', content: 'hi' }],
              output: 'hello',
              createdAt: now,
            }),
          ),
        );
        await store.feedback.insert(
          projectId,
          rows.map((r) =>
            parseInput(FeedbackInput, {
              kind: 'thumbs',
              interactionId: r.id,
              value: r.up ? 'up' : 'down',
              raterId: `rater-${r.u}`,
            }),
          ),
        );
        if (clean)
          // What calibration found: the adversaries flagged (the same users rate on both routes).
          await store.calibration.save(
            projectId,
            {},
            {},
            Array.from({ length: users }, (_, u) => ({
              raterId: `rater-${u}`,
              bias: 0,
              scale: troll(u) ? -1 : 1,
              noiseSd: 0.5,
              reliability: 0.5,
              consensusCorrelation: null,
              influence: troll(u) ? 0 : 1,
              flagged: troll(u),
              reason: troll(u) ? 'runs against the consensus' : null,
            })),
            [],
          );
        const s = await experimentStatus(store, projectId, route);
        difference[route] = s.decision.comparisons[0]!.difference;
        expect(s.adjustments.flaggedRatersExcluded).toBe(clean);
        if (clean) expect(s.variants[0]!.thumbsUpRate.users).toBe(200);
      }
      // True difference 0.4; a third inverted leaves 0.4 (2/3 - 1/3) = 0.13 in the raw thumbs.
      expect(difference['trolls-raw']!).toBeLessThan(0.25);
      expect(difference['trolls-clean']!).toBeGreaterThan(0.3);
    });

    it('stops for harm when the treatment is clearly worse', async () => {
      await startExperiment(store, projectId, {
        name: 'harmful',
        route: 'r1',
        control: 'a',
        variants: variants('a', 'b'),
        decisionRule: { minObservationsPerArm: 50 },
      });
      await traffic(store, projectId, 'r1', { a: 0.7, b: 0.3 }, 600, 1);
      const s = await experimentStatus(store, projectId, 'harmful', { record: true });
      expect(s.decision).toMatchObject({ decision: 'stop_for_harm', variant: 'b' });
      expect(s.decision.reasons[0]).toMatch(/^harm: b thumbs_up_rate/);
      expect(s.experiment.history).toHaveLength(1);
      expect(s.variants.map((v) => v.users)).toEqual([300, 300]);
      const stopped = await stopExperiment(store, projectId, 'harmful', { reason: 'harm', keep: 'a' });
      expect((await store.routes.get(projectId, 'r1'))!.variants).toEqual([
        { ...stopped.variants[0], weight: 1 },
      ]);
    });

    it('keeps running on an A/A test, and the Bayesian engine ships on posterior risk alone', async () => {
      await startExperiment(store, projectId, {
        name: 'aa',
        route: 'r2',
        control: 'a',
        variants: variants('a', 'b'),
        decisionRule: { minObservationsPerArm: 50 },
      });
      await traffic(store, projectId, 'r2', { a: 0.5, b: 0.5 }, 400, 2);
      const aa = await experimentStatus(store, projectId, 'aa');
      expect(aa.decision.decision).toBe('keep_running');
      expect(aa.experiment.history).toEqual([]); // not recorded

      await startExperiment(store, projectId, {
        name: 'bayes',
        route: 'r3',
        control: 'a',
        variants: variants('a', 'b'),
        engine: 'bayesian',
        decisionRule: { minObservationsPerArm: 50, ship: { minProbabilityToBeat: 0.9 } },
      });
      await traffic(store, projectId, 'r3', { a: 0.4, b: 0.55 }, 400, 3);
      const bayes = await experimentStatus(store, projectId, 'bayes');
      const c = bayes.decision.comparisons[0]!;
      expect(c.probabilityToBeat).toBeGreaterThan(0.9);
      expect(bayes.decision).toMatchObject({ decision: 'ship', variant: 'b' });
      expect(bayes.decision.reasons[0]).toMatch(/P\(better\)/);
    });

    it('decides on the mean calibrated reward once ratings are calibrated', async () => {
      await startExperiment(store, projectId, {
        name: 'reward',
        route: 'r5',
        control: 'a',
        variants: variants('a', 'b'),
        metric: 'mean_reward',
        decisionRule: { minObservationsPerArm: 50 },
      });
      await traffic(store, projectId, 'r5', { a: 0.3, b: 0.8 }, 400, 5);
      const before = await experimentStatus(store, projectId, 'reward');
      expect(before.variants.map((v) => v.meanReward.users)).toEqual([0, 0]);
      await calibrateProject(store, projectId);
      const s = await experimentStatus(store, projectId, 'reward');
      const [a, b] = s.variants;
      expect([a!.meanReward.users, b!.meanReward.users]).toEqual([200, 200]);
      expect(b!.meanReward.mean!).toBeGreaterThan(a!.meanReward.mean! + 0.3);
      expect(s.decision.comparisons[0]).toMatchObject({ metric: 'mean_reward', verdict: 'better' });
      expect(s.decision).toMatchObject({ decision: 'ship', variant: 'b' });
    });

    it('decides on the regenerate rate (lower is better) with thumbs as a guardrail, and every user served counts', async () => {
      await startExperiment(store, projectId, {
        name: 'regen',
        route: 'r-regen',
        control: 'a',
        variants: variants('a', 'b'),
        metric: 'regenerate_rate',
        decisionRule: { minObservationsPerArm: 100, guardrails: [{ metric: 'thumbs_up_rate' }] },
      });
      // b's answers are regenerated half as often; its thumbs are about the same (and few).
      await quietUsers(
        store,
        projectId,
        'r-regen',
        { a: { regenerate: 0.14, up: 0.5 }, b: { regenerate: 0.07, up: 0.5 } },
        1600,
        5,
      );
      const s = await experimentStatus(store, projectId, 'regen');
      // The metric's own default effect was written at the start.
      expect(s.experiment.decisionRule).toMatchObject({ expectedEffect: 0.03 });
      const [a, b] = s.variants;
      expect(a!.metrics.regenerate_rate).toMatchObject({
        users: 800,
        higherIsBetter: false,
        source: 'implicit',
      });
      expect(b!.metrics.regenerate_rate.mean!).toBeLessThan(a!.metrics.regenerate_rate.mean! - 0.03);
      // Few users have a thumb at all: far fewer units than the implicit metric has.
      expect(a!.metrics.thumbs_up_rate.users).toBeLessThan(300);
      const primary = s.decision.comparisons.find((c) => c.metric === 'regenerate_rate')!;
      expect(primary).toMatchObject({ role: 'primary', higherIsBetter: false, verdict: 'better' });
      expect(primary.difference).toBeLessThan(0);
      expect(s.decision.comparisons.find((c) => c.metric === 'thumbs_up_rate')).toMatchObject({
        role: 'guardrail',
        verdict: 'inconclusive',
      });
      expect(s.decision).toMatchObject({ decision: 'ship', variant: 'b' });
    });

    it('stops a candidate people regenerate more, and rejects a rule that turns the metric around', async () => {
      await startExperiment(store, projectId, {
        name: 'regen-worse',
        route: 'r-regen-worse',
        control: 'a',
        variants: variants('a', 'b'),
        metric: 'regenerate_rate',
        decisionRule: { minObservationsPerArm: 100 },
      });
      await quietUsers(
        store,
        projectId,
        'r-regen-worse',
        { a: { regenerate: 0.06, up: 0.5 }, b: { regenerate: 0.16, up: 0.5 } },
        1600,
        6,
      );
      const s = await experimentStatus(store, projectId, 'regen-worse');
      expect(s.decision).toMatchObject({ decision: 'stop_for_harm', variant: 'b' });
      expect(s.decision.reasons[0]).toMatch(/^harm: b regenerate_rate/);
      const wrongWay = startExperiment(store, projectId, {
        name: 'wrong-way',
        route: 'r-wrong-way',
        control: 'a',
        variants: variants('a', 'b'),
        metric: 'regenerate_rate',
        decisionRule: { higherIsBetter: true },
      });
      await expect(wrongWay).rejects.toMatchObject({
        code: 'invalid_request',
        path: 'decisionRule.higherIsBetter',
      });
      const unknownGuardrail = startExperiment(store, projectId, {
        name: 'unknown-guardrail',
        route: 'r-unknown',
        control: 'a',
        variants: variants('a', 'b'),
        decisionRule: { guardrails: [{ metric: 'latency' }] },
      });
      await expect(unknownGuardrail).rejects.toMatchObject({
        code: 'invalid_request',
        path: 'decisionRule.guardrails.0.metric',
      });
      expect(await store.experiments.get(projectId, 'wrong-way')).toBeUndefined();
    });

    it('flags a sample ratio mismatch and will not ship through it', async () => {
      await startExperiment(store, projectId, {
        name: 'srm',
        route: 'r4',
        control: 'a',
        variants: [
          { name: 'a', upstreamModel: 'a', weight: 1, upstream: 'local' },
          { name: 'b', upstreamModel: 'b', weight: 1, upstream: 'local' },
          { name: 'c', upstreamModel: 'c', weight: 2, upstream: 'local' },
        ],
        decisionRule: { minObservationsPerArm: 50 },
      });
      // Equal traffic to three arms configured 1:1:2, and c is much better.
      await traffic(store, projectId, 'r4', { a: 0.3, b: 0.3, c: 0.8 }, 900, 4);
      const s = await experimentStatus(store, projectId, 'srm');
      expect(s.decision.srm.mismatch).toBe(true);
      expect(s.decision.decision).toBe('keep_running');
      expect(s.decision.reasons[0]).toMatch(/sample ratio mismatch/);
    });
  });
}
