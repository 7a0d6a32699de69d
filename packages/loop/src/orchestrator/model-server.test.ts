import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, tinyTestModel } from '../training/testing.js';
import { LocalModelServer, type ServedModel } from './model-server.js';

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const srv = createNetServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });

/**
 * A real LoRA adapter of the tiny model (random, non-zero weights, so it answers differently
 * from the base) and that adapter merged into a full model: what a round's training and
 * personalize stages hand to the model server, made in seconds instead of by training.
 */
function makeAdapterAndMerged(base: string, dir: string): { adapter: string; merged: string } {
  const script = `
import sys, torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
base, adapter, merged = sys.argv[1:4]
torch.manual_seed(0)
model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
    LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"))
model.save_pretrained(adapter)
model.merge_and_unload().save_pretrained(merged)
AutoTokenizer.from_pretrained(base).save_pretrained(merged)
`;
  const adapter = join(dir, 'adapter');
  const merged = join(dir, 'merged');
  execFileSync(join(repoRoot, '.venv/bin/python'), ['-c', script, base, adapter, merged], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  return { adapter, merged };
}

describe('LocalModelServer changes what it serves without stopping production (real worker, tiny model)', () => {
  let models: LocalModelServer;
  let client: OpenAI;
  let adapter: string;
  let merged: string;

  beforeAll(async () => {
    const base = await tinyTestModel();
    ({ adapter, merged } = makeAdapterAndMerged(base, mkdtempSync(join(tmpdir(), 'ratchet-serve-'))));
    models = new LocalModelServer({
      baseModel: base,
      baseName: 'tiny-base',
      port: await freePort(),
      env: { OMP_NUM_THREADS: '1' },
    });
    await models.ensure([{ name: 'support-prod', adapterPath: null }]);
    client = new OpenAI({ baseURL: models.baseUrl, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
  }, 600_000);
  afterAll(async () => {
    await models?.stop();
  });

  const ask = (model: string, max_tokens = 12) =>
    client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Where is my order A1042?' }],
      max_tokens,
      temperature: 0,
    });

  const workerPid = async () =>
    ((await (await fetch(models.baseUrl.replace(/\/v1$/, '/health'))).json()) as { pid: number }).pid;

  const servedNames = async () => (await client.models.list()).data.map((m) => m.id).sort();

  it('answers every production call while ensure() adds and removes an adapter, a merged model and a base alias', async () => {
    // Production traffic: three users calling the production model back to back the whole time,
    // and a long streamed answer started before the first change (a restart would cut it).
    const pid = await workerPid();
    let running = true;
    const outcomes = { ok: 0, failed: [] as string[] };
    const user = async () => {
      while (running) {
        try {
          const answer = await ask('support-prod');
          if (answer.model !== 'support-prod' || !answer.choices[0]?.message.content)
            throw new Error('bad answer');
          outcomes.ok++;
        } catch (err) {
          outcomes.failed.push(err instanceof Error ? err.message : String(err));
        }
      }
    };
    const stream = (async () => {
      const chunks = await client.chat.completions.create({
        model: 'support-prod',
        messages: [{ role: 'user', content: 'Hi' }],
        max_tokens: 400,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
        // @ts-expect-error vLLM's extension, which the worker shares: a long answer on purpose
        ignore_eos: true,
      });
      let tokens = 0;
      for await (const c of chunks) tokens = c.usage?.completion_tokens ?? tokens;
      return tokens;
    })();
    const users = [user(), user(), user()];

    const prod: ServedModel = { name: 'support-prod', adapterPath: null };
    const cand: ServedModel = { name: 'support-r1', adapterPath: adapter };
    const mergedModel: ServedModel = { name: 'support-r1-merged', adapterPath: merged };
    const answered: Record<string, string> = {};
    const steps: [ServedModel[], string[]][] = [
      [
        [prod, cand],
        ['support-prod', 'support-r1', 'tiny-base'],
      ],
      [
        [prod, cand, mergedModel],
        ['support-prod', 'support-r1', 'support-r1-merged', 'tiny-base'],
      ],
      [
        [prod, mergedModel],
        ['support-prod', 'support-r1-merged', 'tiny-base'],
      ],
      [[prod], ['support-prod', 'tiny-base']],
    ];
    for (const [want, names] of steps) {
      await models.ensure(want);
      expect(await servedNames()).toEqual(names.sort());
      for (const m of want) {
        const answer = await ask(m.name);
        expect(answer.model).toBe(m.name);
        answered[m.name] = answer.choices[0]!.message.content!;
      }
    }
    // The unloaded ones are refused by name; the adapter and the merged model answer alike (the
    // same weights) and unlike the base.
    await expect(ask('support-r1')).rejects.toMatchObject({ status: 404 });
    await expect(ask('support-r1-merged')).rejects.toMatchObject({ status: 404 });
    expect(answered['support-r1']).toBe(answered['support-r1-merged']);
    expect(answered['support-r1']).not.toBe(answered['support-prod']);

    running = false;
    await Promise.all(users);
    expect(await stream).toBe(400);
    expect(outcomes.failed).toEqual([]);
    expect(outcomes.ok).toBeGreaterThan(10);
    expect(await workerPid()).toBe(pid); // the same process throughout: no restart
  }, 600_000);

  it('reloads a model whose folder changed and says why a load fails, serving what it did before', async () => {
    await models.ensure([{ name: 'support-r2', adapterPath: adapter }]);
    const asAdapter = (await ask('support-r2')).choices[0]!.message.content;
    await models.ensure([{ name: 'support-r2', adapterPath: merged }]);
    const listed = (await client.models.list()).data as unknown as { id: string; path: string }[];
    expect(listed.find((m) => m.id === 'support-r2')?.path).toBe(merged);
    expect((await ask('support-r2')).choices[0]!.message.content).toBe(asAdapter);

    await expect(
      models.ensure([
        { name: 'support-r2', adapterPath: merged },
        { name: 'broken', adapterPath: join(tmpdir(), 'no-such-model-folder') },
      ]),
    ).rejects.toThrow(/could not load broken: .*no folder/);
    expect(await servedNames()).toEqual(['support-r2', 'tiny-base']);
  }, 300_000);
});
