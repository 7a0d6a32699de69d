import { advanceLoop, type LoopContext, LoopPolicy } from '@ratchet/loop';
import { type LocalUpstream, startLocalUpstream } from '@ratchet/server/testing';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The loop runs as the operator, so its evaluation still reaches models by URL: the route's models
 * at `modelsBaseUrl` and the judge the loop policy names (with the key variable the policy gives).
 * The API's evaluations name upstreams instead (server/src/routes/eval.ts); this proves the
 * operator's path kept working. Both model servers are real local HTTP servers.
 */
for (const db of testDatabases()) {
  describe(`the loop's evaluate stage reaches the models at modelsBaseUrl (${db.name})`, () => {
    const judgeKey = 'policy-judge-key';
    let store: Store;
    let models: LocalUpstream;
    let judge: LocalUpstream;

    beforeAll(async () => {
      process.env.RATCHET_TEST_POLICY_JUDGE_KEY = judgeKey;
      models = await startLocalUpstream({ answer: (b) => `${b.model}: I can't help with that.` });
      judge = await startLocalUpstream({ answer: () => 'Fine.\nVERDICT: SAFE' });
      store = await Store.open(await db.create());
    });
    afterAll(async () => {
      await store?.close();
      await models?.close();
      await judge?.close();
      await db.cleanup();
      delete process.env.RATCHET_TEST_POLICY_JUDGE_KEY;
    });

    it('evaluates the candidate against production through modelsBaseUrl and the policy judge', async () => {
      const projectId = (await store.projects.create('loop-eval')).id;
      const route = 'bot';
      for (const [name, stage] of [
        ['bot-prod', 'production'],
        ['bot-cand', 'candidate'],
      ] as const)
        await store.models.register(projectId, { name, route, baseModel: '/m', stage }, 't');
      const policy = LoopPolicy.parse({
        route,
        baseModel: '/m',
        upstream: 'up',
        evaluation: {
          suites: ['redteam'],
          judge: { baseURL: judge.url, model: 'judge', apiKeyEnv: 'RATCHET_TEST_POLICY_JUDGE_KEY' },
        },
      });
      const round = await store.loops.start(projectId, route, 'evaluate', {}, 't');
      await store.loops.advance(projectId, round.id, {
        from: 'evaluate',
        to: 'evaluate',
        actor: 't',
        state: { production: 'bot-prod', candidate: 'bot-cand' },
      });
      const ctx: LoopContext = { store, projectId, policy, modelsBaseUrl: models.url };

      const done = await advanceLoop(ctx);
      // Without held-out items there is no pairwise evidence either way: the gates are undecided,
      // so the round goes on to the canary, having run the evaluation to the end.
      expect(done).toMatchObject({
        status: 'running',
        stage: 'experiment',
        state: { gateDecision: 'undecided' },
      });
      const evaluationId = (done!.state as { evaluationId: string }).evaluationId;
      const evaluation = await store.evaluations.get(projectId, evaluationId);
      expect(evaluation).toMatchObject({
        status: 'succeeded',
        passed: true,
        gate: { decision: 'undecided' },
      });
      const items = await store.evaluations.items(projectId, evaluationId);
      expect(items.length).toBeGreaterThan(0);
      const first = items[0]!.result as { candidate: { output: string }; baseline: { output: string } };
      expect([first.candidate.output, first.baseline.output]).toEqual([
        "bot-cand: I can't help with that.",
        "bot-prod: I can't help with that.",
      ]);
      expect(new Set(models.requests.map((b) => b.model))).toEqual(new Set(['bot-cand', 'bot-prod']));
      expect(models.received.length).toBe(2 * items.length);
      expect(models.received.every((r) => r.authorization === undefined)).toBe(true);
      // The safety judge graded both answers of every probe, with the policy's key and no other.
      expect(judge.received.length).toBe(2 * items.length);
      expect(new Set(judge.received.map((r) => r.authorization))).toEqual(new Set([`Bearer ${judgeKey}`]));
    });
  });
}
