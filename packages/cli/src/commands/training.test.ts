import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ratedDatasetVersion, tinyTestModel } from '@ratchet/loop/testing';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildProgram } from '../main.js';
import { exited, runCli, spawnCli } from '../test-utils/process.js';

describe('ratchet train, runs, worker and models show', () => {
  const db = sqliteTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-cli-train-'));
  let env: NodeJS.ProcessEnv;
  let base: string;
  let store: Store;
  let projectId: string;

  beforeAll(async () => {
    base = await tinyTestModel();
    const url = await db.create();
    env = { RATCHET_DATABASE_URL: url, RATCHET_DATA_DIR: dataDir };
    store = await Store.open(url);
    projectId = (await store.projects.create('cli')).id;
    await ratedDatasetVersion(store, projectId, { dataDir });
  }, 600_000);
  afterAll(async () => {
    await store?.close();
    await db.cleanup();
  });

  it('has --help on every training command', () => {
    const program = buildProgram();
    const find = (path: string[]) =>
      path.reduce((cmd, name) => cmd.commands.find((c) => c.name() === name)!, program);
    for (const path of [
      ['train'],
      ['runs', 'list'],
      ['runs', 'show'],
      ['runs', 'cancel'],
      ['runs', 'resume'],
      ['worker'],
      ['models', 'show'],
    ]) {
      const help = find(path).helpInformation();
      expect(help, path.join(' ')).toMatch(/Usage: ratchet/);
      expect(help.length).toBeGreaterThan(100);
    }
    expect(find(['train']).helpInformation()).toMatch(/--max-steps <n>[\s\S]*--queue/);
  });

  /** Runs a command in this process (faster than a new one), capturing what it prints. */
  async function inProcess(args: string[]): Promise<{ stdout: string; stderr: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...a) => void out.push(a.join(' ')));
    const table = vi
      .spyOn(console, 'table')
      .mockImplementation((rows) => void out.push(JSON.stringify(rows)));
    const error = vi.spyOn(console, 'error').mockImplementation((...a) => void err.push(a.join(' ')));
    try {
      await buildProgram().parseAsync([
        'node',
        'ratchet',
        '--database-url',
        env.RATCHET_DATABASE_URL!,
        ...args,
      ]);
    } finally {
      log.mockRestore();
      table.mockRestore();
      error.mockRestore();
    }
    return { stdout: out.join('\n'), stderr: err.join('\n') };
  }

  it('queues a run that a `ratchet worker` process trains and registers; runs and models show it', async () => {
    process.env.RATCHET_DATA_DIR = dataDir;
    const queued = await inProcess([
      'train',
      '--project',
      'cli',
      '--dataset',
      'support',
      '--method',
      'sft',
      '--base',
      base,
      '--name',
      'cli-sft',
      '--max-steps',
      '3',
      '--batch-size',
      '4',
      '--queue',
    ]);
    expect(queued.stderr).toContain('local queue');
    const runId = queued.stdout.trim();
    expect((await store.runs.get(runId))?.status).toBe('queued');

    const worker = await runCli(['worker', '--max-jobs', '1', '--poll-ms', '200'], env);
    expect(worker.code).toBe(0);
    expect(worker.stdout).toContain(`run ${runId} succeeded: registered cli-sft`);

    const list = await inProcess(['runs', 'list', '--project', 'cli']);
    expect(JSON.parse(list.stdout)).toContainEqual(
      expect.objectContaining({ run: runId, status: 'succeeded', step: '3/3', model: 'cli-sft' }),
    );
    const show = JSON.parse((await inProcess(['runs', 'show', runId, '--project', 'cli'])).stdout);
    expect(show).toMatchObject({ status: 'succeeded', model: 'cli-sft', progress: { step: 3, total: 3 } });
    const model = JSON.parse((await inProcess(['models', 'show', 'cli-sft', '--project', 'cli'])).stdout);
    expect(model).toMatchObject({
      stage: 'candidate',
      run: { id: runId, method: 'sft', status: 'succeeded', steps: 3 },
      dataset: { name: 'support', version: 1, method: 'sft' },
    });
  }, 180_000);

  it('shows a progress bar with ETA and cancels cleanly on Ctrl-C', async () => {
    const child = spawnCli(
      [
        'train',
        '--project',
        'cli',
        '--dataset',
        'support',
        '--method',
        'sft',
        '--base',
        base,
        '--max-steps',
        '3000',
        '--batch-size',
        '2',
      ],
      env,
    );
    let stderr = '';
    let stdout = '';
    child.stdout!.on('data', (d) => (stdout += d));
    const sawProgress = new Promise<void>((resolve) => {
      child.stderr!.on('data', (d) => {
        stderr += d;
        if (/train sft: \d+\/3000 \(.*eta \d+s\)/.test(stderr)) resolve();
      });
    });
    await sawProgress;
    child.kill('SIGINT');
    await exited(child);
    expect(child.exitCode).toBe(130);
    expect(stderr).toContain('cancelling');
    expect(stdout).toMatch(/run \S+ cancelled/);
    const [run] = await store.runs.list(projectId, { limit: 1 });
    expect(run).toMatchObject({ status: 'cancelled', method: 'sft' });
    expect(run!.progress.step as number).toBeLessThan(3000);
    const cancelAgain = await inProcess(['runs', 'cancel', run!.id, '--project', 'cli']);
    expect(cancelAgain.stdout).toBe(`run ${run!.id} cancelled`);
  }, 120_000);
});
