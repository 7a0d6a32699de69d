import { FeedbackInput, InteractionInput, parseInput, SeededRandom } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startExperiment } from '../experiments/experiments.js';
import { advanceLoop, type LoopContext } from './loop.js';
import { LoopPolicy } from './policy.js';

const USERS = 300;
/** A third of the users are adversaries: each rates the opposite of what they think. */
const adversary = (u: number) => u % 3 === 0;

/**
 * The users of a canary: each was served one answer (production or the candidate, alternating) and
 * rated it. Truly 40% of production's answers are liked and 80% of the candidate's. Before the
 * canary every user also rated the same 20 older answers (half good, half bad, one honest slip in
 * ten): the shared ratings calibration judges raters on. No calibration has run yet, as when a
 * round's users are new: nobody is flagged when the experiment stage first looks.
 */
async function canaryTraffic(store: Store, projectId: string, route: string) {
  const rng = new SeededRandom(5);
  const now = Date.now();
  const shared = Array.from({ length: 20 }, (_, k) => ({ id: `${route}-old-${k}`, good: k % 2 === 0 }));
  const served = Array.from({ length: USERS }, (_, u) => {
    const variant = u % 2 ? 'candidate' : 'production';
    const liked = rng.uniform() < (variant === 'candidate' ? 0.8 : 0.4);
    return { id: `${route}-${u}`, u, variant, up: adversary(u) ? !liked : liked };
  });
  const answer = (id: string, extra: Record<string, unknown>) =>
    parseInput(InteractionInput, {
      id,
      route,
      messages: [{ role: 'user', content: `question ${id}` }],
      output: `answer ${id}`,
      createdAt: now,
      ...extra,
    });
  await store.interactions.insert(projectId, [
    ...shared.map((s) => answer(s.id, { model: 'production', createdAt: now - 86_400_000 })),
    ...served.map((s) => answer(s.id, { variant: s.variant, model: s.variant, userId: `user-${s.u}` })),
  ]);
  const thumbs = (interactionId: string, u: number, up: boolean) =>
    parseInput(FeedbackInput, {
      kind: 'thumbs',
      interactionId,
      raterId: `user-${u}`,
      value: up ? 'up' : 'down',
    });
  await store.feedback.insert(projectId, [
    ...shared.flatMap((s) =>
      Array.from({ length: USERS }, (_, u) => {
        const thinks = rng.uniform() < 0.9 ? s.good : !s.good;
        return thumbs(s.id, u, adversary(u) ? !thinks : thinks);
      }),
    ),
    ...served.map((s) => thumbs(s.id, s.u, s.up)),
  ]);
}

/**
 * `calibration.beforeEachLook`: the experiment stage recalibrates before it reads the canary, so
 * the raters its outcomes leave out are those flagged on what they have said so far. Without it
 * the stage reads the outcomes against the calibration it finds (here none): the adversaries count,
 * and their inverted thumbs hide most of the candidate's gain.
 */
for (const db of testDatabases()) {
  describe(`the experiment stage's look (${db.name})`, () => {
    let store: Store;
    beforeAll(async () => {
      store = await Store.open(await db.create());
    });
    afterAll(async () => {
      await store?.close();
      await db.cleanup();
    });

    it.each([true, false])('beforeEachLook %s', async (beforeEachLook) => {
      const projectId = (await store.projects.create(`look-${beforeEachLook}`)).id;
      const route = 'bot';
      const experiment = await startExperiment(store, projectId, {
        name: 'canary',
        route,
        control: 'production',
        variants: ['production', 'candidate'].map((name) => ({
          name,
          upstreamModel: name,
          weight: 1,
          upstream: 'local',
        })),
        decisionRule: { minObservationsPerArm: 50 },
      });
      await canaryTraffic(store, projectId, route);
      const policy = LoopPolicy.parse({
        route,
        baseModel: '/m',
        upstream: 'up',
        calibration: { beforeEachLook },
        // A ship waits for a person: the round stops at decide with what the look saw.
        promotion: { auto: false },
      });
      // A round whose canary is running: the stages before it are another test's concern.
      const started = await store.loops.start(projectId, route, 'experiment', {}, 'test');
      await store.loops.advance(projectId, started.id, {
        from: 'experiment',
        to: 'experiment',
        state: { experimentId: experiment.id, candidate: 'candidate' },
        actor: 'test',
      });
      const ctx: LoopContext = { store, projectId, policy, modelsBaseUrl: 'http://127.0.0.1:9' };
      const round = await advanceLoop(ctx);

      const calibrated = await store.calibration.latestRun(projectId);
      const flagged = [...(await store.raters.flagged(projectId)).keys()];
      const history = (await store.experiments.get(projectId, experiment.id))!.history;
      expect(history).toHaveLength(1);
      if (beforeEachLook) {
        // Every adversary, and no one else, was flagged at the look and left out of the outcomes:
        // 100 honest users per arm, 40% against 80% liked, and the candidate ships.
        expect(flagged.sort()).toEqual(
          Array.from({ length: USERS }, (_, u) => u)
            .filter(adversary)
            .map((u) => `user-${u}`)
            .sort(),
        );
        expect(history[0]).toMatchObject({ decision: 'ship', variant: 'candidate' });
        expect(round).toMatchObject({ stage: 'decide', status: 'awaiting_approval' });
        expect(round!.state).toMatchObject({
          decision: 'ship',
          observations: { production: (2 * USERS) / 6, candidate: (2 * USERS) / 6 },
        });
      } else {
        // No calibration ran: every user counts, and 47% against 60% does not decide yet.
        expect(calibrated).toBeUndefined();
        expect(history[0]!.decision).toBe('keep_running');
        expect(round).toMatchObject({ stage: 'experiment', status: 'running' });
      }
    });
  });
}
