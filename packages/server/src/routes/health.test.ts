import { SeededRandom } from '@ratchet/core';
import { LATENCY_BIN_EDGES, latencyBin } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';

const hour = 3_600_000;
/** The window's end: noon UTC, so the three hours before it are one day. */
const to = Date.UTC(2026, 10, 20, 12);
const models = [
  { route: 'support', model: 'sup-a' },
  { route: 'support', model: 'sup-b' },
  { route: 'billing', model: 'bill-a' },
];

interface Call {
  id: string;
  route: string;
  model: string;
  createdAt: number;
  status: 'ok' | 'error' | 'aborted';
  latencyMs: number;
  inputTokens: number;
  outputTokens: number;
}

/** Calls of each model in each of the three hours before `to`, with random outcomes. */
function plantCalls(rng: SeededRandom): Call[] {
  const calls: Call[] = [];
  for (const m of models)
    for (let h = 3; h >= 1; h--) {
      const n = 5 + rng.int(40);
      for (let i = 0; i < n; i++) {
        const u = rng.uniform();
        calls.push({
          id: `${m.model}-${h}-${i}`,
          ...m,
          createdAt: to - h * hour + rng.int(hour),
          status: u < 0.15 ? 'error' : u < 0.2 ? 'aborted' : 'ok',
          // Whole milliseconds: latency is a 4-byte float on PostgreSQL.
          latencyMs: 20 + rng.int(2000),
          inputTokens: 1 + rng.int(300),
          outputTokens: rng.int(200),
        });
      }
    }
  return calls;
}

/** What a bucket should say, computed here from the planted calls and the final thumbs. */
function expected(calls: Call[], thumbs: Map<string, Map<string, 'up' | 'down'>>) {
  // Nearest rank, reported as the upper edge of its latency-histogram bin (the rollups' resolution).
  const rank = (sorted: number[], q: number) =>
    LATENCY_BIN_EDGES[latencyBin(sorted[Math.ceil(q * sorted.length) - 1]!)]!;
  const answered = calls
    .filter((c) => c.status === 'ok')
    .map((c) => c.latencyMs)
    .sort((a, b) => a - b);
  const votes = calls.flatMap((c) => [...(thumbs.get(c.id)?.values() ?? [])]);
  const up = votes.filter((v) => v === 'up').length;
  const errors = calls.filter((c) => c.status === 'error').length;
  return {
    calls: calls.length,
    errors,
    errorRate: errors / calls.length,
    inputTokens: calls.reduce((s, c) => s + c.inputTokens, 0),
    outputTokens: calls.reduce((s, c) => s + c.outputTokens, 0),
    latencyP50Ms: answered.length ? rank(answered, 0.5) : null,
    latencyP95Ms: answered.length ? rank(answered, 0.95) : null,
    thumbsUp: up,
    thumbsDown: votes.length - up,
    satisfaction: votes.length ? up / votes.length : null,
  };
}

/**
 * Each model version's production health over time (`GET /api/v1/dashboard/health`, store
 * `dashboard.modelHealth`), on both databases: calls of three models on two routes across three
 * hours with random latencies, statuses, tokens and thumbs (some changed later by the same rater,
 * which replaces the first); every hour's calls, error rate, tokens, latency p50/p95 and
 * thumbs-up share equal what this test computes from the planted rows; day buckets add up the
 * same way; bad parameters are refused with the parameter named.
 */
for (const database of testDatabases()) {
  describe(`production health per model over time (${database.name})`, () => {
    let t: TestServer;
    const calls = plantCalls(new SeededRandom(13));
    /** interaction -> rater -> the thumbs that counts (the last one). */
    const thumbs = new Map<string, Map<string, 'up' | 'down'>>();

    beforeAll(async () => {
      t = await startTestServer(await database.create());
      const outside = [
        { ...calls[0]!, id: 'too-early', createdAt: to - 8 * 24 * hour },
        { ...calls[0]!, id: 'at-the-end', createdAt: to },
      ];
      const items = [...calls, ...outside].map((c) => ({
        id: c.id,
        route: c.route,
        model: c.model,
        createdAt: c.createdAt,
        status: c.status,
        latencyMs: c.latencyMs,
        usage: { inputTokens: c.inputTokens, outputTokens: c.outputTokens },
        messages: [{ role: 'user', content: 'hi' }],
        output: 'hello',
      }));
      expect((await t.call('/api/v1/interactions', { body: { items } })).status).toBe(201);
      const rng = new SeededRandom(31);
      const rate = async (round: { interactionId: string; raterId: string; value: 'up' | 'down' }[]) => {
        for (const r of round) {
          const byRater = thumbs.get(r.interactionId) ?? new Map();
          byRater.set(r.raterId, r.value);
          thumbs.set(r.interactionId, byRater);
        }
        const body = { items: round.map((r) => ({ kind: 'thumbs', ...r })) };
        expect((await t.call('/api/v1/feedback', { body })).status).toBe(201);
      };
      const first = calls
        .filter(() => rng.bernoulli(0.6))
        .flatMap((c) =>
          ['alice', 'bob']
            .filter(() => rng.bernoulli(0.7))
            .map(
              (raterId) =>
                ({ interactionId: c.id, raterId, value: rng.bernoulli(0.6) ? 'up' : 'down' }) as const,
            ),
        );
      await rate(first);
      // Some raters change their minds: the later thumbs is the one that counts.
      await rate(
        first
          .filter(() => rng.bernoulli(0.2))
          .map((r) => ({ ...r, value: r.value === 'up' ? ('down' as const) : ('up' as const) })),
      );
      // Thumbs on the calls outside the window must not count anywhere.
      await rate(outside.map((c) => ({ interactionId: c.id, raterId: 'alice', value: 'down' as const })));
      for (const name of ['sup-a', 'sup-b'])
        expect(
          (await t.call('/api/v1/models', { body: { name, route: 'support', baseModel: 'tiny' } })).status,
        ).toBe(201);
      // Canary: a stage that needs no upstream to serve it (this server has no gateway).
      const staged = await t.call('/api/v1/models/sup-b/stage', {
        body: { stage: 'canary', reason: 'test' },
      });
      expect(staged.status).toBe(200);
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await database.cleanup();
    });

    it('per hour: calls, error rate, tokens, latency p50/p95 and satisfaction of each model', async () => {
      const res = await t.call(`/api/v1/dashboard/health?window=24h&bucket=hour&to=${to}`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        window: '24h',
        bucket: 'hour',
        bucketMs: hour,
        from: to - 24 * hour,
        to,
      });
      expect(res.body.items.map((s: { route: string; model: string }) => `${s.route}/${s.model}`)).toEqual([
        'billing/bill-a',
        'support/sup-a',
        'support/sup-b',
      ]);
      let checked = 0;
      for (const series of res.body.items) {
        const mine = calls.filter((c) => c.model === series.model);
        const hours = [...new Set(mine.map((c) => Math.floor(c.createdAt / hour) * hour))].sort();
        expect(series.buckets.map((b: { t: number }) => b.t)).toEqual(hours);
        for (const b of series.buckets) {
          const want = expected(
            mine.filter((c) => Math.floor(c.createdAt / hour) * hour === b.t),
            thumbs,
          );
          const { errorRate, satisfaction, ...exact } = want;
          expect(b).toMatchObject(exact);
          expect(b.errorRate).toBeCloseTo(errorRate, 12);
          if (satisfaction === null) expect(b.satisfaction).toBeNull();
          else expect(b.satisfaction).toBeCloseTo(satisfaction, 12);
          checked++;
        }
      }
      expect(checked).toBe(9);
      // The registry's word on each series: sup-b is a canary, bill-a was never registered.
      const stage = (m: string) => res.body.items.find((s: { model: string }) => s.model === m).stage;
      expect([stage('sup-a'), stage('sup-b'), stage('bill-a')]).toEqual(['candidate', 'canary', null]);
    });

    it('per day, for one route: the hours add up to one bucket', async () => {
      const res = await t.call(`/api/v1/dashboard/health?window=7d&bucket=day&route=support&to=${to}`);
      expect(res.status).toBe(200);
      expect(res.body.items.map((s: { model: string }) => s.model)).toEqual(['sup-a', 'sup-b']);
      for (const series of res.body.items) {
        const want = expected(
          calls.filter((c) => c.model === series.model),
          thumbs,
        );
        expect(series.buckets).toHaveLength(1);
        expect(series.buckets[0]).toMatchObject({ ...want, t: Math.floor(to / (24 * hour)) * 24 * hour });
      }
      const one = await t.call(`/api/v1/dashboard/health?window=7d&bucket=day&model=bill-a&to=${to}`);
      expect(one.body.items.map((s: { model: string }) => s.model)).toEqual(['bill-a']);
      // A window that ends before the calls has none.
      expect((await t.call(`/api/v1/dashboard/health?window=24h&to=${to - 5 * hour}`)).body.items).toEqual(
        [],
      );
    });

    it('bad parameters are refused with the parameter named', async () => {
      for (const [query, path] of [
        ['window=1y', 'window'],
        ['bucket=week', 'bucket'],
        ['bucket=hour&window=90d', 'bucket'],
        ['to=yesterday', 'to'],
        ['to=-5', 'to'],
        ['route=', 'route'],
      ] as const) {
        const res = await t.call(`/api/v1/dashboard/health?${query}`);
        expect(res.status, query).toBe(400);
        expect(res.body.error.path, query).toBe(path);
      }
      expect((await t.call('/api/v1/dashboard/health?window=90d&bucket=day')).status).toBe(200);
    });

    it("a rating received weeks after its call moves the figure of the call's hour, not of the rating's", async () => {
      const read = async () =>
        (await t.call(`/api/v1/dashboard/health?window=24h&bucket=hour&to=${to}`)).body.items as {
          model: string;
          buckets: { t: number; satisfaction: number | null }[];
        }[];
      // The figures are read (and rolled up) first: what follows must mark the call's hour stale.
      const before = await read();
      const call = calls.find((c) => c.model === 'sup-a')!;
      const callHour = Math.floor(call.createdAt / hour) * hour;
      const body = { items: [{ kind: 'thumbs', interactionId: call.id, raterId: 'carol', value: 'down' }] };
      expect((await t.call('/api/v1/feedback', { body })).status).toBe(201);
      thumbs.set(call.id, new Map([...(thumbs.get(call.id) ?? []), ['carol', 'down']]));
      const after = await read();
      const bucket = (items: typeof before) =>
        items.find((s) => s.model === 'sup-a')!.buckets.find((b) => b.t === callHour)!;
      const want = expected(
        calls.filter((c) => c.model === 'sup-a' && Math.floor(c.createdAt / hour) * hour === callHour),
        thumbs,
      ).satisfaction!;
      expect(bucket(after).satisfaction).toBeCloseTo(want, 12);
      expect(bucket(after).satisfaction).not.toBeCloseTo(bucket(before).satisfaction!, 12);
      // The other hours are as they were.
      for (const s of after)
        for (const b of s.buckets)
          if (!(s.model === 'sup-a' && b.t === callHour))
            expect(b).toEqual(before.find((x) => x.model === s.model)!.buckets.find((x) => x.t === b.t));
    });
  });
}
