import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTraining, startTrainingRun } from '../training/runs.js';
import { ratedDatasetVersion, repoRoot, tinyTestModel } from '../training/testing.js';
import { MlflowTracker } from './mlflow.js';

// The real MLflow server, installed by scripts/mlflow-venv.sh (make test runs it). Without it the
// suite is skipped, unless RATCHET_REQUIRE_MLFLOW=1 (CI), where a missing server is a failure.
const mlflowBin = join(process.env.RATCHET_MLFLOW_VENV ?? join(repoRoot, '.cache/mlflow-venv'), 'bin/mlflow');
const available = existsSync(mlflowBin) || !!process.env.RATCHET_TEST_MLFLOW_URL;
if (!available && process.env.RATCHET_REQUIRE_MLFLOW === '1')
  throw new Error(`RATCHET_REQUIRE_MLFLOW=1 but ${mlflowBin} is missing (run scripts/mlflow-venv.sh)`);

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

/** Starts `mlflow server` on a fresh SQLite store and waits for /health. */
async function startMlflow(): Promise<{ url: string; child?: ChildProcess }> {
  if (process.env.RATCHET_TEST_MLFLOW_URL) return { url: process.env.RATCHET_TEST_MLFLOW_URL };
  const dir = mkdtempSync(join(tmpdir(), 'ratchet-mlflow-'));
  const port = await freePort();
  const child = spawn(
    mlflowBin,
    [
      'server',
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--backend-store-uri',
      `sqlite:///${join(dir, 'mlflow.db')}`,
      '--artifacts-destination',
      join(dir, 'artifacts'),
      '--workers',
      '1',
    ],
    {
      // No background job runner: it starts a pool of processes this test does not use.
      env: { ...process.env, MLFLOW_SERVER_ENABLE_JOB_EXECUTION: 'false' },
      stdio: ['ignore', 'ignore', 'pipe'],
      // Its own process group, so stopping it stops its uvicorn workers too.
      detached: true,
    },
  );
  let log = '';
  child.stderr!.on('data', (d) => (log = (log + d).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 280_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`mlflow server exited (${child.exitCode}): ${log}`);
    try {
      if ((await fetch(`${url}/health`)).ok) return { url, child };
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  child.kill('SIGKILL');
  throw new Error(`mlflow server did not start: ${log}`);
}

async function mlflow<T>(url: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${url}/api/2.0/mlflow/${path}`, {
    method: body ? 'POST' : 'GET',
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  expect(res.status, path).toBe(200);
  return (await res.json()) as T;
}

describe.skipIf(!available)('MLflow logging against a real MLflow server', () => {
  const db = sqliteTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-mlflow-data-'));
  let server: { url: string; child?: ChildProcess };
  let store: Store;

  beforeAll(async () => {
    [server] = await Promise.all([startMlflow(), tinyTestModel()]);
    store = await Store.open(await db.create());
  }, 600_000);
  afterAll(async () => {
    const child = server?.child;
    if (child?.pid && child.exitCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      const killGroup = (signal: NodeJS.Signals) => {
        try {
          process.kill(-child.pid!, signal);
        } catch {
          // already gone
        }
      };
      killGroup('SIGTERM');
      const timer = setTimeout(() => killGroup('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    }
    await store?.close();
    await db.cleanup();
  });

  it('logs a real training run: params, every metric point, status, and the registered candidate', async () => {
    const projectId = (await store.projects.create('mlflow')).id;
    const version = await ratedDatasetVersion(store, projectId, { dataDir });
    const run = await startTrainingRun(
      store,
      projectId,
      {
        method: 'sft',
        baseModel: await tinyTestModel(),
        dataset: version.name,
        modelName: 'support-mlflow',
        hyperparameters: { maxSteps: 3, batchSize: 4 },
      },
      { dataDir },
    );
    const tracker = new MlflowTracker({ trackingUri: server.url });
    const outcome = await runTraining(store, run.id, { dataDir, tracker, progressIntervalMs: 200 });
    expect(outcome?.run.status).toBe('succeeded');

    const experiment = await mlflow<{ experiment: { experiment_id: string } }>(
      server.url,
      `experiments/get-by-name?experiment_name=${encodeURIComponent(`ratchet/${projectId}`)}`,
    );
    const search = await mlflow<{
      runs: {
        info: { run_id: string; status: string };
        data: Record<string, { key: string; value: string }[]>;
      }[];
    }>(server.url, 'runs/search', {
      experiment_ids: [experiment.experiment.experiment_id],
      filter: `tags.\`ratchet.run_id\` = '${run.id}'`,
    });
    expect(search.runs).toHaveLength(1);
    const logged = search.runs[0]!;
    expect(logged.info.status).toBe('FINISHED');
    const params = Object.fromEntries(logged.data.params!.map((p) => [p.key, p.value]));
    expect(params).toMatchObject({ method: 'sft', 'hyperparameters.max_steps': '3', 'lora.r': '16' });
    const tags = Object.fromEntries(logged.data.tags!.map((t) => [t.key, t.value]));
    expect(tags['ratchet.dataset_id']).toBe(version.id);

    const history = await mlflow<{ metrics: { step: number; value: number }[] }>(
      server.url,
      `metrics/get-history?run_id=${logged.info.run_id}&metric_key=loss`,
    );
    const ours = outcome!.run.metrics.loss!;
    expect(history.metrics.map((m) => [m.step, m.value]).sort((a, b) => a[0]! - b[0]!)).toEqual(ours);

    const versions = await mlflow<{
      model_versions: { version: string; run_id: string; tags?: { key: string; value: string }[] }[];
    }>(server.url, `model-versions/search?filter=${encodeURIComponent("name='support-mlflow'")}`);
    expect(versions.model_versions).toHaveLength(1);
    expect(versions.model_versions[0]!.run_id).toBe(logged.info.run_id);
    const versionTags = Object.fromEntries(
      (versions.model_versions[0]!.tags ?? []).map((t) => [t.key, t.value]),
    );
    expect(versionTags['ratchet.adapter_path']).toBe(outcome!.model!.adapterPath);
  }, 240_000);
});
