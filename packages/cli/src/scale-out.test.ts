import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ratedDatasetVersion } from '@ratchet/loop/testing';
import { type LocalUpstream, startLocalUpstream } from '@ratchet/server/testing';
import { Store } from '@ratchet/store';
import { postgresTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exited, freePort, spawnCli } from './test-utils/process.js';

const adminUrl = process.env.RATCHET_TEST_POSTGRES_URL;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Served {
  child: ChildProcess;
  url: string;
  output: () => string;
}

/** Starts `ratchet serve` as a child process and waits until /healthz answers. */
async function serve(args: string[], env: NodeJS.ProcessEnv): Promise<Served> {
  const port = await freePort();
  const child = spawnCli(['serve', '--port', String(port), ...args], env);
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`ratchet serve exited early: ${output}`);
    if (
      await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return { child, url, output: () => output };
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`ratchet serve did not become healthy: ${output}`);
}

async function stopAll(servers: (Served | undefined)[]): Promise<void> {
  for (const s of servers) {
    if (!s) continue;
    s.child.kill('SIGTERM');
    await exited(s.child);
  }
}

/**
 * Several `ratchet serve` processes on one PostgreSQL (issue 17): a route change made through
 * one is served by the other within a second, a key's rate limit holds across both, and a loop
 * round killed with its server is taken over by the other, resumed, and never run twice.
 */
describe.skipIf(!adminUrl)('two ratchet serve processes on one PostgreSQL', () => {
  const db = postgresTestDatabase(adminUrl ?? '');
  const dir = mkdtempSync(join(tmpdir(), 'ratchet-scale-out-'));
  let url: string;
  let store: Store;
  let projectId: string;
  let upstream: LocalUpstream;
  let gatewayFile: string;
  const keys: string[] = [];

  beforeAll(async () => {
    url = await db.create();
    store = await Store.open(url);
    projectId = (await store.projects.create('app')).id;
    for (let i = 0; i < 2; i++)
      keys.push((await store.projects.createKey(projectId, 'secret', `k${i}`, 'test')).key);
    // The upstream answers with the model it was asked for: the answer says who served it.
    upstream = await startLocalUpstream({
      answer: (body) => `served by ${String(body.model)}`,
      record: false,
    });
    gatewayFile = join(dir, 'gateway.json');
    writeFileSync(
      gatewayFile,
      JSON.stringify({ upstreams: { worker: { baseURL: upstream.url } }, defaultUpstream: 'worker' }),
    );
    for (const name of ['support-a', 'support-b'])
      await store.models.register(projectId, { name, route: 'support-bot', baseModel: 'tiny' }, 'test');
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    await upstream?.close();
    await db.cleanup();
  });

  const call = (server: Served, key: string, path: string, body?: unknown) =>
    fetch(`${server.url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  it('a route change through one is served by the other within a second; a key limit holds across both', async () => {
    // Windows of burst / perSecond = 10 s allowing 100 calls each.
    const env = {
      RATCHET_DATABASE_URL: url,
      RATCHET_RATE_LIMIT_PER_SECOND: '10',
      RATCHET_RATE_LIMIT_BURST: '100',
    };
    const [a, b] = await Promise.all([
      serve(['--gateway-config', gatewayFile], env),
      serve(['--gateway-config', gatewayFile], env),
    ]);
    try {
      const answer = async (server: Served) => {
        const res = await call(server, keys[0]!, '/v1/chat/completions', {
          model: 'support-bot',
          user: 'scale-out-user',
          messages: [{ role: 'user', content: 'Where is my refund?' }],
        });
        expect(res.status).toBe(200);
        return ((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message
          .content;
      };
      for (const model of ['support-a', 'support-b']) {
        const res = await call(a, keys[0]!, `/api/v1/models/${model}/stage`, {
          stage: 'production',
          reason: 'scale-out test',
        });
        expect(res.status).toBe(200);
        const since = Date.now();
        while ((await answer(b)) !== `served by ${model}` && Date.now() - since < 3000) await sleep(50);
        expect(Date.now() - since).toBeLessThan(1000);
        expect(await answer(b)).toBe(`served by ${model}`);
      }

      // The limit counts the key on both servers: 100 calls in a window, however they are spread.
      // Each server alone would let its own 80 through (its in-process burst is 100).
      const windowMs = 10_000;
      await sleep(windowMs - (Date.now() % windowMs) + 50);
      const started = Date.now();
      const statuses = await Promise.all(
        Array.from({ length: 160 }, (_, i) =>
          call(i % 2 ? a : b, keys[1]!, '/api/v1/interactions?limit=1').then((r) => r.status),
        ),
      );
      expect(Date.now() - started).toBeLessThan(windowMs - 100);
      expect(statuses.filter((s) => s === 200)).toHaveLength(100);
      expect(statuses.filter((s) => s === 429)).toHaveLength(60);
    } finally {
      await stopAll([a, b]);
    }
  }, 180_000);

  it('a round whose server is killed is taken over by the other, from the stage it reached, and run once', async () => {
    await ratedDatasetVersion(store, projectId, { dataDir: join(dir, 'seed'), prompts: 6 });
    if (!(await store.models.production(projectId, 'support-bot')))
      await store.models.setStage(projectId, 'support-a', 'production', 'test', 'baseline', {
        upstreams: ['worker'],
        routeUpstreams: {},
        defaultUpstream: 'worker',
      });
    // A folder is all a base model must be before training starts; the stand-in worker reads none.
    const base = join(dir, 'base-model');
    mkdirSync(base);
    const policy = join(dir, 'loop.yaml');
    writeFileSync(
      policy,
      [
        'policies:',
        '  - route: support-bot',
        `    baseModel: ${base}`,
        '    trigger: { minNewFeedback: 10, checkEveryMinutes: 0.02 }',
        '    dataset: { curation: false }',
        '    rewardModel: { enabled: false }',
        '',
      ].join('\n'),
    );
    // Stands in for ratchet-worker (a real training would take minutes here): the first attempt
    // trains "forever" (until its server dies), every later one fails at once, saying so.
    const mark = join(dir, 'first-attempt');
    const worker = join(dir, 'worker.sh');
    writeFileSync(
      worker,
      `#!/bin/sh
if mkdir "${mark}" 2>/dev/null; then
  while kill -0 $PPID 2>/dev/null; do sleep 0.2; done
  exit 1
fi
echo '{"type":"error","message":"stand-in worker: the second attempt stops here"}'
exit 3
`,
    );
    chmodSync(worker, 0o755);
    const env = {
      RATCHET_DATABASE_URL: url,
      RATCHET_LOOP_LEASE_SECONDS: '3',
      RATCHET_WORKER_BIN: worker,
      RATCHET_DATA_DIR: join(dir, 'data'),
      RATCHET_LOG_LEVEL: 'info',
    };
    const args = ['--gateway-config', gatewayFile, '--loop-policy', policy, '--loop-project', 'app'];
    const servers = await Promise.all([serve(args, env), serve(args, env)]);
    let survivor: Served | undefined;
    try {
      // Whichever server took the round is training (the stand-in started) while the other waits.
      const deadline = Date.now() + 90_000;
      const failed = async () => (await store.loops.list(projectId))[0]?.status === 'failed';
      while (!existsSync(mark) && Date.now() < deadline && !(await failed())) await sleep(200);
      if (!existsSync(mark)) throw new Error(servers.map((s) => s.output()).join('\n---\n'));
      const lease = await store.leases.get(projectId, 'support-bot');
      const holderPid = Number(lease!.holder.split(':')[1]);
      const holder = servers.find((s) => s.child.pid === holderPid)!;
      survivor = servers.find((s) => s !== holder)!;
      expect(holder).toBeDefined();
      await sleep(500);
      expect(survivor.output()).toContain("another server is running this route's round");
      const [running] = await store.loops.list(projectId, { route: 'support-bot' });
      expect(running).toMatchObject({ round: 1, stage: 'train', status: 'running' });

      holder.child.kill('SIGKILL');
      await exited(holder.child);
      // The survivor takes the lease once it expires, resumes round 1 at train, waits out the dead
      // server's training run (stale after 30 s) and claims it again: the round ends there.
      const until = Date.now() + 120_000;
      let round = running!;
      while (round.status === 'running' && Date.now() < until) {
        await sleep(500);
        round = (await store.loops.get(projectId, round.id))!;
      }
      expect(survivor.output()).toMatch(/support-bot: round 1 resumes at train/);
      expect(round).toMatchObject({ round: 1, status: 'failed' });
      expect(round.error).toContain('stand-in worker: the second attempt stops here');
      // One round, each stage entered once, one training run (claimed twice), no second model run.
      expect(await store.loops.list(projectId, { route: 'support-bot' })).toHaveLength(1);
      const moves = (await store.audit.list(projectId, { subjectType: 'loop_round', limit: 100 }))
        .map((e) => e.action)
        .sort();
      expect(moves).toEqual([
        'loop.round.failed',
        'loop.round.start',
        'loop.stage.build',
        'loop.stage.calibrate',
      ]);
      const runs = await store.runs.list(projectId, { limit: 10 });
      expect(runs).toHaveLength(1);
      expect(runs[0]).toMatchObject({ attempts: 2 });
    } finally {
      await stopAll(servers);
    }
  }, 300_000);
});
