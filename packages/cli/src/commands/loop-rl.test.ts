import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  composeAnswer,
  FeedbackInput,
  InteractionInput,
  parseInput,
  SeededRandom,
  samplePrompt,
} from '@ratchet/core';
import { advanceLoop, type LoopContext, LoopPolicy } from '@ratchet/loop';
import { tinyTestModel } from '@ratchet/loop/testing';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDemoDomain } from '../demo/traffic.js';

/**
 * Online RL as the loop's recipe: a round whose policy trains with `rl` trains the round's
 * reward model first and then the candidate with GRPO against it, for real (the tiny test model,
 * a few steps). No model server: evaluation is off and the canary only needs the registry.
 */
describe('a loop round trains its candidate with rl against the round reward model', () => {
  const db = sqliteTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-loop-rl-'));
  const domain = loadDemoDomain();
  let store: Store;
  let base: string;

  beforeAll(async () => {
    base = await tinyTestModel();
    store = await Store.open(await db.create());
  }, 600_000);
  afterAll(async () => {
    await store?.close();
    await db.cleanup();
  });

  /** A project whose production model serves `support-bot`, with rated answers: `pairs` prompts with a liked and (if `disliked`) a disliked answer. */
  async function project(name: string, pairs: number, disliked: boolean) {
    const projectId = (await store.projects.create(name)).id;
    await store.models.register(
      projectId,
      { name: 'tiny-base', route: 'support-bot', baseModel: base, stage: 'production' },
      'test',
    );
    const rng = new SeededRandom(5);
    const interactions = [];
    const events = [];
    for (let i = 0; i < pairs; i++) {
      const prompt = samplePrompt(domain, rng);
      const kinds = disliked ? (['good', 'bad'] as const) : (['good'] as const);
      for (const kind of kinds) {
        const good = kind === 'good';
        const axes = { correct: good, polite: good, concise: good, safe: true };
        const id = `${kind}-${i}`;
        interactions.push(
          parseInput(InteractionInput, {
            id,
            model: 'tiny-base',
            route: 'support-bot',
            messages: [{ role: 'user', content: prompt.text }],
            output: composeAnswer(domain, rng, prompt.intent, axes, prompt.slots),
          }),
        );
        events.push(
          parseInput(FeedbackInput, {
            kind: 'thumbs',
            interactionId: id,
            raterId: `user-${i % 5}`,
            value: good ? 'up' : 'down',
          }),
        );
      }
    }
    await store.interactions.insert(projectId, interactions);
    await store.feedback.insert(projectId, events);
    return projectId;
  }

  const policy = LoopPolicy.parse({
    route: 'support-bot',
    baseModel: 'replaced-by-the-tiny-model',
    dataset: { method: 'kto', options: { requireConfidentSign: false }, curation: false },
    training: {
      method: 'rl',
      hyperparameters: { maxSteps: 2, batchSize: 4, learningRate: 1e-3 },
      methodConfig: { num_generations: 4, max_completion_length: 16 },
    },
    rewardModel: {
      enabled: true,
      options: { minMargin: 0.05 },
      hyperparameters: { maxSteps: 2, batchSize: 4 },
    },
    evaluation: { enabled: false },
  });
  const context = (projectId: string, log: string[]): LoopContext => ({
    store,
    projectId,
    policy: { ...policy, baseModel: base },
    modelsBaseUrl: 'http://127.0.0.1:9/v1',
    dataDir,
    log: (line) => log.push(line),
  });

  it('trains the reward model, then the rl candidate with it as the reward, and canaries the candidate', async () => {
    const projectId = await project('rl', 12, true);
    const log: string[] = [];
    const round = await advanceLoop(context(projectId, log), { start: true });
    expect(round, log.join('\n')).toMatchObject({
      status: 'running',
      stage: 'experiment',
      state: { candidate: 'support-bot-r1', rewardModel: 'support-bot-reward-r1' },
    });
    const runs = await store.runs.list(projectId);
    const rl = runs.find((r) => r.request.modelName === 'support-bot-r1')!;
    expect(rl).toMatchObject({
      status: 'succeeded',
      request: { method: 'rl', rewardModel: 'support-bot-reward-r1' },
    });
    const candidate = await store.models.get(projectId, 'support-bot-r1');
    expect(candidate).toMatchObject({ stage: 'canary', route: 'support-bot' });
    expect(existsSync(join(candidate!.adapterPath!, 'adapter_config.json'))).toBe(true);
    expect(log.join('\n')).toMatch(/trained candidate support-bot-r1 \(rl\)/);
  }, 900_000);

  it('fails the round at train, saying why, when the ratings give no reward model to optimize', async () => {
    // Every answer liked: no preference pair, so no reward model this round.
    const projectId = await project('rl-no-pairs', 6, false);
    const log: string[] = [];
    const round = await advanceLoop(context(projectId, log), { start: true });
    expect(round).toMatchObject({ status: 'failed', stage: 'done' });
    expect(round!.error).toMatch(
      /^train: training method rl needs the round's reward model, and this round has none/,
    );
    expect(await store.runs.list(projectId)).toEqual([]);
  }, 300_000);
});
