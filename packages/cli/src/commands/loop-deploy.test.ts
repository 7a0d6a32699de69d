import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vllmDouble } from '@ratchet/loop/testing';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLoopPass } from './loop.js';

/**
 * `ratchet loop run` serves a round's models where the policy's `deploy` says: here a vLLM with
 * runtime LoRA loading, as a TEST DOUBLE of vLLM's documented API (vLLM needs a GPU; this machine
 * has none). The evaluate stage loads the candidate's adapter into it and evaluates through it,
 * with no --models-url and no worker.
 */
for (const db of testDatabases()) {
  describe(`a loop pass with deploy target vllm, against a vLLM TEST DOUBLE (${db.name})`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'ratchet-loop-deploy-'));
    const shared = join(dir, 'shared');
    const vllm = vllmDouble({
      servedNames: ['bot-prod'],
      mounts: { '/adapters': shared },
      runtimeLora: true,
    });
    let store: Store;
    let url = '';
    beforeAll(async () => {
      url = await vllm.start();
      store = await Store.open(await db.create());
    });
    afterAll(async () => {
      await store?.close();
      await vllm.close();
      await db.cleanup();
    });

    it("loads the candidate's adapter into vLLM at the path vLLM sees and evaluates it there", async () => {
      const projectId = (await store.projects.create('loop-deploy')).id;
      const route = 'bot';
      const adapter = join(dir, 'runs/bot-cand');
      mkdirSync(adapter, { recursive: true });
      writeFileSync(join(adapter, 'adapter_config.json'), JSON.stringify({ task_type: 'CAUSAL_LM', r: 8 }));
      await store.models.register(
        projectId,
        { name: 'bot-prod', route, baseModel: '/m', stage: 'production' },
        't',
      );
      await store.models.register(
        projectId,
        { name: 'bot-cand', route, baseModel: '/m', adapterPath: adapter },
        't',
      );
      const policyFile = join(dir, 'loop.json');
      writeFileSync(
        policyFile,
        JSON.stringify({
          policies: [
            {
              route,
              baseModel: '/m',
              deploy: { target: 'vllm', baseURL: url, adapterDir: shared, serverAdapterDir: '/adapters' },
              rewardModel: { enabled: false },
              evaluation: { suites: ['redteam'] },
            },
          ],
        }),
      );
      const round = await store.loops.start(projectId, route, 'evaluate', {}, 't');
      await store.loops.advance(projectId, round.id, {
        from: 'evaluate',
        to: 'evaluate',
        actor: 't',
        state: { production: 'bot-prod', candidate: 'bot-cand' },
      });

      const log: string[] = [];
      await runLoopPass(store, projectId, { policy: policyFile }, (line) => log.push(line));

      expect(log[0]).toBe(`bot: models served by ${describeVllm(url, shared)}`);
      const loads = vllm.calls.filter((c) => c.path === '/v1/load_lora_adapter');
      expect(loads.map((c) => c.body)).toEqual([
        { lora_name: 'bot-cand', lora_path: expect.stringMatching(/^\/adapters\/bot-cand-[0-9a-f]{12}$/) },
      ]);
      const done = (await store.loops.list(projectId, { route }))[0]!;
      const evaluationId = (done.state as { evaluationId?: string }).evaluationId;
      expect(evaluationId, `round ${done.status} at ${done.stage}: ${done.error}`).toBeDefined();
      const items = await store.evaluations.items(projectId, evaluationId!);
      expect(items.length).toBeGreaterThan(0);
      // The double answers with the model's name: both arms were answered by vLLM.
      const first = items[0]!.result as { candidate: { output: string }; baseline: { output: string } };
      expect([first.candidate.output, first.baseline.output]).toEqual(['bot-cand', 'bot-prod']);
    });
  });
}

const describeVllm = (url: string, shared: string) =>
  `vLLM at ${url} with runtime LoRA loading (adapters copied into ${shared}, which vLLM reads as /adapters)`;
