import { FeedbackInput, InteractionInput, parseInput, SeededRandom } from '@ratchet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelHealthSeries } from './dashboard.js';
import { RawDashboardFigures } from './dashboard-raw.js';
import { LATENCY_BIN_EDGES, latencyBin } from './latency-bins.js';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

const hour = 3_600_000;
const day = 24 * hour;
/** The planted window: three days ending at midnight UTC. */
const to = Date.UTC(2026, 10, 20);
const from = to - 3 * day;
const models = [
  { route: 'support', model: 'sup-a' },
  { route: 'support', model: 'sup-b' },
  { route: null, model: 'bare' },
];

/** Calls spread over the window with skewed latencies (fractions of a ms to seconds), statuses and tokens. */
function plant(rng: SeededRandom, prefix: string, n: number) {
  return Array.from({ length: n }, (_, i) => {
    const m = models[rng.int(models.length)]!;
    const u = rng.uniform();
    return parseInput(InteractionInput, {
      id: `${prefix}-${i}`,
      ...(m.route ? { route: m.route } : {}),
      model: m.model,
      createdAt: from + rng.int(3 * day),
      status: u < 0.1 ? 'error' : u < 0.15 ? 'aborted' : 'ok',
      ...(rng.bernoulli(0.9) ? { latencyMs: Math.round(Math.exp(rng.normal(5.5, 1.5)) * 4) / 4 } : {}),
      ...(rng.bernoulli(0.8) ? { usage: { inputTokens: rng.int(500), outputTokens: rng.int(300) } } : {}),
      userId: `user-${rng.int(5)}`,
      messages: [{ role: 'user', content: 'hi' }],
      output: 'hello',
    });
  });
}

/** The rollup's percentile is the upper edge of the bin holding the exact one, within max(1 ms, 5%). */
function expectWithinResolution(rolled: number | null, raw: number | null) {
  if (raw === null) return expect(rolled).toBeNull();
  expect(rolled).toBe(LATENCY_BIN_EDGES[latencyBin(raw)]);
  expect(rolled!).toBeGreaterThanOrEqual(raw);
  expect(rolled! - raw).toBeLessThanOrEqual(Math.max(1, 0.05 * raw));
}

function expectSameHealth(rolled: ModelHealthSeries[], raw: ModelHealthSeries[]) {
  const strip = (s: ModelHealthSeries[]) =>
    s.map((x) => ({
      ...x,
      buckets: x.buckets.map(({ latencyP50Ms: _a, latencyP95Ms: _b, ...b }) => b),
    }));
  expect(strip(rolled)).toEqual(strip(raw));
  rolled.forEach((s, i) => {
    s.buckets.forEach((b, j) => {
      const r = raw[i]!.buckets[j]!;
      expectWithinResolution(b.latencyP50Ms, r.latencyP50Ms);
      expectWithinResolution(b.latencyP95Ms, r.latencyP95Ms);
    });
  });
}

/**
 * The dashboard's rollups (rollups.ts) on both databases: on planted calls over three days with
 * skewed latencies, thumbs that raters later change, stars, feedback given hours after the call,
 * and deletions, every rollup-backed figure (health per model per hour and per day, activity per
 * day, satisfaction per model) equals the same figure computed from the raw rows, percentiles
 * within the histogram's resolution; figures follow writes made after a read; a rebuild from
 * scratch gives the same rows.
 */
for (const target of testDatabases()) {
  describe(`dashboard rollups on ${target.name}`, () => {
    let store: Store;
    let raw: RawDashboardFigures;
    let projectId: string;
    let url: string;
    const rng = new SeededRandom(17);

    // Whole days (read from the daily rows), and a window that starts and ends mid-day (its
    // partial first and last days read from the hourly rows); two-day buckets as well.
    const windows = [
      { from, to },
      { from: from + 5 * hour, to: to - 7 * hour },
    ];
    const compare = async () => {
      for (const bucketMs of [hour, day, 2 * day])
        for (const w of windows) {
          const q = { ...w, bucketMs };
          expectSameHealth(
            await store.dashboard.modelHealth(projectId, q),
            await raw.modelHealth(projectId, q),
          );
          const one = { ...q, route: 'support', model: 'sup-b' };
          expectSameHealth(
            await store.dashboard.modelHealth(projectId, one),
            await raw.modelHealth(projectId, one),
          );
        }
      for (const start of [from, from + 5 * hour])
        expect(await store.dashboard.activity(projectId, start, day)).toEqual(
          await raw.activity(projectId, start, day),
        );
      expect(await store.dashboard.satisfactionByModel(projectId)).toEqual(
        await raw.satisfactionByModel(projectId),
      );
    };

    const rate = async (ids: string[]) => {
      const items = ids.flatMap((id) =>
        ['alice', 'bob', 'carol']
          .filter(() => rng.bernoulli(0.5))
          .map((raterId) =>
            parseInput(
              FeedbackInput,
              rng.bernoulli(0.7)
                ? { kind: 'thumbs', interactionId: id, raterId, value: rng.bernoulli(0.6) ? 'up' : 'down' }
                : { kind: 'stars', interactionId: id, raterId, value: 1 + rng.int(5) },
            ),
          ),
      );
      // Feedback events carry their own time, hours after the call (its own hour in the activity).
      await store.feedback.insert(
        projectId,
        items.map((f) => ({ ...f, createdAt: from + rng.int(3 * day) })),
      );
    };

    beforeAll(async () => {
      url = await target.create();
      store = await Store.open(url);
      raw = new RawDashboardFigures(store.db);
      projectId = (await store.projects.create('acme')).id;
      // Another project's rows must not show up in this one's figures.
      const other = (await store.projects.create('globex')).id;
      await store.interactions.insert(other, plant(new SeededRandom(5), 'g', 50));
      const calls = plant(rng, 'a', 600);
      await store.interactions.insert(projectId, calls);
      await rate(calls.map((c) => c.id!));
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('equals the raw figures on planted calls and feedback', async () => {
      const health = await store.dashboard.modelHealth(projectId, { from, to, bucketMs: hour });
      expect(health.map((s) => [s.route, s.model])).toEqual([
        [null, 'bare'],
        ['support', 'sup-a'],
        ['support', 'sup-b'],
      ]);
      expect(health.flatMap((s) => s.buckets).reduce((n, b) => n + b.calls, 0)).toBe(600);
      await compare();
    });

    it('follows writes after a read: new calls, changed ratings, deletions', async () => {
      const more = plant(rng, 'b', 200);
      await store.interactions.insert(projectId, more);
      // Everyone rates again: each rater's newer thumbs replaces the older one.
      await rate([...more.map((c) => c.id!), ...Array.from({ length: 300 }, (_, i) => `a-${i}`)]);
      await store.deletion.delete(projectId, { kind: 'interactions', ids: ['a-1', 'a-2', 'b-7'] }, 'test');
      await store.deletion.delete(projectId, { kind: 'end_user', userId: 'user-3' }, 'test');
      await compare();
      const [before] = await store.dashboard.satisfactionByModel(projectId);
      expect(before!.up + before!.down).toBeGreaterThan(0);
    });

    it("marks a rating's call hour stale, not only the rating's own hour", async () => {
      const [call] = plant(rng, 'c', 1);
      await store.interactions.insert(projectId, [call!]);
      await compare();
      // Days after the window: the event's own hour holds no call, so only the call's hour being
      // marked brings this thumb into the figures.
      const thumb = parseInput(FeedbackInput, {
        kind: 'thumbs',
        interactionId: call!.id,
        raterId: 'dave',
        value: 'up',
        createdAt: to + 5 * day + 17 * 60_000,
      });
      await store.feedback.insert(projectId, [thumb]);
      await compare();
    });

    it('rebuilds to the same rows', async () => {
      await store.rollups.rollForward(projectId);
      const rows = async () => [
        await store.db
          .selectFrom('rollup_hours')
          .selectAll()
          .where('project_id', '=', projectId)
          .orderBy(['hour', 'route', 'model'])
          .execute(),
        await store.db
          .selectFrom('rollup_days')
          .selectAll()
          .where('project_id', '=', projectId)
          .orderBy(['day', 'route', 'model'])
          .execute(),
      ];
      const kept = await rows();
      // Three days of three series: the daily rows are there to be read, not left empty.
      expect(kept[1]!.length).toBe(9);
      for (const table of ['rollup_hours', 'rollup_days'] as const)
        await store.db.updateTable(table).set({ calls: 1 }).where('project_id', '=', projectId).execute();
      await store.rollups.rebuild(projectId);
      expect(await rows()).toEqual(kept);
      expect(
        await store.db.selectFrom('rollup_log').selectAll().where('project_id', '=', projectId).execute(),
      ).toEqual([]);
      await compare();
    });

    it('leaves hours to another server that rolled them forward while this pass read its figures', async () => {
      const other = await Store.open(url);
      const rollups = store.rollups as unknown as { readFigures(...args: unknown[]): Promise<unknown> };
      const readFigures = rollups.readFigures.bind(store.rollups);
      let release!: () => void;
      const released = new Promise<void>((r) => {
        release = r;
      });
      let read!: () => void;
      const wasRead = new Promise<void>((r) => {
        read = r;
      });
      // This server's pass reads its figures, then waits while more calls land and the other
      // server rolls everything forward; its figures (without those calls) are then the older.
      rollups.readFigures = async (...args) => {
        const figures = await readFigures(...args);
        read();
        await released;
        return figures;
      };
      try {
        await store.interactions.insert(projectId, plant(rng, 'c', 100));
        const pass = store.rollups.rollForward(projectId);
        await wasRead;
        await store.interactions.insert(projectId, plant(rng, 'd', 100));
        await other.rollups.rollForward(projectId);
        release();
        await pass;
      } finally {
        delete (rollups as { readFigures?: unknown }).readFigures;
        await other.close();
      }
      // Nothing is left to redo: had this pass written its figures, the 'd' calls would be missing.
      expect(
        await store.db.selectFrom('rollup_log').selectAll().where('project_id', '=', projectId).execute(),
      ).toEqual([]);
      await compare();
    });
  });
}
