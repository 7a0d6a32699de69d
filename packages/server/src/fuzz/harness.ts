import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

/**
 * What exists after seeding, by the parameter it fits: the fuzzer draws those parameters from
 * these half the time, so reads and writes reach real rows, not only 404s.
 */
export interface Seeded {
  interactions: string[];
  /** `{ref}` of the dataset, model and experiment paths. */
  datasets: string[];
  models: string[];
  experiments: string[];
  routes: string[];
  /** The feedback token of each of `interactions`, in the same order (the public key needs one). */
  feedbackTokens: string[];
}

export interface FuzzTarget {
  server: TestServer;
  upstream: LocalUpstream;
  seeded: Seeded;
  /** Scratch folder: dataset versions and schemathesis's own files go here, nowhere else. */
  dir: string;
  close(): Promise<void>;
}

/**
 * A real server over `databaseUrl` with a gateway whose only upstream is a local test upstream
 * (so no call the fuzzer provokes leaves this machine: evaluations name upstreams of this config),
 * no rate limit (a 429 would hide what the fuzzer is looking for), and a project seeded with
 * interactions, ratings, a gateway call, a calibration, a dataset, a model, a database route and
 * an experiment, so reads answer with data and not only with empty lists.
 */
export async function startFuzzTarget(databaseUrl: string): Promise<FuzzTarget> {
  const dir = mkdtempSync(join(tmpdir(), 'ratchet-fuzz-'));
  const upstream = await startLocalUpstream({ record: false });
  const server = await startTestServer(databaseUrl, {
    // Errors (a 500's stack) are logged; nothing else.
    config: { rateLimitPerSecond: 0, dataDir: join(dir, 'data'), logLevel: 'error' },
    gateway: {
      upstreams: { local: { baseURL: upstream.url } },
      routes: { assistant: { variants: [{ name: 'a', upstream: 'local', model: 'tiny', weight: 1 }] } },
      defaultUpstream: 'local',
    },
  });
  const close = async () => {
    await server.close();
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  };
  const seeded = await seed(server).catch(async (err) => {
    await close();
    throw err;
  });
  return {
    server,
    upstream,
    seeded,
    dir,
    close,
  };
}

// biome-ignore lint/suspicious/noExplicitAny: seeding reads arbitrary JSON answers
async function must(t: TestServer, what: string, path: string, body: unknown, method = 'POST'): Promise<any> {
  const res = await t.call(path, { body, method });
  if (res.status >= 300) throw new Error(`seeding ${what}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function seed(t: TestServer): Promise<Seeded> {
  const seeded: Seeded = {
    interactions: [],
    datasets: ['seed-sft', 'seed-sft@1'],
    models: ['seed-model'],
    experiments: ['seed-exp'],
    routes: ['assistant'],
    feedbackTokens: [],
  };
  for (let i = 0; i < 6; i++) {
    const written = await must(t, 'an interaction', '/api/v1/interactions', {
      id: `seed-${i}`,
      model: 'tiny',
      route: 'assistant',
      messages: [{ role: 'user', content: `question ${i}` }],
      output: `answer ${i}`,
      userId: `u-${i % 3}`,
    });
    if (i < 3) {
      seeded.interactions.push(written.id);
      seeded.feedbackTokens.push(written.feedbackToken);
    }
    // Three raters agree, so the calibration is confident enough for a dataset to have rows.
    for (const rater of ['u-0', 'u-1', 'u-2'])
      await must(t, 'feedback', '/api/v1/feedback', {
        interactionId: `seed-${i}`,
        kind: 'thumbs',
        value: i < 4 ? 'up' : 'down',
        raterId: rater,
      });
  }
  await must(t, 'a gateway call', '/v1/chat/completions', {
    model: 'assistant',
    messages: [{ role: 'user', content: 'hello' }],
  });
  await must(t, 'a calibration', '/api/v1/calibrations', {});
  await must(t, 'a dataset', '/api/v1/datasets', {
    name: 'seed-sft',
    method: 'sft',
    options: { minReward: 0, minLower: -1 },
  });
  await must(t, 'a model', '/api/v1/models', { name: 'seed-model', baseModel: 'tiny', route: 'assistant' });
  const variant = { name: 'a', upstream: 'local', model: 'tiny', weight: 1 };
  await must(t, 'a route', '/api/v1/routes/assistant', { variants: [variant] }, 'PUT');
  await must(t, 'an experiment', '/api/v1/experiments', {
    name: 'seed-exp',
    route: 'assistant',
    control: 'a',
    variants: [
      { name: 'a', weight: 1, upstream: 'local', upstreamModel: 'tiny' },
      { name: 'b', weight: 1, upstream: 'local', upstreamModel: 'tiny' },
    ],
  });
  return seeded;
}
