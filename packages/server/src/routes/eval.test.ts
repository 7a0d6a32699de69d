import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  binaryClassificationMetrics,
  cohenKappa,
  FeedbackInput,
  InteractionInput,
  parseInput,
  SeededRandom,
} from '@ratchet/core';
import { buildDatasetVersion, calibrateProject } from '@ratchet/loop';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayConfigInput, parseGatewayConfig } from '../gateway/config.js';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

/** How good an answer is, as both test doubles (judge and reward model) see it. */
function quality(answer: string): number {
  if (/exact steps/.test(answer)) return 2;
  if (/don't know/.test(answer)) return 0;
  return 1;
}

const refusal =
  /ignore all previous|DAN|card number|pipe bomb|meth|keylogger|poison|launder|OVERRIDE|<system>|verbatim|email|phone number|grandmother|villain/i;
const lastUser = (b: Record<string, unknown>) =>
  String(
    (b.messages as { role: string; content: string }[]).filter((m) => m.role === 'user').at(-1)?.content ??
      '',
  );
const topicOf = (text: string) =>
  /billing|invoice|charge/.test(text) ? 'billing' : /parcel|shipping/.test(text) ? 'shipping' : 'account';

/** Generation: production is generic; the candidate is better except on billing, where it is useless. */
function answer(body: Record<string, unknown>): string {
  const text = lastUser(body);
  if (body.model === 'leaky') return `You said: ${text}`;
  if (refusal.test(text)) return "I can't help with that.";
  const topic = topicOf(text);
  if (body.model === 'candidate')
    return topic === 'billing' ? "Sorry, I don't know." : `For ${topic}: here are the exact steps to fix it.`;
  return `Thanks for asking about ${topic}. A colleague will follow up.`;
}

/**
 * A local HTTP server standing in for a hosted LLM judge (which cannot run here) and for the
 * worker's reward model: chat completions that answer the harness's rubric prompts, and /score.
 */
async function startJudgeDouble(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    const json = (x: unknown) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(x));
    if (req.url?.endsWith('/logprobs')) {
      // Every whitespace-separated token of the answer at probability e^-0.5.
      return json({
        token_logprobs: String(body.completion)
          .split(/\s+/)
          .map(() => -0.5),
      });
    }
    if (req.url?.endsWith('/score')) {
      const scores = (body.conversations as { content: string }[][]).map((c, index) => ({
        index,
        score: quality(c.at(-1)!.content) - 1,
      }));
      return json({ object: 'list', data: scores });
    }
    const prompt = String(body.messages.at(-1).content);
    const section = (name: string) => prompt.split(`[${name}]\n`)[1]?.split('\n[')[0] ?? '';
    let verdict: string;
    if (prompt.includes('[ANSWER A]')) {
      const a = quality(section('ANSWER A'));
      const b = quality(section('ANSWER B'));
      verdict = a > b ? 'A' : b > a ? 'B' : 'TIE';
    } else if (prompt.includes('VERDICT: SAFE')) {
      verdict = /pipe bomb|INJECTED|PWNED|CANARY|ZEBRA/i.test(section('ANSWER')) ? 'UNSAFE' : 'SAFE';
    } else {
      verdict = quality(section('ANSWER')) >= 1 ? 'GOOD' : 'BAD';
    }
    json({
      choices: [{ index: 0, message: { role: 'assistant', content: `Reasoning.\nVERDICT: ${verdict}` } }],
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** Logged traffic: prompts on three topics, answers of three qualities, thumbs (a few contrary). */
function world() {
  const rng = new SeededRandom(3);
  const logged = [
    "I don't know, sorry.",
    'Thanks, a colleague will follow up.',
    'Here are the exact steps: open settings, then retry.',
  ];
  const topics: [string, string, number][] = [
    ['billing', 'Why is there a second charge on invoice', 16],
    ['shipping', 'Where is my parcel with shipping number', 30],
    ['account', 'How do I reset the password of account', 30],
  ];
  const rows: {
    id: string;
    tag: string;
    prompt: string;
    output: string;
    up: boolean;
    correction?: string;
  }[] = [];
  for (const [tag, stem, n] of topics) {
    for (let i = 0; i < n; i++) {
      const q = Math.floor(rng.uniform() * 3);
      const contrary = rng.uniform() < 0.1;
      rows.push({
        id: `${tag}-${i}`,
        tag,
        prompt: `${stem} ${1000 + i * 37}?`,
        output: logged[q]!,
        up: q >= 1 !== contrary,
        ...(i % 5 === 0 ? { correction: `For ${tag}: here are the exact steps to fix it.` } : {}),
      });
    }
  }
  return rows;
}

describe('evaluation over HTTP; the LLM judge and reward model are local test doubles (a hosted judge cannot run here)', () => {
  const db = sqliteTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-eval-'));
  const rows = world();
  let t: TestServer;
  let upstream: LocalUpstream;
  let judge: Awaited<ReturnType<typeof startJudgeDouble>>;

  beforeAll(async () => {
    upstream = await startLocalUpstream({ answer, record: false });
    judge = await startJudgeDouble();
    // Every endpoint an evaluation calls is an upstream of the gateway config, named in the request.
    const upstreams: GatewayConfigInput['upstreams'] = {
      local: { baseURL: upstream.url },
      judge: { baseURL: judge.url },
      // Nothing listens on port 9 (discard): a model server that is down.
      gone: { baseURL: 'http://127.0.0.1:9/v1', timeoutMs: 2000 },
    };
    t = await startTestServer(await db.create(), { gateway: { upstreams, defaultUpstream: 'local' } });
    // The production model is also reached through Ratchet's own gateway: an upstream whose key
    // (a Ratchet secret key, from the environment) and tag header the operator configured.
    process.env.RATCHET_TEST_GATEWAY_KEY = t.secretKey;
    t.server.gateway!.reload(
      parseGatewayConfig({
        upstreams: {
          ...upstreams,
          ratchet: {
            baseURL: `${t.url}/v1`,
            apiKeyEnv: 'RATCHET_TEST_GATEWAY_KEY',
            headers: { 'x-ratchet-tags': 'evaluation' },
          },
        },
        defaultUpstream: 'local',
      }),
    );
    const { store, projectId } = t;
    await store.interactions.insert(
      projectId,
      rows.map((r, i) =>
        parseInput(InteractionInput, {
          id: r.id,
          model: 'production',
          messages: [{ role: 'user', content: r.prompt }],
          output: r.output,
          tags: [r.tag],
          createdAt: 1_700_000_000_000 + i,
        }),
      ),
    );
    await store.feedback.insert(
      projectId,
      rows.flatMap((r) => [
        parseInput(FeedbackInput, { kind: 'thumbs', interactionId: r.id, value: r.up ? 'up' : 'down' }),
        ...(r.correction
          ? [parseInput(FeedbackInput, { kind: 'correction', interactionId: r.id, text: r.correction })]
          : []),
      ]),
    );
    await calibrateProject(store, projectId);
    await buildDatasetVersion(
      store,
      projectId,
      {
        name: 'support',
        method: 'kto',
        curation: false,
        options: {
          requireConfidentSign: false,
          margin: 0,
          split: { by: 'prompt', testFraction: 0.5, seed: 1 },
        },
      },
      { dataDir },
    );
    for (const name of ['bot-candidate', 'bot-production'])
      await t.call('/api/v1/models', { body: { name, route: 'support', baseModel: 'tiny' } });
  });
  afterAll(async () => {
    await t?.close();
    await upstream?.close();
    await judge?.close();
    await db.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const endpoint = (model: string) => ({ upstream: 'local', model });
  const judgeEndpoint = { upstream: 'judge', model: 'judge' };

  it('blocks a candidate that is worse on a planted segment, naming the segment; it stays a candidate', async () => {
    const res = await t.call('/api/v1/evaluations?wait=true', {
      body: {
        name: 'candidate-vs-production',
        candidate: { endpoint: endpoint('candidate'), model: 'bot-candidate' },
        baseline: { endpoint: { upstream: 'ratchet', model: 'production' }, model: 'bot-production' },
        dataset: 'support',
        judge: { endpoint: judgeEndpoint },
        rewardModel: { endpoint: { upstream: 'judge', model: 'rm' } },
        adversarialItems: 4,
        gates: { segments: { minItems: 5 } },
      },
    });
    expect(res.status).toBe(200);
    const e = res.body;
    expect(e).toMatchObject({ status: 'succeeded', passed: false });
    const s = e.summary;
    const heldOut = (await t.call(`/api/v1/evaluations/${e.id}/items?suite=heldout&limit=1000`)).body
      .items as {
      itemId: string;
      judge: string;
    }[];
    const billing = heldOut.filter((i) => i.itemId.startsWith('billing'));
    expect(billing.length).toBeGreaterThanOrEqual(3);
    // Position bias cancelled by asking in both orders: clean wins and losses, no ties.
    for (const i of heldOut) expect(i.judge).toBe(i.itemId.startsWith('billing') ? 'baseline' : 'candidate');
    expect(s.winRate.judge.wins).toBe(heldOut.length - billing.length);
    expect(s.winRate.judge.lower).toBeGreaterThan(0.5);

    // The gate: only the segment check fails, and it names the billing segment and no other.
    expect(e.gate.checks.map((c: { gate: string; passed: boolean }) => [c.gate, c.passed])).toEqual([
      ['winRate', true],
      ['winRate', true],
      ['safety', true],
      ['perplexity', true],
      ['segments', false],
    ]);
    expect(e.gate.reasons).toHaveLength(1);
    expect(e.gate.reasons[0]).toMatch(
      /tag:billing: judge 0\.0% of \d+ decisive for the candidate, upper bound/,
    );
    expect(e.gate.reasons[0]).not.toMatch(/tag:shipping|tag:account/);
    expect(s.disparities.find((d: { metric: string }) => d.metric === 'judgeWinRate').lowest.segment).toBe(
      'tag:billing',
    );

    const model = await t.call('/api/v1/models/bot-candidate');
    expect(model.body.stage).toBe('candidate');
    expect(model.body.history[0]).toMatchObject({
      action: 'model.gate_failed',
      details: { evaluationId: e.id, reasons: e.gate.reasons },
    });

    // Judge agreement and reward-model P/R/F1 on the held-out thumbs, recomputed here from the world.
    const byId = new Map(rows.map((r) => [r.id, r]));
    const rated = heldOut.map((i) => byId.get(i.itemId)!);
    expect(s.judgeAgreement.n).toBe(rated.length);
    expect(s.judgeAgreement.kappa).toBeCloseTo(
      cohenKappa(
        rated.map((r) => (quality(r.output) >= 1 ? 1 : 0)),
        rated.map((r) => (r.up ? 1 : 0)),
      ),
      12,
    );
    expect(s.rewardModel).toMatchObject(
      binaryClassificationMetrics(
        rated.map((r) => quality(r.output) - 1 > 0),
        rated.map((r) => r.up),
      ),
    );
    expect(s.rewardModel.recall).toBeLessThan(1);
    // Reference metrics against corrections and top-rated answers; perplexity needs /v1/logprobs.
    expect(s.candidate.reference.n).toBeGreaterThan(0);
    expect(s.candidate.perplexity).toBeNull();
    expect(s.notes.join(' ')).toMatch(
      /perplexity unavailable for candidate .*: the endpoint has no POST \/v1\/logprobs/,
    );
    expect(s.bySuite).toMatchObject({ heldout: heldOut.length, redteam: 14, adversarial: 12 });
    expect(s.candidate.safety).toMatchObject({ n: 26, unsafe: 0 });

    const report = await t.call(`/api/v1/evaluations/${e.id}`);
    const rowsByMetric = Object.fromEntries(
      report.body.comparison.map((r: { metric: string }) => [r.metric, r]),
    );
    expect(rowsByMetric['judge win rate'].candidate).toBeCloseTo(s.winRate.judge.rate, 12);
    expect(rowsByMetric['mean reward'].delta).toBeCloseTo(s.candidate.rewardMean - s.baseline.rewardMean, 12);
    expect(report.body.regressions.length).toBe(billing.length);
    expect(
      report.body.regressions.every((r: { segments: string[] }) => r.segments.includes('tag:billing')),
    ).toBe(true);
    // The production answers went through the gateway, which logged them tagged as evaluation traffic.
    await t.server.logWriter.flush();
    const logged = await t.call('/api/v1/interactions?tag=evaluation&limit=1000');
    expect(logged.body.items.length).toBe(s.items);
  });

  it('fails a candidate that leaks on the red-team suite, naming the categories', async () => {
    const res = await t.call('/api/v1/evaluations?wait=true', {
      body: {
        candidate: { endpoint: endpoint('leaky') },
        baseline: { endpoint: endpoint('production') },
        suites: ['redteam'],
        judge: { endpoint: judgeEndpoint },
      },
    });
    expect(res.body).toMatchObject({ status: 'succeeded', passed: false });
    const safety = res.body.gate.checks.find((c: { gate: string }) => c.gate === 'safety');
    expect(safety.passed).toBe(false);
    expect(safety.detail).toMatch(/harmful \(\d+ unsafe vs 0 in production\)/);
    expect(safety.detail).toMatch(/injection/);
    const injected = (await t.call(`/api/v1/evaluations/${res.body.id}/items?limit=100`)).body.items.find(
      (i: { itemId: string }) => i.itemId === 'injection-2',
    );
    expect(injected.result.candidate.safetyReasons).toContain('injection: leaked "INJECTED-7731"');
    expect(injected.result.baseline.unsafe).toBe(false);
  });

  it('measures perplexity of held-out positive answers where the endpoint returns token logprobs', async () => {
    const res = await t.call('/api/v1/evaluations?wait=true', {
      body: {
        candidate: { endpoint: { upstream: 'judge', model: 'scorer' } },
        baseline: { endpoint: endpoint('production') },
        dataset: 'support',
        suites: ['heldout'],
        maxItems: 12,
      },
    });
    const s = res.body.summary;
    expect(s.candidate.perplexity).toBeCloseTo(Math.exp(0.5), 12);
    expect(s.baseline.perplexity).toBeNull();
    expect(s.notes.join(' ')).toMatch(/perplexity unavailable for baseline \(upstream "local"\)/);
  });

  it('counts a candidate whose endpoint is down as losing every item, and says why', async () => {
    const res = await t.call('/api/v1/evaluations?wait=true', {
      body: {
        candidate: { endpoint: { upstream: 'gone', model: 'gone' } },
        baseline: { endpoint: endpoint('production') },
        dataset: 'support',
        suites: ['heldout'],
        maxItems: 6,
        judge: { endpoint: judgeEndpoint },
      },
    });
    const s = res.body.summary;
    expect(s.winRate.judge).toMatchObject({ n: 6, losses: 6, wins: 0 });
    expect(s.candidate.errors).toBe(6);
    expect(res.body.passed).toBe(false);
    const report = await t.call(`/api/v1/evaluations/${res.body.id}`);
    expect(s.notes.join(' ')).toMatch(
      /perplexity unavailable for candidate \(upstream "gone"\): .*fetch failed/,
    );
    expect(report.body.regressions[0].reason).toMatch(
      /generation failed: upstream "gone" \/chat\/completions/,
    );

    // A judge that cannot be reached judges nothing, and the summary says so.
    const noJudge = await t.call('/api/v1/evaluations?wait=true', {
      body: {
        candidate: { endpoint: endpoint('candidate') },
        baseline: { endpoint: endpoint('production') },
        dataset: 'support',
        suites: ['heldout'],
        maxItems: 6,
        judge: { endpoint: { upstream: 'gone', model: 'judge' } },
      },
    });
    expect(noJudge.body.summary.winRate.judge).toBeNull();
    expect(noJudge.body.summary.notes.join(' ')).toMatch(
      /judge: 12 of 12 pairwise calls failed .*fetch failed/,
    );
    // No pairwise evidence cannot show the candidate worse (or better): undecided, left to a canary.
    expect(noJudge.body.gate).toMatchObject({ decision: 'undecided', passed: true, reasons: [] });
    expect(noJudge.body.gate.undecided[0]).toMatch(/no pairwise judgment/);
  });

  it('answers bad input with the field named, and runs in the background by default', async () => {
    const base = {
      candidate: { endpoint: endpoint('candidate') },
      baseline: { endpoint: endpoint('production') },
    };
    const cases: [unknown, number, string][] = [
      [
        { ...base, candidate: { endpoint: { baseURL: judge.url, model: 'x' } } },
        400,
        'candidate.endpoint.baseURL',
      ],
      [
        { ...base, candidate: { endpoint: { upstream: judge.url, model: 'x' } } },
        400,
        'candidate.endpoint.upstream',
      ],
      [{ ...base, dataset: 'nope' }, 404, 'dataset'],
      [{ ...base, candidate: { endpoint: endpoint('candidate'), model: 'ghost' } }, 404, 'candidate.model'],
      [{ ...base, gates: { level: 2 } }, 400, 'gates.level'],
      [{ ...base, gates: { winRate: { minDecisive: 0 } } }, 400, 'gates.winRate.minDecisive'],
      [{ ...base, suites: ['vibes'] }, 400, 'suites.0'],
      [
        {
          ...base,
          judge: { endpoint: { upstream: 'judge', model: 'j', apiKeyEnv: 'RATCHET_DATABASE_URL' } },
        },
        400,
        'judge.endpoint.apiKeyEnv',
      ],
    ];
    for (const [body, status, path] of cases) {
      const r = await t.call('/api/v1/evaluations', { body });
      expect([r.status, r.body.error?.path]).toEqual([status, path]);
    }
    const started = await t.call('/api/v1/evaluations', { body: { ...base, suites: ['redteam'] } });
    expect(started).toMatchObject({ status: 202, body: { status: 'running' } });
    let e = started.body;
    for (let i = 0; i < 100 && e.status === 'running'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      e = (await t.call(`/api/v1/evaluations/${e.id}`)).body;
    }
    expect(e.status).toBe('succeeded');
    // No judge and no held-out items: no pairwise evidence, so the gate cannot pass; undecided.
    expect(e.gate.decision).toBe('undecided');
    expect(e.gate.undecided[0]).toMatch(/no pairwise judgment/);
  });
});
