import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { ReportCache } from './dashboard.js';

// A stand-in dashboard bundle, so static serving is tested without building the web app here.
const webDir = mkdtempSync(join(tmpdir(), 'ratchet-web-'));
mkdirSync(join(webDir, 'assets'));
writeFileSync(join(webDir, 'index.html'), '<!doctype html><title>Ratchet</title>');
writeFileSync(join(webDir, 'assets', 'app-1234.js'), 'console.log(1)');
writeFileSync(join(webDir, 'ratchet-widget.js'), 'window.RatchetWidget = {}');

for (const database of testDatabases()) {
  describe(`dashboard API (${database.name})`, () => {
    let t: TestServer;
    /** Each logged interaction's feedback token, as the capture API returned it. */
    let tokens: Map<string, string>;
    // Two models on the route; model "a" gets 6 ups and 2 downs from alice, "b" 1 up and 3 downs.
    const interactions = Array.from({ length: 14 }, (_, i) => ({
      id: `i${i}`,
      route: 'support',
      model: i < 8 ? 'a' : 'b',
      messages: [{ role: 'user', content: `question ${i % 7}` }],
      output: `answer ${i}`,
      createdAt: Date.now() - (14 - i) * 60_000,
    }));

    beforeAll(async () => {
      process.env.RATCHET_WEB_DIR = webDir;
      t = await startTestServer(await database.create(), {
        config: { dataDir: mkdtempSync(join(tmpdir(), 'ratchet-dash-data-')) },
        queueObjectives: { 'support-bot': 'positives' },
      });
      delete process.env.RATCHET_WEB_DIR;
      const logged = await t.call('/api/v1/interactions', { body: { items: interactions } });
      expect(logged.status).toBe(201);
      tokens = new Map(
        logged.body.items.map((r: { id: string; feedbackToken: string }) => [r.id, r.feedbackToken]),
      );
      const thumbs = interactions.slice(0, 12).map((it, i) => ({
        kind: 'thumbs',
        interactionId: it.id,
        raterId: 'alice',
        value: (i < 8 ? i < 6 : i < 9) ? 'up' : 'down',
      }));
      const stars = interactions.slice(0, 4).map((it, i) => ({
        kind: 'stars',
        interactionId: it.id,
        raterId: 'bob',
        value: 2 + i,
      }));
      const comments = ['wrong refund policy', 'wrong refund amount'].map((text, i) => ({
        kind: 'comment',
        interactionId: `i${9 + i}`,
        raterId: 'alice',
        text,
      }));
      const res = await t.call('/api/v1/feedback', { body: { items: [...thumbs, ...stars, ...comments] } });
      expect(res.status).toBe(201);
    });
    afterAll(async () => {
      await t?.close();
      await database.cleanup();
    });

    /** A report endpoint's answer once it is fresh (the first computation starts the report thread). */
    const freshReport = async (path: string) => {
      let res = await t.call(path);
      for (let i = 0; i < 300 && res.status === 200 && !res.body.fresh; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        res = await t.call(path);
      }
      return res;
    };

    it('overview: activity per day, satisfaction with intervals per model', async () => {
      const res = await t.call('/api/v1/dashboard/overview?days=7');
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ fresh: true, computing: false });
      const body = res.body.report;
      const sum = (k: 'interactions' | 'ratings') =>
        body.activity.reduce((a: number, b: Record<string, number>) => a + b[k]!, 0);
      expect(sum('interactions')).toBe(14);
      expect(sum('ratings')).toBe(18);
      const a = body.satisfaction.find((s: { model: string }) => s.model === 'a');
      const b = body.satisfaction.find((s: { model: string }) => s.model === 'b');
      expect(a).toMatchObject({ up: 6, down: 2, thumbs: 8, upShare: 0.75, stars: 4, starsMean: 3.5 });
      expect(b).toMatchObject({ up: 1, down: 3, upShare: 0.25, stars: 0, starsMean: null });
      expect(a.upLower).toBeLessThan(0.75);
      expect(a.upUpper).toBeGreaterThan(0.75);
      expect(a.upUpper).toBeLessThanOrEqual(1);
      // Fewer ratings, wider interval.
      expect(b.upUpper - b.upLower).toBeGreaterThan(a.upUpper - a.upLower);
      expect((await t.call('/api/v1/dashboard/overview?days=0')).body.error.path).toBe('days');
    });

    it('explorer: interactions filtered by rating and rater', async () => {
      const ids = async (q: string) =>
        (await t.call(`/api/v1/interactions?${q}`)).body.items.map((i: { id: string }) => i.id).sort();
      expect(await ids('rating=down&raterId=alice')).toEqual(['i10', 'i11', 'i6', 'i7', 'i9']);
      expect(await ids('rating=5')).toEqual(['i3']);
      expect(await ids('rating=up&raterId=bob')).toEqual([]);
      expect(await ids('raterId=bob&model=a')).toEqual(['i0', 'i1', 'i2', 'i3']);
      expect((await t.call('/api/v1/interactions?rating=7')).body.error.path).toBe('rating');
    });

    it('annotation queue: unrated newest first, then the least certain; unknown policies named', async () => {
      const first = await t.call('/api/v1/dashboard/queue?limit=5&raterId=carol');
      expect(first.body.policy).toBe('unrated-then-lowest-confidence');
      // i12 and i13 are the only unrated ones; without a calibration nothing else qualifies yet.
      expect(first.body.items.map((i: { interactionId: string }) => i.interactionId)).toEqual(['i13', 'i12']);
      // i13 asks "question 6" like i6: a pair to compare.
      expect(first.body.items[0].pairWith).toBe('i6');
      expect((await t.call('/api/v1/calibrations', { body: {} })).status).toBe(201);
      const more = await t.call('/api/v1/dashboard/queue?limit=4&raterId=carol');
      expect(more.body.items).toHaveLength(4);
      const rated = more.body.items.slice(2);
      expect(rated.every((i: { uncertainty: number }) => i.uncertainty > 0)).toBe(true);
      expect(rated[0].uncertainty).toBeGreaterThanOrEqual(rated[1].uncertainty);
      const bad = await t.call('/api/v1/dashboard/queue?policy=psychic');
      expect(bad).toMatchObject({ status: 400, body: { error: { path: 'policy' } } });
      // Active learning for an sft dataset: the unrated answers most likely liked.
      const positives = await t.call(
        '/api/v1/dashboard/queue?policy=active-learning&objective=positives&limit=3',
      );
      expect(positives.status).toBe(200);
      expect(positives.body.items.length).toBeGreaterThan(0);
      // A route run by a loop policy asks for what its datasets need (here sft: positives),
      // unless the request says otherwise; other routes keep the queue's default.
      const onRoute = (q: string) => t.call(`/api/v1/dashboard/queue?policy=active-learning&${q}`);
      expect((await onRoute('route=support-bot')).body.objective).toBe('positives');
      expect((await onRoute('route=support-bot&objective=uncertainty')).body.objective).toBe('uncertainty');
      expect((await onRoute('route=other')).body.objective).toBeNull();
      const badObjective = await t.call('/api/v1/dashboard/queue?policy=active-learning&objective=fun');
      expect(badObjective).toMatchObject({ status: 400, body: { error: { path: 'objective' } } });
    });

    it('what changed and the widget summary count the feedback behind the production model', async () => {
      expect((await t.call('/api/v1/calibrations', { body: {} })).status).toBe(201);
      const built = await t.call('/api/v1/datasets', {
        body: {
          name: 'kto',
          method: 'kto',
          curation: false,
          options: { requireConfidentSign: false, margin: 0, split: { by: 'prompt', testFraction: 0 } },
        },
      });
      expect(built.body.error).toBeUndefined();
      const base = await t.store.models.register(
        t.projectId,
        { name: 'a', route: 'support', baseModel: 'tiny' },
        'test',
      );
      const tuned = await t.store.models.register(
        t.projectId,
        { name: 'b', route: 'support', baseModel: 'tiny', datasetId: built.body.id },
        'test',
      );
      // A gateway whose default upstream serves the route's registry models.
      const gateway = { upstreams: ['local'], routeUpstreams: {}, defaultUpstream: 'local' };
      await t.store.models.setStage(t.projectId, base.id, 'production', 'test', 'baseline', gateway);
      await t.store.models.setStage(t.projectId, tuned.id, 'production', 'test', 'better', gateway);

      const exported = await fetch(`${t.url}/api/v1/dashboard/datasets/kto@1/export`, {
        headers: { authorization: `Bearer ${t.secretKey}` },
      });
      expect(exported.headers.get('content-disposition')).toContain('kto-v1.jsonl');
      const lines = (await exported.text()).trim().split('\n');
      expect(lines).toHaveLength(built.body.rowCount);
      expect(JSON.parse(lines[0]!)).toHaveProperty('label');
      expect((await t.call('/api/v1/dashboard/datasets/nope/export')).body.error.path).toBe('ref');

      const members = await t.store.dashboard.learnedFrom(t.projectId, built.body.id);
      const changed = (await freshReport('/api/v1/dashboard/what-changed')).body;
      expect(changed).toMatchObject({ fresh: true, computing: false });
      const changes = changed.report.items;
      const b = changes.find((c: { model: { name: string } }) => c.model.name === 'b');
      expect(b.previous.name).toBe('a');
      expect(b.dataset).toMatchObject({ name: 'kto', version: 1 });
      expect(b.learnedFrom.interactions).toBe(built.body.rowCount);
      expect(b.learnedFrom).toEqual(members);
      expect(b.history.map((h: { action: string }) => h.action)).toContain('model.stage');
      // Both complaints are on model b's answers, none on a's.
      expect(b.themes.length).toBeGreaterThan(0);
      expect(b.themes.every((th: { rate: number }) => th.rate > 0)).toBe(true);

      const expected = Object.values(members.feedbackByKind).reduce((x, y) => x + y, 0);
      expect(expected).toBeGreaterThan(0);
      const summary = await t.call('/api/v1/widget/summary?route=support', { key: t.publicKey });
      expect(summary).toMatchObject({
        status: 200,
        body: { route: 'support', ratingsInCurrentModel: expected },
      });
      expect(summary.headers.get('access-control-allow-origin')).toBe('*');
      const none = await t.call('/api/v1/widget/summary?route=nothing', { key: t.publicKey });
      expect(none.body.ratingsInCurrentModel).toBe(0);
    });

    it('error analysis comes from the report cache and follows new feedback', async () => {
      const first = await freshReport('/api/v1/dashboard/analysis');
      expect(first.body).toMatchObject({ fresh: true, computing: false });
      expect(first.body.report.themes.length).toBeGreaterThan(0);
      const again = await t.call('/api/v1/dashboard/analysis');
      expect(again.body.computedAt).toBe(first.body.computedAt);
      await t.call('/api/v1/feedback', {
        body: { kind: 'comment', interactionId: 'i12', raterId: 'dave', text: 'wrong refund again' },
      });
      // New data: the last report at once, marked stale, then the new one.
      const stale = await t.call('/api/v1/dashboard/analysis');
      expect(stale.body).toMatchObject({ fresh: false, computedAt: first.body.computedAt });
      let after = stale;
      for (let i = 0; i < 50 && !after.body.fresh; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        after = await t.call('/api/v1/dashboard/analysis');
      }
      expect(after.body.fresh).toBe(true);
      expect(after.body.computedAt).toBeGreaterThanOrEqual(first.body.computedAt);
    });

    it('a public key can send feedback from a browser and read nothing else', async () => {
      const preflight = await fetch(`${t.url}/api/v1/feedback`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
      const sent = await t.call('/api/v1/feedback', {
        key: t.publicKey,
        body: { kind: 'thumbs', interactionId: 'i13', value: 'up', feedbackToken: tokens.get('i13') },
      });
      expect(sent.status).toBe(201);
      for (const path of [
        '/api/v1/interactions',
        '/api/v1/interactions/i13',
        '/api/v1/dashboard/overview',
        '/api/v1/dashboard/queue',
        '/api/v1/dashboard/what-changed',
        '/api/v1/dashboard/analysis',
        '/api/v1/models',
        '/api/v1/raters',
      ]) {
        const res = await t.call(path, { key: t.publicKey });
        expect({ path, status: res.status }).toEqual({ path, status: 403 });
      }
      // No CORS on the secret-key API: a browser on another origin cannot read it.
      expect((await t.call('/api/v1/interactions')).headers.get('access-control-allow-origin')).toBeNull();
    });

    it('serves the dashboard, its assets and the widget script; API paths never fall through', async () => {
      const index = await fetch(`${t.url}/`);
      expect(index.headers.get('content-type')).toContain('text/html');
      expect(await index.text()).toContain('<title>Ratchet</title>');
      // A client-side route reloads to the app.
      expect(await (await fetch(`${t.url}/explorer/anything`)).text()).toContain('<title>Ratchet</title>');
      const asset = await fetch(`${t.url}/assets/app-1234.js`);
      expect(asset.headers.get('cache-control')).toContain('immutable');
      const widget = await fetch(`${t.url}/ratchet-widget.js`);
      expect(widget.headers.get('content-type')).toContain('text/javascript');
      expect(await widget.text()).toContain('RatchetWidget');
      expect((await fetch(`${t.url}/assets/missing.js`)).status).toBe(404);
      expect((await fetch(`${t.url}/%2e%2e/%2e%2e/package.json`)).status).toBe(404);
      expect((await t.call('/api/v1/nothing-here')).body.error.code).toBe('not_found');
      const spec = (await t.call('/openapi.json', { key: null })).body;
      expect(Object.keys(spec.paths)).toEqual(
        expect.arrayContaining([
          '/api/v1/dashboard/overview',
          '/api/v1/dashboard/queue',
          '/api/v1/widget/summary',
        ]),
      );
    });
  });
}

describe('ReportCache', () => {
  const later = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it('serves the last report while a newer version computes, one computation at a time', async () => {
    const errors: unknown[] = [];
    const cache = new ReportCache((e) => errors.push(e), 50);
    let calls = 0;
    const slow = (value: string, ms: number) => async () => {
      calls++;
      await later(ms);
      return value;
    };
    // First request: waits up to 50 ms, then says it is computing.
    expect(await cache.get('p', 'v1', slow('one', 150))).toEqual({
      report: null,
      computedAt: null,
      fresh: false,
      computing: true,
    });
    // A second request meanwhile does not start another computation.
    await cache.get('p', 'v1', slow('never', 10));
    await later(200);
    expect(await cache.get('p', 'v1', slow('never', 10))).toMatchObject({ report: 'one', fresh: true });
    expect(calls).toBe(1);
    // The data changed, but the report is younger than twice its computation: kept as it is.
    expect(await cache.get('p', 'v2', slow('never', 10))).toMatchObject({
      report: 'one',
      fresh: false,
      computing: false,
    });
    expect(calls).toBe(1);
    await later(300);
    // Older now: the old report at once, marked stale, and the new one shortly after.
    expect(await cache.get('p', 'v2', slow('two', 100))).toMatchObject({
      report: 'one',
      fresh: false,
      computing: true,
    });
    await later(150);
    expect(await cache.get('p', 'v2', slow('never', 10))).toMatchObject({ report: 'two', fresh: true });
    expect(calls).toBe(2);
    // A failed computation is reported and retried by the next request.
    expect(
      await cache.get('q', 'v1', async () => {
        throw new Error('boom');
      }),
    ).toMatchObject({ report: null, computing: true });
    expect(errors).toHaveLength(1);
    expect(await cache.get('q', 'v1', async () => 'ok')).toMatchObject({ report: 'ok', fresh: true });
  });
});
