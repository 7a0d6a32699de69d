import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RatchetError } from '@ratchet/core';
import { type DatasetVersion, Store } from '@ratchet/store';
import { postgresTestDatabase, sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resumeOrphanedRuns, runTraining, startTrainingRun } from './runs.js';
import { TrainingService } from './service.js';
import { ratedDatasetVersion, repoRoot, tinyTestModel } from './testing.js';
import type { WorkerEvent } from './worker.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 90_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('training runs with the real worker (SQLite)', () => {
  const db = sqliteTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-train-'));
  let url: string;
  let store: Store;
  let projectId: string;
  let base: string;
  let version: DatasetVersion;

  beforeAll(async () => {
    base = await tinyTestModel();
    url = await db.create();
    store = await Store.open(url);
    projectId = (await store.projects.create('train')).id;
    version = await ratedDatasetVersion(store, projectId, { dataDir });
  }, 600_000);
  afterAll(async () => {
    await store?.close();
    await db.cleanup();
  });

  it('trains a dataset version built from feedback into a registered candidate with lineage', async () => {
    const run = await startTrainingRun(
      store,
      projectId,
      {
        method: 'sft',
        baseModel: base,
        dataset: `${version.name}@${version.version}`,
        modelName: 'support-sft-1',
        route: 'support-bot',
        hyperparameters: { maxSteps: 6, batchSize: 4, saveSteps: 3, learningRate: 0.005 },
      },
      { dataDir },
    );
    expect(run.status).toBe('queued');
    const job = JSON.parse(readFileSync(join(run.outputDir, 'job.json'), 'utf8'));
    expect(job).toMatchObject({ method: 'sft', base_model: base, hyperparameters: { max_steps: 6 } });
    expect(readFileSync(job.dataset, 'utf8').trim().split('\n').length).toBe(
      (version.manifest.splits as { train: number }).train,
    );

    const events: WorkerEvent[] = [];
    const outcome = await runTraining(store, run.id, {
      dataDir,
      progressIntervalMs: 200,
      onEvent: (e) => events.push(e),
    });
    const done = outcome!.run;
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.progress).toMatchObject({ step: 6, total: 6, startStep: 0 });
    expect(events.filter((e) => e.type === 'progress').every((e) => typeof e.eta_s === 'number')).toBe(true);
    // One loss point per step, in order, and the loss went down on this easy data.
    const loss = done.metrics.loss!;
    expect(loss.map(([step]) => step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(loss.at(-1)![1]).toBeLessThan(loss[0]![1]);
    expect(done.metrics.learning_rate).toHaveLength(6);
    expect(Object.keys(done.metrics).some((k) => k.startsWith('eval/'))).toBe(true);

    const model = outcome!.model!;
    expect(model).toMatchObject({
      name: 'support-sft-1',
      stage: 'candidate',
      route: 'support-bot',
      runId: run.id,
      datasetId: version.id,
      baseModel: base,
    });
    expect(existsSync(join(model.adapterPath!, 'adapter_config.json'))).toBe(true);
    expect(done.artifacts).toMatchObject({ path: model.adapterPath, modelId: model.id });
    expect((await store.models.get(projectId, 'support-sft-1'))?.runId).toBe(run.id);
  }, 120_000);

  it('trains with two processes (accelerate launch, DDP over gloo on CPU) into the same kind of candidate', async () => {
    const run = await startTrainingRun(
      store,
      projectId,
      {
        method: 'sft',
        baseModel: base,
        dataset: `${version.name}@${version.version}`,
        modelName: 'support-sft-ddp',
        hyperparameters: { maxSteps: 2, batchSize: 2, learningRate: 0.005 },
        evaluate: false,
        processes: 2,
      },
      { dataDir },
    );
    const events: WorkerEvent[] = [];
    const outcome = await runTraining(store, run.id, { dataDir, onEvent: (e) => events.push(e) });
    const done = outcome!.run;
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.request).toMatchObject({ processes: 2 });
    // The ranks really trained together: the worker's own report of its distributed setup.
    const log = readFileSync(join(run.outputDir, 'worker.log'), 'utf8');
    expect(events.find((e) => e.type === 'start')).toMatchObject({ processes: 2 });
    expect(log).not.toMatch(/Traceback/);
    expect(done.progress).toMatchObject({ step: 2, total: 2 });
    const model = outcome!.model!;
    expect(model).toMatchObject({ name: 'support-sft-ddp', stage: 'candidate', runId: run.id });
    expect(existsSync(join(model.adapterPath!, 'adapter_config.json'))).toBe(true);
    expect(existsSync(join(model.adapterPath!, 'adapter_model.safetensors'))).toBe(true);
  }, 180_000);

  it('rejects bad requests naming the field, writing no run', async () => {
    const before = (await store.runs.list(projectId)).length;
    const fails = (input: Record<string, unknown>) =>
      startTrainingRun(
        store,
        projectId,
        { method: 'sft', baseModel: base, dataset: version.name, ...input } as never,
        { dataDir },
      ).then(
        () => undefined,
        (e: RatchetError) => e.path,
      );
    expect(await fails({ method: 'kto' })).toBe('dataset');
    expect(await fails({ dataset: 'nope' })).toBe('dataset');
    expect(await fails({ baseModel: join(dataDir, 'missing-model') })).toBe('baseModel');
    expect(await fails({ hyperparameters: { maxSteps: -1 } })).toBe('hyperparameters.maxSteps');
    expect(await fails({ method: 'rl' })).toBe('rewardModel');
    expect(await fails({ modelName: 'support-sft-1' })).toBe('modelName');
    expect((await store.runs.list(projectId)).length).toBe(before);
  });

  it('cancels a running job: the worker stops, the run is cancelled, nothing is registered', async () => {
    const run = await startTrainingRun(
      store,
      projectId,
      {
        method: 'sft',
        baseModel: base,
        dataset: version.name,
        hyperparameters: { maxSteps: 2000, batchSize: 2 },
      },
      { dataDir },
    );
    const outcome = runTraining(store, run.id, { dataDir, heartbeatMs: 200, progressIntervalMs: 200 });
    await until('training steps', async () => ((await store.runs.get(run.id))?.progress.step as number) >= 2);
    expect((await store.runs.get(run.id))?.worker).toMatch(new RegExp(`:${process.pid}$`));
    // The cancel goes through the run record, as it does from the API or another process.
    await store.runs.requestCancel(run.id, projectId);
    const { run: done, model } = (await outcome)!;
    expect(done.status).toBe('cancelled');
    expect(done.progress.step as number).toBeLessThan(2000);
    expect(model).toBeUndefined();
    expect((await store.models.list(projectId)).some((m) => m.runId === run.id)).toBe(false);
  }, 120_000);

  it('resumes a run whose process crashed from its newest checkpoint', async () => {
    const run = await startTrainingRun(
      store,
      projectId,
      {
        method: 'sft',
        baseModel: base,
        dataset: version.name,
        modelName: 'support-sft-resumed',
        hyperparameters: { maxSteps: 16, batchSize: 2, saveSteps: 2 },
      },
      { dataDir },
    );
    // Another process owns the run; it dies with its worker (SIGKILL to the process group).
    const script = `import { runTraining } from ${JSON.stringify(join(repoRoot, 'packages/loop/src/index.ts'))};
import { Store } from ${JSON.stringify(join(repoRoot, 'packages/store/src/index.ts'))};
const store = await Store.open(process.env.URL);
await runTraining(store, process.env.RUN, { progressIntervalMs: 200, heartbeatMs: 200 });`;
    const owner = spawn(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script],
      {
        cwd: repoRoot,
        env: { ...process.env, URL: url, RUN: run.id },
        detached: true,
        stdio: 'ignore',
      },
    );
    const checkpointed = await until('a checkpoint', async () => {
      const r = await store.runs.get(run.id);
      return r?.progress.lastCheckpoint && (r.progress.step as number) >= 4 ? r : undefined;
    });
    process.kill(-owner.pid!, 'SIGKILL');
    await until('the owner to die', async () => !alive(owner.pid!));
    expect(checkpointed.status).toBe('running');

    // Nothing to resume while the heartbeat is fresh; then the sweep takes it.
    expect(await store.runs.findOrphaned(60_000, projectId)).toHaveLength(0);
    await sleep(1200);
    const [outcome] = await resumeOrphanedRuns(store, 1000, { dataDir, progressIntervalMs: 200 });
    const done = outcome!.run;
    expect(done.id).toBe(run.id);
    expect(done.status).toBe('succeeded');
    expect(done.attempts).toBe(2);
    // From the last checkpoint the first owner reported as saved (a newer folder may be partial).
    const saved = (checkpointed.progress.lastCheckpoint as { step: number }).step;
    expect(saved).toBeGreaterThanOrEqual(2);
    expect(done.progress.startStep as number).toBeGreaterThanOrEqual(saved);
    expect(done.progress.step).toBe(16);
    // Each step once, in order, and every step after the resume point. When the reported
    // checkpoint had been rotated away, the run resumed from a later one, and the steps in between
    // (never reported before the crash) are missing.
    const steps = done.metrics.loss!.map(([s]) => s);
    const start = done.progress.startStep as number;
    expect(steps[0]).toBe(1);
    expect(steps.every((s, i) => i === 0 || s > steps[i - 1]!)).toBe(true);
    expect(steps.filter((s) => s > start)).toEqual(
      Array.from({ length: 16 - start }, (_, i) => start + i + 1),
    );
    expect(outcome!.model).toMatchObject({ name: 'support-sft-resumed', runId: run.id, stage: 'candidate' });
  }, 180_000);
});

const postgresUrl = process.env.RATCHET_TEST_POSTGRES_URL;
describe.skipIf(!postgresUrl)('training through pg-boss on PostgreSQL', () => {
  const db = postgresTestDatabase(postgresUrl ?? '');
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-train-pg-'));
  const services: TrainingService[] = [];
  const stores: Store[] = [];
  afterAll(async () => {
    for (const s of services) await s.stop();
    for (const s of stores) await s.close();
    await db.cleanup();
  });

  it('an API-side service enqueues; a separate worker takes the job and registers the candidate', async () => {
    const base = await tinyTestModel();
    const url = await db.create();
    // Two stores: the submitting side and the worker do not share a connection or a queue object.
    const api = await Store.open(url);
    const remote = await Store.open(url);
    stores.push(api, remote);
    const projectId = (await api.projects.create('pg-train')).id;
    const version = await ratedDatasetVersion(api, projectId, { dataDir, method: 'sft' });

    const submitter = new TrainingService(api, { dataDir });
    services.push(submitter);
    const run = await submitter.submit(projectId, {
      method: 'sft',
      baseModel: base,
      dataset: version.id,
      modelName: 'pg-sft',
      hyperparameters: { maxSteps: 4, batchSize: 4 },
      evaluate: false,
    });
    expect(submitter.queue.kind).toBe('pg-boss');
    const queued = await api.db
      .selectFrom('pgboss.job' as never)
      .select(['data' as never])
      .where('name' as never, '=', 'ratchet-training' as never)
      .execute();
    expect(queued.map((j) => (j as { data: { runId: string } }).data.runId)).toContain(run.id);

    const outcomes: string[] = [];
    const worker = new TrainingService(remote, {
      dataDir,
      pollMs: 500,
      onOutcome: (o) => outcomes.push(o.run.status),
    });
    services.push(worker);
    await worker.work();
    const done = await until('the remote worker to finish', async () => {
      const r = await api.runs.get(run.id);
      return r && r.status !== 'queued' && r.status !== 'running' ? r : undefined;
    });
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.metrics.loss?.length).toBe(4);
    expect(outcomes).toEqual(['succeeded']);
    expect(await api.models.get(projectId, 'pg-sft')).toMatchObject({
      runId: run.id,
      datasetId: version.id,
      stage: 'candidate',
    });
  }, 240_000);
});
