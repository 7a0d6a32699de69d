import {
  decideExperiment,
  FeedbackInput,
  InteractionInput,
  parseInput,
  SeededRandom,
  userMeanMetric,
  userMetricSums,
} from '@ratchet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

/**
 * A planted canary like the realistic demo's: people regenerate production's answers twice as
 * often as the candidate's, and the few thumbs there are come a third from adversaries, who
 * report the opposite of what they think.
 */
interface PlantedUser {
  id: string;
  variant: 'production' | 'candidate';
  /** Per answer: regenerated? copied? and the user's thumb, if any (1 up, 0 down). */
  answers: { regenerated: boolean; copied: boolean; thumb: number | null }[];
  /** Answers before the experiment (no variant): regenerated? */
  before: boolean[];
}

function plantCanary(seed: number, usersPerArm: number): PlantedUser[] {
  const rng = new SeededRandom(seed);
  const arms = {
    production: { liked: 0.42, regenerate: 0.12 },
    candidate: { liked: 0.55, regenerate: 0.06 },
  } as const;
  const users: PlantedUser[] = [];
  for (const variant of ['production', 'candidate'] as const) {
    for (let u = 0; u < usersPerArm; u++) {
      const rates = rng.bernoulli(0.3);
      const adversary = rates && rng.bernoulli(1 / 3);
      const answers = Array.from({ length: 1 + rng.int(3) }, () => {
        const liked = rng.bernoulli(arms[variant].liked);
        const rated = rates && rng.bernoulli(0.4);
        const thumb = rated ? (liked !== adversary ? 1 : 0) : null;
        // As the simulator's people do: a liked answer is copied now and then, and now and then
        // one is copied and regenerated both (it counts as dissatisfied in the net outcome).
        const regenerated = !rated && rng.bernoulli(arms[variant].regenerate);
        const copied = !rated && rng.bernoulli(liked ? 0.1 : 0.02);
        return { regenerated, copied, thumb };
      });
      const before = rng.bernoulli(0.3) ? [rng.bernoulli(0.09), rng.bernoulli(0.09)] : [];
      users.push({ id: `${variant}-${u}`, variant, answers, before });
    }
  }
  return users;
}

for (const target of testDatabases()) {
  describe(`experiment outcomes from implicit signals on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    const users = plantCanary(19, 900);
    const start = Date.now() - 60_000;

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('implicit')).id;
      const call = (id: string, userId: string, at: number, variant?: string) =>
        parseInput(InteractionInput, {
          id,
          route: 'support',
          ...(variant ? { variant } : {}),
          model: 'm',
          userId,
          messages: [{ role: 'user', content: 'hi' }],
          output: { role: 'assistant', content: 'hello' },
          createdAt: at,
        });
      const calls = users.flatMap((u) => [
        ...u.answers.map((_, k) => call(`${u.id}-x${k}`, u.id, start + 1000, u.variant)),
        ...u.before.map((_, k) => call(`${u.id}-p${k}`, u.id, start - 5000)),
      ]);
      const regenerated = (interactionId: string, extra: object = {}, signal = 'regenerated') =>
        parseInput(FeedbackInput, {
          kind: 'implicit',
          signal,
          source: 'implicit',
          interactionId,
          ...extra,
        });
      const events = users.flatMap((u) => [
        ...u.answers.flatMap((a, k) => {
          const id = `${u.id}-x${k}`;
          return [
            ...(a.regenerated ? [regenerated(id, { raterId: `implicit:${u.id}` })] : []),
            ...(a.copied ? [regenerated(id, { raterId: `implicit:${u.id}` }, 'copied')] : []),
            ...(a.thumb === null
              ? []
              : [
                  parseInput(FeedbackInput, {
                    kind: 'thumbs',
                    interactionId: id,
                    value: a.thumb ? 'up' : 'down',
                  }),
                ]),
          ];
        }),
        ...u.before.flatMap((r, k) =>
          r ? [regenerated(`${u.id}-p${k}`, { raterId: `implicit:${u.id}` })] : [],
        ),
      ]);
      for (let i = 0; i < calls.length; i += 500)
        await store.interactions.insert(projectId, calls.slice(i, i + 500));
      for (let i = 0; i < events.length; i += 500)
        await store.feedback.insert(projectId, events.slice(i, i + 500));
    }, 120_000);
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    const reference = (variant: string) => {
      const arm = users.filter((u) => u.variant === variant);
      return {
        regenerated: userMetricSums(arm.map((u) => u.answers.map((a) => (a.regenerated ? 1 : 0)))),
        copied: userMetricSums(arm.map((u) => u.answers.map((a) => (a.copied ? 1 : 0)))),
        // +1 regenerated (copied or not), -1 copied only, 0 neither.
        net: userMetricSums(arm.map((u) => u.answers.map((a) => (a.regenerated ? 1 : a.copied ? -1 : 0)))),
        thumbs: userMetricSums(arm.map((u) => u.answers.flatMap((a) => (a.thumb === null ? [] : [a.thumb])))),
      };
    };

    it("computes each user's regenerate rate over the answers served to them, every user a unit", async () => {
      const totals = await store.experiments.variantTotals(projectId, 'support', start);
      for (const variant of ['production', 'candidate']) {
        const t = totals.find((x) => x.variant === variant)!;
        const ref = reference(variant);
        expect(t.implicit.regenerated.users).toBe(900);
        expect(t.implicit.regenerated.users).toBe(t.users);
        expect(t.implicit.regenerated.events).toBe(ref.regenerated.events);
        expect(t.implicit.regenerated.sum).toBeCloseTo(ref.regenerated.sum, 9);
        expect(t.implicit.regenerated.sumOfSquares).toBeCloseTo(ref.regenerated.sumOfSquares, 9);
        const signalled = users
          .filter((u) => u.variant === variant)
          .reduce((s, u) => s + u.answers.filter((a) => a.regenerated).length, 0);
        expect(t.implicit.regenerated.signalled).toBe(signalled);
        expect(t.implicit.copied.users).toBe(900);
        expect(t.implicit.copied.sum).toBeCloseTo(ref.copied.sum, 9);
        // The thumbs are the same as before: only the users who rated, each once.
        expect(t.thumbs.users).toBe(ref.thumbs.users);
        expect(t.thumbs.sum).toBeCloseTo(ref.thumbs.sum, 9);
      }
    });

    it("computes each user's net dissatisfaction: +1 regenerated (copied too or not), -1 copied only, 0 neither", async () => {
      const totals = await store.experiments.variantTotals(projectId, 'support', start);
      let both = 0;
      for (const variant of ['production', 'candidate']) {
        const t = totals.find((x) => x.variant === variant)!.implicitNet.net_dissatisfaction;
        const ref = reference(variant).net;
        const answers = users.filter((u) => u.variant === variant).flatMap((u) => u.answers);
        both += answers.filter((a) => a.regenerated && a.copied).length;
        expect(t.users).toBe(900);
        expect(t.events).toBe(ref.events);
        expect(t.sum).toBeCloseTo(ref.sum, 9);
        expect(t.sumOfSquares).toBeCloseTo(ref.sumOfSquares, 9);
        expect(t.signalled).toBe(answers.filter((a) => a.regenerated || a.copied).length);
      }
      // The planted data has answers copied and regenerated both, so precedence was exercised.
      expect(both).toBeGreaterThan(0);
    });

    it('decides the planted canary on net dissatisfaction, ship the arm people were less dissatisfied with', async () => {
      const totals = await store.experiments.variantTotals(projectId, 'support', start);
      const arms = ['production', 'candidate'].map((name) => {
        const t = totals.find((x) => x.variant === name)!;
        return {
          name,
          weight: 1,
          users: t.users,
          metrics: {
            net_dissatisfaction: userMeanMetric(t.implicitNet.net_dissatisfaction),
          },
        };
      });
      const data = { control: 'production', variants: arms };
      const net = decideExperiment(data, { primaryMetric: 'net_dissatisfaction', expectedEffect: 0.04 });
      expect(net.decision).toBe('ship');
      expect(net.comparisons[0]).toMatchObject({ higherIsBetter: false, verdict: 'better' });
    });

    it('joins the pre-period regenerate rate of the same users (CUPED works the same way)', async () => {
      const totals = await store.experiments.variantTotals(projectId, 'support', start, undefined, {
        prePeriodMs: 10_000,
      });
      for (const variant of ['production', 'candidate']) {
        const pre = totals.find((x) => x.variant === variant)!.prePeriod.implicit.regenerated;
        const covered = users.filter((u) => u.variant === variant && u.before.length > 0);
        const x = covered.map((u) => u.before.filter(Boolean).length / u.before.length);
        const y = covered.map((u) => u.answers.filter((a) => a.regenerated).length / u.answers.length);
        expect(pre.users).toBe(covered.length);
        expect(pre.sum).toBeCloseTo(
          x.reduce((a, b) => a + b, 0),
          9,
        );
        expect(pre.crossSum).toBeCloseTo(
          x.reduce((a, xi, i) => a + xi * y[i]!, 0),
          9,
        );
        expect(pre.outcomeSum).toBeCloseTo(
          y.reduce((a, b) => a + b, 0),
          9,
        );
      }
    });

    it('lets the regenerate rate decide the planted canary where the diluted thumbs cannot', async () => {
      const totals = await store.experiments.variantTotals(projectId, 'support', start);
      const arms = ['production', 'candidate'].map((name) => {
        const t = totals.find((x) => x.variant === name)!;
        return {
          name,
          weight: 1,
          users: t.users,
          metrics: {
            regenerate_rate: userMeanMetric(t.implicit.regenerated),
            thumbs_up_rate: userMeanMetric(t.thumbs),
          },
        };
      });
      const data = { control: 'production', variants: arms };
      const implicit = decideExperiment(data, { primaryMetric: 'regenerate_rate', expectedEffect: 0.03 });
      expect(implicit.decision).toBe('ship');
      expect(implicit.variant).toBe('candidate');
      expect(implicit.comparisons[0]).toMatchObject({ higherIsBetter: false, verdict: 'better' });
      const thumbs = decideExperiment(data, { primaryMetric: 'thumbs_up_rate', expectedEffect: 0.05 });
      expect(thumbs.decision).toBe('keep_running');
      // The thumbs do point the right way, at a fraction of the true difference (0.13 liked).
      expect(thumbs.comparisons[0]!.difference).toBeLessThan(0.13);
    });

    it('counts an answer once however many signals it got, and only the users’ own', async () => {
      const [answer] = users.filter(
        (u) => u.variant === 'production' && u.answers.every((a) => !a.regenerated && !a.copied),
      );
      const id = `${answer!.id}-x0`;
      const before = (await store.experiments.variantTotals(projectId, 'support', start)).find(
        (t) => t.variant === 'production',
      )!.implicit.regenerated;
      const beforeCopied = (await store.experiments.variantTotals(projectId, 'support', start)).find(
        (t) => t.variant === 'production',
      )!.implicit.copied.signalled;
      await store.feedback.insert(projectId, [
        // A judge's "regenerated" is not a person's action.
        parseInput(FeedbackInput, {
          kind: 'implicit',
          signal: 'regenerated',
          source: 'judge',
          raterId: 'judge-1',
          interactionId: id,
        }),
      ]);
      const judged = (await store.experiments.variantTotals(projectId, 'support', start)).find(
        (t) => t.variant === 'production',
      )!.implicit.regenerated;
      expect(judged.signalled).toBe(before.signalled);
      // The user regenerates twice, then copies: the copy does not hide the regeneration (the
      // events are read, not the latest per rater and kind), and two count as one answer.
      const own = (signal: string, n: number) =>
        parseInput(FeedbackInput, {
          kind: 'implicit',
          signal,
          source: 'implicit',
          raterId: `implicit:${answer!.id}`,
          interactionId: id,
          createdAt: start + 2000 + n,
        });
      await store.feedback.insert(projectId, [
        own('regenerated', 1),
        own('regenerated', 2),
        own('copied', 3),
      ]);
      const after = (await store.experiments.variantTotals(projectId, 'support', start)).find(
        (t) => t.variant === 'production',
      )!.implicit;
      expect(after.regenerated.signalled).toBe(before.signalled + 1);
      expect(after.regenerated.sum - before.sum).toBeCloseTo(1 / answer!.answers.length, 9);
      expect(after.copied.signalled).toBe(beforeCopied + 1);
    });
  });
}
