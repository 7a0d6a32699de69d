import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoopPolicy } from '../orchestrator/policy.js';
import { tinyTestModel } from '../training/testing.js';
import { createDeployTarget, DeployPolicy, deployTargetNames, type ServedModel } from './index.js';
import { vllmDouble } from './vllm/test-double.js';

const root = mkdtempSync(join(tmpdir(), 'ratchet-deploy-'));
/** Ratchet's data dir, where training writes adapters. */
const dataDir = join(root, 'data');
/** The shared folder as Ratchet sees it; the (double's) vLLM server sees it as SERVER_DIR. */
const shared = join(root, 'shared');
const SERVER_DIR = '/srv/vllm/adapters';

function adapter(name: string, config: Record<string, unknown> = {}): string {
  const dir = join(dataDir, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'adapter_config.json'),
    JSON.stringify({ task_type: 'CAUSAL_LM', r: 8, ...config }),
  );
  writeFileSync(join(dir, 'adapter_model.safetensors'), `weights of ${name}`);
  return dir;
}
function mergedModel(name: string): string {
  const dir = join(dataDir, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'] }));
  return dir;
}

const chat = async (baseUrl: string, model: string) => {
  const res = await fetch(`${baseUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
  });
  return { status: res.status, body: (await res.json()) as { choices?: { message: { content: string } }[] } };
};

const base: ServedModel = { name: 'tiny-base', adapterPath: null };

describe('vLLM deploy target, against a TEST DOUBLE of vLLM (vLLM needs a GPU and cannot run on this CPU machine)', () => {
  const vllm = vllmDouble({
    servedNames: ['tiny-base'],
    mounts: { [SERVER_DIR]: shared },
    runtimeLora: true,
    staticLoras: { 'ops-lora': '/models/ops-lora' },
  });
  let url = '';
  beforeAll(async () => {
    url = await vllm.start();
  });
  afterAll(() => vllm.close());
  const target = () =>
    createDeployTarget(
      DeployPolicy.parse({ target: 'vllm', baseURL: url, adapterDir: shared, serverAdapterDir: SERVER_DIR }),
      { baseModel: 'unused' },
    )!;
  const loraCalls = () => vllm.calls.filter((c) => c.path.includes('lora_adapter'));

  it('loads exactly the new adapters, with the path as vLLM sees it, and unloads only its own adapters no longer needed', async () => {
    const c1: ServedModel = { name: 'support-r1', adapterPath: adapter('r1') };
    const c2: ServedModel = { name: 'support/r2', adapterPath: adapter('r2') };
    const t = target();
    expect(t.baseUrl).toBe(url);

    await t.ensure([base, c1]);
    const [load] = loraCalls();
    expect(loraCalls()).toHaveLength(1);
    expect(load!.path).toBe('/v1/load_lora_adapter');
    expect(load!.body!.lora_name).toBe('support-r1');
    const lora1 = String(load!.body!.lora_path);
    expect(lora1.startsWith(`${SERVER_DIR}/`)).toBe(true);
    // The double found the adapter under the server's path: the copy is in the shared folder.
    const copied = join(shared, lora1.slice(SERVER_DIR.length));
    expect(readFileSync(join(copied, 'adapter_model.safetensors'), 'utf8')).toBe('weights of r1');
    expect((await chat(url, 'support-r1')).body.choices![0]!.message.content).toBe('support-r1');

    // The same set again: vLLM already lists it, nothing is sent.
    await t.ensure([base, c1]);
    expect(loraCalls()).toHaveLength(1);

    // A new candidate: only it is loaded (a name with a slash gets a safe folder).
    await t.ensure([base, c1, c2]);
    expect(loraCalls().slice(1)).toEqual([
      {
        method: 'POST',
        path: '/v1/load_lora_adapter',
        body: { lora_name: 'support/r2', lora_path: vllm.loras.get('support/r2') },
      },
    ]);
    expect(vllm.loras.get('support/r2')).toMatch(new RegExp(`^${SERVER_DIR}/support_r2-[0-9a-f]{12}$`));

    // r1 leaves; the adapter vLLM was started with (--lora-modules) is not the target's to unload.
    await t.ensure([base, c2]);
    expect(loraCalls().slice(2)).toEqual([
      { method: 'POST', path: '/v1/unload_lora_adapter', body: { lora_name: 'support-r1' } },
    ]);
    expect([...vllm.loras.keys()].sort()).toEqual(['ops-lora', 'support/r2']);
    expect((await chat(url, 'support-r1')).status).toBe(404);
    expect((await chat(url, 'support/r2')).status).toBe(200);
  });

  it('refuses a merged model, naming the limitation, and sends nothing for the set', async () => {
    const before = loraCalls().length;
    const merged: ServedModel = { name: 'support-r3-merged', adapterPath: mergedModel('r3-merged') };
    const ok: ServedModel = { name: 'support-r4', adapterPath: adapter('r4') };
    await expect(target().ensure([base, ok, merged])).rejects.toThrow(
      /cannot serve model "support-r3-merged": it is a merged model .*vLLM loads only LoRA adapters at runtime.*vllm serve .*--served-model-name support-r3-merged/,
    );
    expect(loraCalls()).toHaveLength(before);
    expect(vllm.loras.has('support-r4')).toBe(false);
  });

  it("surfaces vLLM's error response: the engine refusing an adapter, and a model vLLM does not serve as its base", async () => {
    const big: ServedModel = { name: 'support-r64', adapterPath: adapter('r64', { r: 64 }) };
    await expect(target().ensure([base, big])).rejects.toThrow(
      /vLLM at .* refused to load adapter "support-r64" from \/srv\/vllm\/adapters\/support-r64-[0-9a-f]+ \(400 BadRequestError: LoRA rank 64 is greater than max_lora_rank 16\.\)/,
    );
    expect(vllm.loras.has('support-r64')).toBe(false);
    await expect(target().ensure([{ name: 'tiny-support', adapterPath: null }])).rejects.toThrow(
      /cannot serve model "tiny-support": .*does not serve a base model by that name \(it lists: tiny-base, .*--served-model-name tiny-support/,
    );
  });

  it('refuses a reward model adapter, and a policy that would need one on vLLM names the field', async () => {
    const rm: ServedModel = { name: 'support-rm', adapterPath: adapter('rm', { task_type: 'SEQ_CLS' }) };
    await expect(target().ensure([base, rm])).rejects.toThrow(
      /SEQ_CLS adapter .*rewardModel\.enabled: false/,
    );
    const policy = {
      route: 'r',
      baseModel: 'm',
      deploy: { target: 'vllm', baseURL: url, adapterDir: shared },
    };
    expect(() => LoopPolicy.parse(policy)).toThrow(/rewardModel.*enabled/s);
    expect(LoopPolicy.parse({ ...policy, rewardModel: { enabled: false } }).deploy).toMatchObject({
      target: 'vllm',
      transfer: 'copy',
    });
  });

  it('says to turn runtime LoRA loading on when vLLM runs without it', async () => {
    const plain = vllmDouble({ servedNames: ['tiny-base'], mounts: { [SERVER_DIR]: shared } });
    const plainUrl = await plain.start();
    try {
      const t = createDeployTarget(
        DeployPolicy.parse({
          target: 'vllm',
          baseURL: plainUrl,
          adapterDir: shared,
          serverAdapterDir: SERVER_DIR,
        }),
        { baseModel: 'unused' },
      )!;
      await expect(t.ensure([base, { name: 'support-r5', adapterPath: adapter('r5') }])).rejects.toThrow(
        /has no POST \/load_lora_adapter \(404\).*VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora/,
      );
    } finally {
      await plain.close();
    }
  });
});

describe('OpenAI-compatible deploy target (against the vLLM test double, as any server that lists its models)', () => {
  const server = vllmDouble({ servedNames: ['tiny-base', 'support-r1'], mounts: {} });
  let url = '';
  beforeAll(async () => {
    url = await server.start();
  });
  afterAll(() => server.close());

  it('accepts models the server lists and refuses one it does not, saying so, without loading anything', async () => {
    const t = createDeployTarget(DeployPolicy.parse({ target: 'openai-compatible', baseURL: url }), {
      baseModel: 'unused',
    })!;
    await t.ensure([base, { name: 'support-r1', adapterPath: adapter('r1') }]);
    await expect(t.ensure([base, { name: 'support-r2', adapterPath: adapter('r2') }])).rejects.toThrow(
      /cannot serve model "support-r2": .* does not list it at GET \/models \(it lists: tiny-base, support-r1\); this target loads nothing/,
    );
    expect(server.calls.every((c) => c.method === 'GET' && c.path === '/v1/models')).toBe(true);
  });
});

describe('deploy policy', () => {
  it('defaults to the built-in worker, lists the targets once, and names a bad field', () => {
    expect(deployTargetNames).toEqual(['worker', 'openai-compatible', 'vllm']);
    expect(LoopPolicy.parse({ route: 'r', baseModel: 'm' }).deploy).toEqual({ target: 'worker' });
    const parse = (deploy: unknown) => LoopPolicy.safeParse({ route: 'r', baseModel: 'm', deploy });
    expect(parse({ target: 'ollama' }).error?.issues[0]?.path).toEqual(['deploy', 'target']);
    expect(parse({ target: 'vllm', adapterDir: '/a' }).error?.issues[0]?.path).toEqual(['deploy', 'baseURL']);
    expect(
      parse({ target: 'vllm', baseURL: 'http://gpu:8000/v1', adapterDir: '/a', serverAdapterDir: 'rel' })
        .error?.issues[0]?.path,
    ).toEqual(['deploy', 'serverAdapterDir']);
    // Without a port the loop does not run the worker: someone else serves the models.
    expect(createDeployTarget({ target: 'worker' }, { baseModel: 'm' })).toBeUndefined();
  });
});

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

describe('built-in worker deploy target', () => {
  it('serves the tiny model through the seam and stops it on close', async () => {
    const port = await freePort();
    const t = createDeployTarget(
      { target: 'worker' },
      { baseModel: await tinyTestModel(), workerPort: port, workerBaseName: 'tiny-base' },
    )!;
    try {
      await t.ensure([base]);
      const answer = await chat(t.baseUrl, 'tiny-base');
      expect(answer.status).toBe(200);
      expect(typeof answer.body.choices![0]!.message.content).toBe('string');
    } finally {
      await t.close();
    }
    await expect(fetch(`${t.baseUrl}/models`)).rejects.toThrow();
  }, 180_000);
});
