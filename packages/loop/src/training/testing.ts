// Test helpers for suites that train or serve for real: the tiny model (built once and cached
// under .cache/, like worker/tests/conftest.py does with RATCHET_WORKER_TEST_CACHE) and a project
// whose rated interactions become a small dataset version.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FeedbackInput as FeedbackSchema, InteractionInput, parseInput } from '@ratchet/core';
import type { DatasetVersion, Store } from '@ratchet/store';
import { calibrateProject } from '../calibrate.js';
import { buildDatasetVersion, type DatasetMethod } from '../datasets.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../../../..');
export const workerBin = join(repoRoot, '.venv/bin/ratchet-worker');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The `test` preset of the tiny model, built on first use into `.cache/ts-tests/tiny-test`
 * (`RATCHET_TS_TEST_CACHE` moves it). Test files run in parallel, so one builds while the others
 * wait on a lock folder.
 */
export async function tinyTestModel(): Promise<string> {
  const root = process.env.RATCHET_TS_TEST_CACHE ?? join(repoRoot, '.cache/ts-tests');
  const model = join(root, 'tiny-test');
  const done = () => existsSync(join(model, 'ratchet-tiny.json'));
  if (done()) return model;
  mkdirSync(root, { recursive: true });
  const lock = `${model}.lock`;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (done()) return model;
      // A lock older than 10 minutes belongs to a killed run.
      if (Date.now() - statSync(lock, { throwIfNoEntry: false })!.mtimeMs > 600_000)
        rmSync(lock, { recursive: true, force: true });
      await sleep(1000);
    }
  }
  try {
    if (!done())
      execFileSync(workerBin, ['tiny', '--preset', 'test', '--out', model], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    return model;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

const intents = [
  {
    q: 'Where is my order {n}?',
    good: 'Your order {n} has shipped and arrives within three days.',
    bad: 'I do not know.',
  },
  {
    q: 'How do I reset my password for account {n}?',
    good: 'Open settings, choose reset password, and follow the email link.',
    bad: 'Buy a new account.',
  },
  {
    q: 'Can I return item {n}?',
    good: 'Yes, you can return item {n} within thirty days for a full refund.',
    bad: 'No returns, ever.',
  },
];

/**
 * Puts rated interactions into a project (a good and a bad answer per prompt, rated by several
 * raters with stars), calibrates, and builds a dataset version of `method` from them.
 */
export async function ratedDatasetVersion(
  store: Store,
  projectId: string,
  options: { method?: DatasetMethod; name?: string; dataDir: string; prompts?: number },
): Promise<DatasetVersion> {
  const interactions = [];
  const feedback: ReturnType<typeof parseInput<typeof FeedbackSchema>>[] = [];
  const prompts = options.prompts ?? 24;
  for (let p = 0; p < prompts; p++) {
    const intent = intents[p % intents.length]!;
    const fill = (t: string) => t.replaceAll('{n}', String(1000 + p));
    for (const [kind, answer] of [
      ['good', intent.good],
      ['bad', intent.bad],
    ] as const) {
      const id = `p${p}-${kind}`;
      interactions.push(
        parseInput(InteractionInput, {
          id,
          model: 'tiny',
          messages: [{ role: 'user', content: fill(intent.q) }],
          output: fill(answer),
          createdAt: 1_000_000 + p * 10 + (kind === 'good' ? 0 : 1),
        }),
      );
      for (let r = 0; r < 4; r++) {
        const stars = kind === 'good' ? 4 + ((p + r) % 2) : 1 + ((p + r) % 2);
        feedback.push(
          parseInput(FeedbackSchema, {
            kind: 'stars',
            interactionId: id,
            raterId: `rater-${(p + r) % 6}`,
            value: stars,
          }),
        );
      }
    }
  }
  await store.interactions.insert(projectId, interactions);
  await store.feedback.insert(projectId, feedback);
  await calibrateProject(store, projectId);
  return buildDatasetVersion(
    store,
    projectId,
    {
      name: options.name ?? 'support',
      method: options.method ?? 'sft',
      options: { split: { by: 'prompt', testFraction: 0.2 } },
      // The templated answers are near-duplicates of each other by design; keep them all.
      curation: false,
    },
    { dataDir: options.dataDir },
  );
}

/**
 * A local OpenAI-compatible chat endpoint that answers each request with `reply(request)`: the
 * test double for an LLM judge, which would otherwise be a remote paid API. `start` resolves with
 * its base URL (`.../v1`); `calls` counts requests.
 */
export function chatDouble(
  reply: (request: { messages: { role: string; content: string }[]; temperature?: number }) => string,
) {
  let calls = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      calls++;
      const content = reply(JSON.parse(body));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ choices: [{ message: { role: 'assistant', content } }] }));
    });
  });
  return {
    calls: () => calls,
    start: () =>
      new Promise<string>((resolve) =>
        server.listen(0, '127.0.0.1', () =>
          resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`),
        ),
      ),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export { vllmDouble } from '../deploy/vllm/test-double.js';
