import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ratedDatasetVersion, tinyTestModel, workerBin } from '@ratchet/loop/testing';
import type { DatasetVersion } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `ratchet-worker serve` on a free port; resolves once it prints its ready line. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

async function startWorkerServe(args: string[]): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(workerBin, ['serve', '--port', String(await freePort()), ...args], {
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const lines = createInterface({ input: child.stdout! });
  const ready = await new Promise<{ host: string; port: number }>((resolve, reject) => {
    lines.on('line', (line) => {
      const event = JSON.parse(line);
      if (event.type === 'ready') resolve(event);
    });
    child.once('exit', (code) => reject(new Error(`serve exited (${code}): ${stderr.slice(-2000)}`)));
  });
  return { url: `http://${ready.host}:${ready.port}/v1`, child };
}

describe('training runs over HTTP, and serving the candidate through the gateway', () => {
  const db = sqliteTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-runs-api-'));
  let t: TestServer;
  let base: string;
  let version: DatasetVersion;
  let adapterPath: string;
  const children: ChildProcess[] = [];
  const servers: TestServer[] = [];

  beforeAll(async () => {
    base = await tinyTestModel();
    t = await startTestServer(await db.create(), { config: { dataDir } });
    version = await ratedDatasetVersion(t.store, t.projectId, { dataDir });
  }, 600_000);
  afterAll(async () => {
    for (const c of children) c.kill('SIGTERM');
    for (const s of servers) await s.close();
    await t?.close();
    await db.cleanup();
  });

  async function waitForRun(
    id: string,
    done: (run: { status: string; progress: { step?: number } }) => boolean,
  ) {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const res = await t.call(`/api/v1/runs/${id}`);
      expect(res.status).toBe(200);
      if (done(res.body)) return res.body;
      if (Date.now() > deadline) throw new Error(`run ${id} stuck: ${JSON.stringify(res.body.progress)}`);
      await sleep(250);
    }
  }

  it('queues a run, trains it in the server, and shows progress, metric series and the candidate', async () => {
    const created = await t.call('/api/v1/runs', {
      body: {
        method: 'sft',
        baseModel: base,
        dataset: `${version.name}@${version.version}`,
        modelName: 'support-v2',
        route: 'support-bot',
        hyperparameters: { maxSteps: 5, batchSize: 4, learningRate: 0.005 },
      },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ status: 'queued', method: 'sft', datasetId: version.id });

    const run = await waitForRun(created.body.id, (r) => !['queued', 'running'].includes(r.status));
    expect(run.error).toBeNull();
    expect(run).toMatchObject({ status: 'succeeded', progress: { step: 5, total: 5 } });
    expect(run.metrics.loss.map(([step]: [number, number]) => step)).toEqual([1, 2, 3, 4, 5]);
    adapterPath = run.artifacts.path;

    const list = await t.call('/api/v1/runs?status=succeeded');
    expect(list.body.items.map((r: { id: string }) => r.id)).toContain(run.id);
    expect(list.body.items[0].metrics).toBeUndefined();
    expect(list.body.items[0].metricNames).toContain('loss');

    const model = await t.call('/api/v1/models/support-v2');
    expect(model.body).toMatchObject({
      stage: 'candidate',
      runId: run.id,
      datasetId: version.id,
      adapterPath,
      route: 'support-bot',
    });
    // A finished run cannot be cancelled.
    expect(await t.call(`/api/v1/runs/${run.id}/cancel`, { method: 'POST' })).toMatchObject({
      status: 409,
      body: { error: { path: 'run' } },
    });
  }, 150_000);

  it('cancels a running job over HTTP', async () => {
    const created = await t.call('/api/v1/runs', {
      body: {
        method: 'sft',
        baseModel: base,
        dataset: version.name,
        hyperparameters: { maxSteps: 3000, batchSize: 2 },
      },
    });
    await waitForRun(created.body.id, (r) => r.status === 'running' && (r.progress.step ?? 0) >= 1);
    const cancel = await t.call(`/api/v1/runs/${created.body.id}/cancel`, { method: 'POST' });
    expect(cancel.status).toBe(200);
    expect(cancel.body.cancelRequestedAt).toBeGreaterThan(0);
    const run = await waitForRun(created.body.id, (r) => r.status !== 'running');
    expect(run.status).toBe('cancelled');
    expect(run.progress.step).toBeLessThan(3000);
  }, 150_000);

  it('answers bad requests with the field, and documents the routes', async () => {
    const bad = (body: unknown) => t.call('/api/v1/runs', { body });
    expect((await bad({ method: 'ppo', baseModel: base, dataset: version.name })).body.error.path).toBe(
      'method',
    );
    expect((await bad({ method: 'dpo', baseModel: base, dataset: version.name })).body.error).toMatchObject({
      path: 'dataset',
    });
    expect((await bad({ method: 'sft', baseModel: base, dataset: 'missing' })).status).toBe(404);
    expect(
      (await bad({ method: 'sft', baseModel: base, dataset: version.name, lora: { r: 0 } })).body.error.path,
    ).toBe('lora.r');
    expect((await t.call('/api/v1/runs/nope')).status).toBe(404);
    expect((await t.call('/api/v1/runs', { key: t.publicKey })).status).toBe(403);
    const spec = (await t.call('/openapi.json', { key: null })).body;
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/api/v1/runs', '/api/v1/runs/{id}', '/api/v1/runs/{id}/cancel']),
    );
  });

  it('the openai client gets answers from ratchet-worker serve, directly and through the gateway', async () => {
    expect(adapterPath).toBeTruthy();
    const serve = await startWorkerServe([
      '--base',
      base,
      '--base-name',
      'tiny-base',
      '--adapters',
      `support-v2=${adapterPath}`,
    ]);
    children.push(serve.child);
    const messages = [{ role: 'user' as const, content: 'Where is my order 1003?' }];

    const direct = new OpenAI({ baseURL: serve.url, apiKey: 'unused' });
    for (const model of ['tiny-base', 'support-v2']) {
      const completion = await direct.chat.completions.create({
        model,
        messages,
        max_tokens: 16,
        temperature: 0,
      });
      expect(completion.model).toBe(model);
      expect(completion.choices[0]!.message.role).toBe('assistant');
      expect(completion.choices[0]!.message.content!.length).toBeGreaterThan(0);
      expect(completion.usage!.completion_tokens).toBeGreaterThan(0);
    }
    const stream = await direct.chat.completions.create({
      model: 'support-v2',
      messages,
      max_tokens: 16,
      temperature: 0,
      stream: true,
    });
    let streamed = '';
    let chunks = 0;
    for await (const chunk of stream) {
      streamed += chunk.choices[0]?.delta?.content ?? '';
      chunks++;
    }
    expect(chunks).toBeGreaterThan(1);
    const whole = await direct.chat.completions.create({
      model: 'support-v2',
      messages,
      max_tokens: 16,
      temperature: 0,
    });
    // Greedy decoding: streaming and not give the same text.
    expect(streamed).toBe(whole.choices[0]!.message.content);

    const gw = await startTestServer(await db.create(), {
      project: 'gateway',
      gateway: {
        upstreams: { worker: { baseURL: serve.url } },
        routes: {
          'support-bot': {
            variants: [{ name: 'candidate', upstream: 'worker', model: 'support-v2', weight: 1 }],
          },
        },
      },
    });
    servers.push(gw);
    const viaGateway = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.secretKey });
    const { data, response } = await viaGateway.chat.completions
      .create({ model: 'support-bot', messages, max_tokens: 16, temperature: 0, user: 'user-7' })
      .withResponse();
    expect(data.choices[0]!.message.content).toBe(whole.choices[0]!.message.content);
    const interactionId = response.headers.get('x-ratchet-interaction-id')!;
    expect(interactionId).toBeTruthy();
    const gwStream = await viaGateway.chat.completions.create({
      model: 'support-bot',
      messages,
      max_tokens: 16,
      temperature: 0,
      stream: true,
    });
    let gwText = '';
    for await (const chunk of gwStream) gwText += chunk.choices[0]?.delta?.content ?? '';
    expect(gwText).toBe(streamed);

    // The gateway logged the call with the route, variant and the upstream model.
    let logged: { status: number; body: Record<string, unknown> } | undefined;
    for (let i = 0; i < 40 && logged?.status !== 200; i++) {
      logged = await gw.call(`/api/v1/interactions/${interactionId}`);
      if (logged.status !== 200) await sleep(100);
    }
    expect(logged?.body).toMatchObject({ route: 'support-bot', variant: 'candidate', model: 'support-v2' });
  }, 180_000);
});
