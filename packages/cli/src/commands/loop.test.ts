import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  composeAnswer,
  createPopulation,
  FeedbackInput,
  InteractionInput,
  msprtHorizonVariance,
  parseInput,
  SeededRandom,
  samplePrompt,
} from '@ratchet/core';
import { advanceLoop, experimentStatus, LocalModelServer, LoopPolicy } from '@ratchet/loop';
import { tinyTestModel } from '@ratchet/loop/testing';
import { startTestServer, type TestServer } from '@ratchet/server/testing';
import type { LoopRound, Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDemoDomain, simulateTraffic } from '../demo/traffic.js';
import { freePort } from '../test-utils/process.js';

class SimulatedCrash extends Error {}

/**
 * The store as a loop process that dies once at every move of a round: after a stage's effects
 * (datasets built, models trained and registered, the experiment started...) and before the move
 * is recorded. Moves within a stage count too (the reward model, kept in the round as soon as it
 * is registered, before the candidate trains).
 */
function crashingOnceAtEveryMove(store: Store): { store: Store; crashes: string[]; restart(): void } {
  const crashes: string[] = [];
  // A dead process records nothing more (not even the round's failure) until it is restarted.
  let dead = false;
  const loops = new Proxy(store.loops, {
    get(target, prop) {
      if (prop !== 'advance') return Reflect.get(target, prop, target);
      return async (...args: Parameters<Store['loops']['advance']>): Promise<LoopRound> => {
        const move = `${args[2].from}->${args[2].to}`;
        if (dead) throw new SimulatedCrash(move);
        if (!crashes.includes(move)) {
          crashes.push(move);
          dead = true;
          throw new SimulatedCrash(move);
        }
        return target.advance(...args);
      };
    },
  });
  return {
    store: new Proxy(store, { get: (t, p) => (p === 'loops' ? loops : Reflect.get(t, p, t)) }),
    crashes,
    restart: () => {
      dead = false;
    },
  };
}

/** Runs the loop, starting it again after every simulated crash, as a restarted process would. */
async function advanceThroughCrashes(
  crashing: { restart(): void },
  ...args: Parameters<typeof advanceLoop>
): Promise<LoopRound | undefined> {
  for (;;) {
    try {
      return await advanceLoop(...args);
    } catch (err) {
      if (!(err instanceof SimulatedCrash)) throw err;
      crashing.restart();
    }
  }
}

/**
 * One round of the loop for real: the tiny model served by the worker behind the gateway,
 * simulated users chatting and rating, then calibrate, build, train, canary with an experiment on
 * live traffic, and a decision that leaves exactly one model on the route.
 */
describe('the loop runs a round end to end', () => {
  const db = sqliteTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-loop-'));
  const domain = loadDemoDomain();
  // Everyone rates most answers with a thumb, so a small test reaches the experiment's sample
  // size; the rest stay unrated for the reward model to label.
  const population = createPopulation({
    size: 200,
    seed: 3,
    raterShare: 1,
    rateProbability: 0.75,
    adversarialShare: 0,
    habitShares: { thumbs: 1 },
  });
  let t: TestServer;
  let models: LocalModelServer;
  let base: string;
  const log: string[] = [];

  beforeAll(async () => {
    base = await tinyTestModel();
    const port = await freePort();
    models = new LocalModelServer({ baseModel: base, baseName: 'tiny-base', port });
    await models.ensure([]);
    t = await startTestServer(await db.create(), {
      config: { dataDir },
      gateway: { upstreams: { worker: { baseURL: models.baseUrl } } },
    });
    const prod = await t.store.models.register(
      t.projectId,
      { name: 'tiny-base', route: 'support-bot', baseModel: base, stage: 'production' },
      'test',
    );
    await t.store.routes.put(t.projectId, 'support-bot', [
      { name: 'production', upstream: 'worker', model: prod.name, weight: 1, modelId: prod.id },
    ]);
    // The gateway reloads database routes every 2 s.
    await new Promise((r) => setTimeout(r, 2500));
  }, 600_000);
  afterAll(async () => {
    await t?.close();
    await models?.stop();
    await db.cleanup();
  });

  const chat = (chats: number, seed: number) =>
    simulateTraffic({
      baseUrl: t.url,
      apiKey: t.secretKey,
      route: 'support-bot',
      domain,
      population,
      chats,
      seed,
      concurrency: 2,
      maxTokens: 48,
    });

  it('calibrates, builds, trains a candidate, canaries it, decides, and records every step, through a crash at every stage boundary', async () => {
    const before = await chat(120, 1);
    expect(before.errors, before.firstError).toBe(0);
    // The test-sized model's answers are nearly all bad; a few good ones (as a stronger model
    // behind the same route would give) leave the reward model preference pairs to learn from.
    const rng = new SeededRandom(11);
    const good = Array.from({ length: 24 }, (_, i) => {
      const prompt = samplePrompt(domain, rng);
      const all = { correct: true, polite: true, concise: true, safe: true };
      return {
        id: `good-${i}`,
        input: parseInput(InteractionInput, {
          id: `good-${i}`,
          model: 'tiny-base',
          route: 'support-bot',
          messages: [{ role: 'user', content: prompt.text }],
          output: composeAnswer(domain, rng, prompt.intent, all, prompt.slots),
        }),
      };
    });
    await t.store.interactions.insert(
      t.projectId,
      good.map((g) => g.input),
    );
    await t.store.feedback.insert(
      t.projectId,
      good.map((g, i) =>
        parseInput(FeedbackInput, { kind: 'thumbs', interactionId: g.id, raterId: `fan-${i}`, value: 'up' }),
      ),
    );
    const policy = LoopPolicy.parse({
      route: 'support-bot',
      baseModel: base,
      trigger: { minNewFeedback: 50 },
      // One thumb per answer: its interval always crosses 0, so do not require a confident sign.
      dataset: {
        method: 'kto',
        options: { requireConfidentSign: false },
        groupSimilarPrompts: 0.6,
        // The planted good answers are far longer than the test model's: not length outliers here.
        curation: { length: { outliers: false } },
      },
      training: { method: 'kto', hyperparameters: { maxSteps: 4, batchSize: 8 } },
      // Single thumbs shrink toward the mean: any up-vs-down pair is a preference.
      rewardModel: {
        enabled: true,
        options: { minMargin: 0.05 },
        hyperparameters: { maxSteps: 4, batchSize: 8 },
      },
      // No precision to reach: the tiny reward model labels every unrated answer its held-out
      // answers lean on, to see the labels land (with their precision recorded).
      aiFeedback: { enabled: true, targetPrecision: 0 },
      evaluation: { enabled: false },
      canary: { share: 0.5 },
      experiment: { minObservationsPerArm: 10, maxObservationsPerArm: 30 },
    });
    const crashing = crashingOnceAtEveryMove(t.store);
    const ctx = {
      store: crashing.store,
      projectId: t.projectId,
      policy,
      modelsBaseUrl: models.baseUrl,
      serve: (m: Parameters<LocalModelServer['ensure']>[0]) => models.ensure(m),
      dataDir,
      log: (line: string) => log.push(line),
    };

    // Up to the canary; then it waits for users.
    const waiting = await advanceThroughCrashes(crashing, ctx, { start: true });
    expect(waiting, log.join('\n')).toMatchObject({ stage: 'experiment', status: 'running', round: 1 });
    const candidate = await t.store.models.get(t.projectId, 'support-bot-r1');
    expect(candidate).toMatchObject({ stage: 'canary', route: 'support-bot' });
    expect(candidate!.adapterPath).toBeTruthy();

    // The round's reward model labeled unrated answers as a judge, with its confidence.
    const labels = await t.store.db
      .selectFrom('feedback')
      .select(['rater_id', 'source', 'metadata'])
      .where('project_id', '=', t.projectId)
      .where('source', '=', 'judge')
      .execute();
    expect(labels.length, log.join('\n')).toBeGreaterThan(0);
    expect(labels[0]!.rater_id).toBe('judge:support-bot-reward-r1');
    expect(JSON.parse(labels[0]!.metadata as string)).toMatchObject({
      model: 'support-bot-reward-r1',
      pLiked: expect.any(Number),
    });
    // The round records the labels' precision on held-out human ratings and the share labelled:
    // every label its reward model wrote, although the crash in the label stage split the writes
    // over two attempts.
    expect(waiting!.state).toMatchObject({
      aiLabels: labels.filter((l) => l.rater_id === 'judge:support-bot-reward-r1').length,
      aiLabelPrecision: expect.any(Number),
      aiLabelShare: expect.any(Number),
    });

    // The canary was sized from power: no evaluation here, so no offline estimate; the mixture
    // and the horizon are the metric's default minimum effect (5 points of thumbs-up rate), and
    // the horizon is written into the experiment's rule, where each look checks it.
    expect(waiting!.state).not.toHaveProperty('offlineAdvantage');
    expect(waiting!.state).toMatchObject({
      canaryPlan: { expectedEffect: 0.05, horizonEffect: 0.05, power: 0.8 },
    });
    const plan = (waiting!.state as { canaryPlan: { horizonStandardError: number; metricSd: number } })
      .canaryPlan;
    expect(plan.horizonStandardError).toBeCloseTo(
      Math.sqrt(msprtHorizonVariance({ effect: 0.05, tau: 0.05 })),
      9,
    );
    // Production's users' thumbs before the canary: their per-user spread, not the bound the
    // plan falls back on without data (half the range, 0.5).
    expect(plan.metricSd).toBeGreaterThan(0);
    expect(plan.metricSd).not.toBe(0.5);
    const [started] = await t.store.experiments.list(t.projectId, { route: 'support-bot' });
    expect(started!.decisionRule).toMatchObject({
      expectedEffect: 0.05,
      horizon: { effect: 0.05, power: 0.8 },
      maxObservationsPerArm: 30,
    });

    // Live traffic splits between production and the candidate, sticky per user (once the
    // gateway has reloaded its routes).
    await new Promise((r) => setTimeout(r, 2500));
    const during = await chat(160, 2);
    expect(Object.keys(during.variants).sort()).toEqual(['candidate', 'production']);

    const ended = await advanceThroughCrashes(crashing, ctx);
    expect(ended, log.join('\n')).toMatchObject({ stage: 'done' });
    // The experiment's outcomes: the users' thumbs (the primary metric, what the round counted)
    // and their implicit signals, whose units are every user served (0 when they did nothing).
    const looked = await experimentStatus(t.store, t.projectId, 'support-bot-r1');
    for (const v of looked.variants) {
      expect(v.metrics.regenerate_rate).toMatchObject({ users: v.users, higherIsBetter: false });
      expect(v.metrics.thumbs_up_rate.users).toBe(v.thumbsUpRate.users);
    }
    expect(ended!.state).toMatchObject({
      observations: Object.fromEntries(looked.variants.map((v) => [v.name, v.thumbsUpRate.users])),
    });
    expect(['succeeded', 'rolled_back']).toContain(ended!.status);
    const route = await t.store.routes.get(t.projectId, 'support-bot');
    const after = await t.store.models.get(t.projectId, 'support-bot-r1');
    if (ended!.status === 'succeeded') {
      expect(after!.stage).toBe('production');
      // The promotion opened a watch: the replaced model keeps its 5% holdback.
      expect(route!.variants.map((v) => `${v.model}@${v.weight}`)).toEqual([
        'support-bot-r1@0.95',
        'tiny-base@0.05',
      ]);
    } else {
      expect(after!.stage).toBe('archived');
      expect(route!.variants.map((v) => v.model)).toEqual(['tiny-base']);
    }

    const audit = await t.store.db
      .selectFrom('audit_log')
      .select('action')
      .where('subject_id', '=', ended!.id)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    expect(audit.map((a) => a.action)).toEqual([
      'loop.round.start',
      'loop.stage.calibrate',
      'loop.stage.build',
      'loop.progress.train',
      'loop.stage.train',
      'loop.stage.label',
      'loop.stage.evaluate',
      'loop.stage.canary',
      'loop.stage.experiment',
      `loop.round.${ended!.status}`,
    ]);
    // It crashed once at every move, including right after the reward model was registered...
    expect(crashing.crashes).toEqual([
      'calibrate->build',
      'build->train',
      'train->train',
      'train->label',
      'label->evaluate',
      'evaluate->canary',
      'canary->experiment',
      'experiment->decide',
      'decide->done',
    ]);
    // ...and every resumed stage found what its crashed attempt had made: one calibration, one
    // version of each dataset, one run per model, one experiment, no failed run.
    const count = async (table: 'calibration_runs' | 'datasets' | 'runs' | 'models' | 'experiments') =>
      (await t.store.db.selectFrom(table).select('id').where('project_id', '=', t.projectId).execute())
        .length;
    expect(await count('calibration_runs')).toBe(1);
    const datasets = await t.store.datasets.list(t.projectId);
    expect(datasets.map((d) => `${d.name}@${d.version}`).sort()).toEqual(
      ['support-bot-kto@1', 'support-bot-reward@1'].sort(),
    );
    const runs = await t.store.runs.list(t.projectId);
    expect(runs.map((r) => `${r.request.modelName}:${r.status}`).sort()).toEqual([
      'support-bot-r1:succeeded',
      'support-bot-reward-r1:succeeded',
    ]);
    expect(await count('models')).toBe(3);
    expect(await count('experiments')).toBe(1);

    // Nothing more to do until new feedback arrives.
    expect(await advanceLoop(ctx)).toBeUndefined();
  }, 900_000);
});
