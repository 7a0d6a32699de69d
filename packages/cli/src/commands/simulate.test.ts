import { composeAnswer, createPopulation, intentOf, SeededRandom } from '@ratchet/core';
import {
  type LocalUpstream,
  startLocalUpstream,
  startTestServer,
  type TestServer,
} from '@ratchet/server/testing';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDemoDomain, planChats, simulateTraffic } from '../demo/traffic.js';
import { runCli } from '../test-utils/process.js';

const domain = loadDemoDomain();

describe('simulated users through the gateway (ratchet simulate)', () => {
  const db = sqliteTestDatabase();
  let upstream: LocalUpstream;
  let t: TestServer;

  beforeAll(async () => {
    const rng = new SeededRandom(5);
    // Two real models behind one route: one always answers well, the other wrong and curt.
    upstream = await startLocalUpstream({
      record: false,
      answer: (body) => {
        const messages = body.messages as { content: string }[];
        const intent = intentOf(domain, messages.at(-1)!.content)!;
        const good = body.model === 'good-model';
        return composeAnswer(domain, rng, intent, { correct: good, polite: good, concise: true, safe: true });
      },
    });
    t = await startTestServer(await db.create(), {
      gateway: {
        upstreams: { local: { baseURL: upstream.url } },
        routes: {
          'support-bot': {
            variants: [
              { name: 'good', upstream: 'local', model: 'good-model', weight: 50 },
              { name: 'bad', upstream: 'local', model: 'bad-model', weight: 50 },
            ],
          },
        },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await upstream?.close();
    await db.cleanup();
  });

  it('chats and rates like people would: ratings track the truth per variant, every event is stored', async () => {
    const population = createPopulation({ size: 300, seed: 2, adversarialShare: 0.1 });
    let progress = 0;
    const report = await simulateTraffic({
      baseUrl: t.url,
      apiKey: t.secretKey,
      route: 'support-bot',
      domain,
      population,
      chats: 300,
      seed: 4,
      concurrency: 4,
      onProgress: (done) => {
        progress = done;
      },
    });
    expect(report.errors).toBe(0);
    expect(progress).toBe(300);
    const { good, bad } = report.variants;
    expect(good!.chats + bad!.chats).toBe(300);
    expect(good!.trueQuality).toBe(1);
    expect(bad!.trueQuality).toBe(0);
    // Observed thumbs are noisy and partly adversarial, but follow the truth.
    expect(good!.thumbsUp / (good!.thumbsUp + good!.thumbsDown)).toBeGreaterThan(0.7);
    expect(bad!.thumbsUp / (bad!.thumbsUp + bad!.thumbsDown)).toBeLessThan(0.3);

    // Everything sent is stored, on interactions of the variant the person was kept on.
    const rows = await t.store.db
      .selectFrom('feedback as f')
      .innerJoin('interactions as i', (j) =>
        j.onRef('i.project_id', '=', 'f.project_id').onRef('i.id', '=', 'f.interaction_id'),
      )
      .select(['f.rater_id', 'f.kind', 'i.variant', 'i.user_id'])
      .where('f.project_id', '=', t.projectId)
      .execute();
    expect(rows).toHaveLength(report.feedbackEvents);
    const variantOf = new Map<string, string>();
    for (const r of rows) {
      const user = r.user_id!;
      expect(variantOf.get(user) ?? r.variant).toBe(r.variant);
      variantOf.set(user, r.variant!);
    }
    expect(new Set(rows.map((r) => r.kind))).toContain('thumbs');
  });

  it('runs from the CLI and prints the report', async () => {
    const { code, stdout, stderr } = await runCli([
      'simulate',
      '--url',
      t.url,
      '--key',
      t.secretKey,
      '--chats',
      '40',
      '--seed',
      '9',
      '--json',
    ]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.chats).toBe(40);
    expect(Object.keys(report.variants).sort()).toEqual(['bad', 'good']);
  });
});

describe('simulated users are reproducible from their seed alone', () => {
  const db = sqliteTestDatabase();
  let upstream: LocalUpstream;
  let t: TestServer;

  beforeAll(async () => {
    // A sampling model: each answer is drawn from the request's `seed` (as the worker samples),
    // so an unseeded request would be answered differently every time.
    upstream = await startLocalUpstream({
      answer: (body) => {
        const messages = body.messages as { content: string }[];
        const intent = intentOf(domain, messages.at(-1)!.content)!;
        const rng = new SeededRandom(typeof body.seed === 'number' ? body.seed : Date.now() + Math.random());
        const q = () => rng.bernoulli(0.5);
        return composeAnswer(domain, rng, intent, { correct: q(), polite: q(), concise: q(), safe: true });
      },
    });
    t = await startTestServer(await db.create(), {
      gateway: {
        upstreams: { local: { baseURL: upstream.url } },
        routes: { 'support-bot': { variants: [{ name: 'only', upstream: 'local', model: 'm', weight: 1 }] } },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await upstream?.close();
    await db.cleanup();
  });

  it('gives the same people, prompts, answer seeds and ratings on two runs of one seed, others on another', async () => {
    const population = createPopulation({ size: 100, seed: 3 });
    const run = async (seed: number) => {
      upstream.requests.length = 0;
      const report = await simulateTraffic({
        baseUrl: t.url,
        apiKey: t.secretKey,
        route: 'support-bot',
        domain,
        population,
        chats: 60,
        seed,
        concurrency: 6,
      });
      // Concurrent calls arrive in any order: compare what was asked, sorted.
      const asked = upstream.requests
        .map((b) => `${b.user} ${b.seed} ${(b.messages as { content: string }[]).at(-1)!.content}`)
        .sort();
      return { asked, seeds: upstream.requests.map((b) => b.seed), report };
    };
    const first = await run(11);
    const again = await run(11);
    const other = await run(12);
    expect(first.seeds.every((s) => Number.isInteger(s))).toBe(true);
    expect(new Set(first.seeds).size).toBe(60);
    expect(again.asked).toEqual(first.asked);
    expect(again.report.variants).toEqual(first.report.variants);
    expect(other.asked).not.toEqual(first.asked);
    expect(planChats({ chats: 5, seed: 11, population, domain })).toEqual(
      planChats({ chats: 5, seed: 11, population, domain }),
    );
  });
});
