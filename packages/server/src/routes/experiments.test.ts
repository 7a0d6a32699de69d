import { SeededRandom } from '@ratchet/core';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

/** A variant in the experiment status (the fields these tests read). */
interface VariantView {
  name: string;
  users: number;
  thumbsUpRate: {
    users: number;
    events: number;
    up: number;
    mean: number;
    interval: { lower: number; upper: number };
  };
  otherSources: unknown[];
}

/** Thumbs-up probability per upstream model: the treatment is truly better. */
const upRate: Record<string, number> = { 'bot-v1': 0.35, 'bot-v2': 0.65 };

for (const target of testDatabases()) {
  describe(`experiments through the gateway on ${target.name}`, () => {
    let upstream: LocalUpstream;
    let t: TestServer;

    beforeAll(async () => {
      upstream = await startLocalUpstream({
        answer: (b) => `${b.model}: here is how to track your parcel`,
        record: false,
      });
      t = await startTestServer(await target.create(), {
        gateway: {
          upstreams: { local: { baseURL: upstream.url } },
          routes: {
            support: { variants: [{ name: 'file', upstream: 'local', model: 'bot-v1', weight: 1 }] },
          },
        },
      });
      for (const name of ['bot-v1', 'bot-v2']) {
        expect(
          (await t.call('/api/v1/models', { body: { name, route: 'support', baseModel: 'tiny' } })).status,
        ).toBe(201);
      }
    });
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await target.cleanup();
    });

    async function chat(user: string) {
      const res = await t.call('/v1/chat/completions', {
        body: { model: 'support', messages: [{ role: 'user', content: 'Where is my parcel?' }] },
        headers: { 'x-ratchet-user-id': user },
      });
      expect(res.status).toBe(200);
      return {
        id: res.headers.get('x-ratchet-interaction-id')!,
        feedbackToken: res.headers.get('x-ratchet-feedback-token')!,
        variant: res.headers.get('x-ratchet-variant')!,
        model: (res.body.choices[0].message.content as string).split(':')[0]!,
      };
    }

    /**
     * Simulated users: each chats through the gateway, then rates the answer like people would
     * (a moment later: the gateway logs calls in the background, and people read before rating).
     */
    async function simulate(users: number, prefix: string, seed: number) {
      const rng = new SeededRandom(seed);
      const draws = Array.from({ length: users }, () => rng.uniform());
      const seen: { id: string; feedbackToken: string; variant: string; model: string }[] = [];
      for (let start = 0; start < users; start += 25) {
        seen.push(
          ...(await Promise.all(
            draws.slice(start, start + 25).map((_, j) => chat(`${prefix}-${start + j}`)),
          )),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      for (let start = 0; start < users; start += 25) {
        await Promise.all(
          seen.slice(start, start + 25).map(async (call, j) => {
            const fb = await t.call('/api/v1/feedback', {
              key: t.publicKey,
              body: {
                kind: 'thumbs',
                interactionId: call.id,
                feedbackToken: call.feedbackToken,
                value: draws[start + j]! < upRate[call.model]! ? 'up' : 'down',
              },
            });
            expect([fb.status, fb.body]).toEqual([201, expect.anything()]);
          }),
        );
      }
      return seen;
    }

    it('routes by the file until an experiment starts, then splits users sticky between the variants', async () => {
      expect((await chat('before')).variant).toBe('file');
      const started = await t.call('/api/v1/experiments', {
        body: {
          name: 'v2-vs-v1',
          route: 'support',
          control: 'v1',
          variants: [
            { name: 'v1', model: 'bot-v1', upstream: 'local', weight: 1 },
            { name: 'v2', model: 'bot-v2', upstream: 'local', weight: 1 },
          ],
          metric: 'thumbs_up_rate',
          decisionRule: { minObservationsPerArm: 100 },
        },
      });
      expect(started.status).toBe(201);
      expect(started.body).toMatchObject({ status: 'running', engine: 'msprt', control: 'v1' });
      // This server refreshed its routes on the write: the very next call is in the experiment.
      const first = await chat('alice');
      expect(['v1', 'v2']).toContain(first.variant);
      for (let i = 0; i < 5; i++) expect((await chat('alice')).variant).toBe(first.variant);
      expect(first.model).toBe(first.variant === 'v1' ? 'bot-v1' : 'bot-v2');
    });

    it('shows per-variant metrics, the posterior and a ship decision after simulated users rate', async () => {
      const list = vi.spyOn(t.store.routes, 'list');
      const seen = await simulate(400, 'user', 7);
      // The hot path reads no database: at most the background refreshes (one per 2 s) ran.
      expect(list.mock.calls.length).toBeLessThan(10);
      list.mockRestore();
      for (const s of seen) expect(s.model).toBe(s.variant === 'v1' ? 'bot-v1' : 'bot-v2');

      const status = await t.call('/api/v1/experiments/v2-vs-v1');
      expect(status.status).toBe(200);
      const v = Object.fromEntries(
        (status.body.variants as { name: string }[]).map((x) => [x.name, x]),
      ) as Record<string, VariantView>;
      const count = (name: string) => seen.filter((s) => s.variant === name).length;
      // One rating per user here: as many users with thumbs as thumbs.
      for (const name of ['v1', 'v2']) {
        expect(v[name]!.thumbsUpRate).toMatchObject({ users: count(name), events: count(name) });
        expect(v[name]!.otherSources).toEqual([]);
      }
      expect(v.v1!.users + v.v2!.users).toBe(400 + 1); // alice too (her feedback-less calls count as users)
      expect(v.v2!.thumbsUpRate.mean).toBeGreaterThan(v.v1!.thumbsUpRate.mean + 0.15);
      const i = v.v2!.thumbsUpRate.interval;
      expect(i.lower).toBeLessThan(v.v2!.thumbsUpRate.mean);
      expect(i.upper).toBeGreaterThan(v.v2!.thumbsUpRate.mean);

      const d = status.body.decision;
      expect(d.srm.mismatch).toBe(false);
      expect(d.comparisons[0]).toMatchObject({
        variant: 'v2',
        metric: 'thumbs_up_rate',
        role: 'primary',
        verdict: 'better',
      });
      expect(d.comparisons[0].probabilityToBeat).toBeGreaterThan(0.99);
      expect(d.comparisons[0].sequentialInterval.lower).toBeGreaterThan(0);
      expect(d.comparisons[0].credibleInterval.lower).toBeGreaterThan(0);
      expect(d).toMatchObject({ decision: 'ship', variant: 'v2' });
      // What ran: flagged raters left out (none is flagged here), CUPED (these users have no history on the route, so theta is 0 and nothing is
      // removed) and the mixture tuned to the metric's default effect.
      expect(status.body.adjustments).toEqual({
        flaggedRatersExcluded: true,
        cuped: { prePeriodDays: 28, theta: 0, coveredShare: 0, varianceReduction: 0 },
        mixture: { expectedEffect: 0.05 },
      });
      // A plain GET records nothing; analyze appends to the history.
      expect(
        (await t.call('/api/v1/experiments/v2-vs-v1/analyze', { method: 'POST' })).body.experiment.history,
      ).toEqual([expect.objectContaining({ decision: 'ship', variant: 'v2' })]);
    });

    it('counts a user who rates ten answers as one user, and shows judge labels apart from the metrics', async () => {
      const look = async () => {
        const res = await t.call('/api/v1/experiments/v2-vs-v1');
        expect(res.status).toBe(200);
        return {
          variants: Object.fromEntries(
            (res.body.variants as VariantView[]).map((x) => [x.name, x]),
          ) as Record<string, VariantView>,
          comparison: res.body.decision.comparisons[0],
        };
      };
      const before = await look();
      const calls = [];
      for (let k = 0; k < 10; k++) calls.push(await chat('devoted'));
      const arm = calls[0]!.variant;
      const other = arm === 'v1' ? 'v2' : 'v1';
      expect(calls.every((c) => c.variant === arm)).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 200));
      for (const c of calls) {
        const fb = await t.call('/api/v1/feedback', {
          key: t.publicKey,
          body: { kind: 'thumbs', interactionId: c.id, feedbackToken: c.feedbackToken, value: 'up' },
        });
        expect(fb.status).toBe(201);
      }
      // An AI judge labels five of the answers (the secret key may say so; the public key may not).
      for (const c of calls.slice(0, 5)) {
        const fb = await t.call('/api/v1/feedback', {
          body: { kind: 'thumbs', interactionId: c.id, value: 'down', source: 'judge', raterId: 'judge-1' },
        });
        expect(fb.status).toBe(201);
      }
      const after = await look();
      const b = before.variants[arm]!.thumbsUpRate;
      const a = after.variants[arm]!.thumbsUpRate;
      // Ten ratings, one user: the mean of user means moves by one user whose mean is 1.
      expect(a).toMatchObject({ users: b.users + 1, events: b.events + 10, up: b.up + 10 });
      expect(a.mean).toBeCloseTo((b.mean * b.users + 1) / (b.users + 1), 12);
      expect(after.variants[arm]!.users).toBe(before.variants[arm]!.users + 1);
      expect(after.variants[other]!.thumbsUpRate).toEqual(before.variants[other]!.thumbsUpRate);
      // The judge's labels are reported apart, and the comparison counts users only.
      expect(after.variants[arm]!.otherSources).toEqual([
        { source: 'judge', thumbs: { up: 0, total: 5, rate: 0 }, stars: { n: 0, mean: null } },
      ]);
      const users = (x: VariantView) => x.thumbsUpRate.users;
      expect(users(after.variants.v1!) + users(after.variants.v2!)).toBe(400 + 1);
      expect(after.comparison.verdict).toBe('better');
    });

    it('stops keeping the winner: every user then gets it, and the audit log has the story', async () => {
      const stopped = await t.call('/api/v1/experiments/v2-vs-v1/stop', {
        body: { reason: 'shipped', keep: 'v2' },
      });
      expect(stopped.body).toMatchObject({ status: 'stopped' });
      for (const u of ['x1', 'x2', 'x3', 'alice']) expect((await chat(u)).model).toBe('bot-v2');
      expect((await t.call('/api/v1/experiments/v2-vs-v1/stop', { body: { reason: 'again' } })).status).toBe(
        409,
      );
      const audit = await t.call(`/api/v1/audit?subjectType=experiment`);
      expect(audit.body.items.map((a: { action: string }) => a.action)).toEqual([
        'experiment.stopped',
        'experiment.started',
      ]);
      expect((await t.call('/api/v1/routes/support', { method: 'DELETE' })).status).toBe(200);
      expect((await t.call('/api/v1/audit?subjectType=route')).body.items[0]).toMatchObject({
        action: 'route.deleted',
        subjectId: 'support',
      });
      expect((await t.call('/api/v1/routes/support', { method: 'DELETE' })).status).toBe(404);
      expect((await chat('y')).variant).toBe('file');
    });

    it('moves weights by Thompson sampling on a bandit experiment', async () => {
      const started = await t.call('/api/v1/experiments', {
        body: {
          name: 'bandit',
          route: 'support',
          control: 'v1',
          variants: [
            { name: 'v1', upstreamModel: 'bot-v1', weight: 1, upstream: 'local' },
            { name: 'v2', upstreamModel: 'bot-v2', weight: 1, upstream: 'local' },
          ],
          bandit: true,
          decisionRule: { minObservationsPerArm: 1000 },
        },
      });
      expect(started.status).toBe(201);
      await simulate(200, 'bandit', 11);
      const look = await t.call('/api/v1/experiments/bandit/analyze', { method: 'POST' });
      expect(look.body.weights.v2).toBeGreaterThan(look.body.weights.v1);
      expect(look.body.decision.reasons).toContain(
        'sample ratio check not applicable: Thompson sampling sets the weights',
      );
      const route = await t.call('/api/v1/routes');
      expect(route.body.items[0].variants.map((x: { weight: number }) => x.weight)).toEqual([
        look.body.weights.v1,
        look.body.weights.v2,
      ]);
      expect(look.body.experiment.history[0].weights).toEqual(look.body.weights);
    });

    it('serves a route that exists only in the database, set over the API', async () => {
      const canary = [
        { name: 'stable', upstream: 'local', model: 'bot-v1', weight: 0 },
        { name: 'canary', upstream: 'local', model: 'bot-v2', weight: 1 },
      ];
      const put = await t.call('/api/v1/routes/canary', { method: 'PUT', body: { variants: canary } });
      expect(put.status).toBe(200);
      const res = await t.call('/v1/chat/completions', {
        body: { model: 'canary', messages: [{ role: 'user', content: 'hi' }] },
      });
      expect([res.status, res.headers.get('x-ratchet-variant')]).toEqual([200, 'canary']);
      const bad = await t.call('/api/v1/routes/canary', {
        method: 'PUT',
        body: { variants: [{ ...canary[1], upstream: 'nowhere' }] },
      });
      expect([bad.status, bad.body.error.path]).toEqual([400, 'variants.0.upstream']);
      // The bandit experiment from the test before still runs on `support`.
      const busy = await t.call('/api/v1/routes/support', { method: 'PUT', body: { variants: canary } });
      expect([busy.status, busy.body.error.path]).toEqual([409, 'route']);
    });

    it('rejects bad experiments naming the field', async () => {
      const base = {
        name: 'bad',
        route: 'other',
        control: 'a',
        variants: [
          { name: 'a', upstreamModel: 'm', weight: 1, upstream: 'local' },
          { name: 'b', upstreamModel: 'm', weight: 1, upstream: 'local' },
        ],
      };
      const cases: [unknown, number, string][] = [
        [{ ...base, control: 'zzz' }, 400, 'control'],
        [
          { ...base, variants: [base.variants[0], { ...base.variants[1], upstream: 'nowhere' }] },
          400,
          'variants.1.upstream',
        ],
        [
          {
            ...base,
            variants: [base.variants[0], { name: 'b', model: 'ghost', weight: 1, upstream: 'local' }],
          },
          404,
          'variants.1.model',
        ],
        [{ ...base, metric: 'clicks' }, 400, 'metric'],
        [{ ...base, decisionRule: { alpha: 2 } }, 400, 'decisionRule.alpha'],
        [{ ...base, decisionRule: { expectedEffect: -0.05 } }, 400, 'decisionRule.expectedEffect'],
        [{ ...base, decisionRule: { cuped: { prePeriodDays: 0 } } }, 400, 'decisionRule.cuped.prePeriodDays'],
        [{ ...base, route: 'support' }, 409, 'route'],
      ];
      for (const [body, status, path] of cases) {
        const res = await t.call('/api/v1/experiments', { body });
        expect([res.status, res.body.error?.path]).toEqual([status, path]);
      }
      expect((await t.call('/api/v1/experiments?route=other')).body.items).toEqual([]);
      // The same declarations document the API.
      const spec = (await t.call('/openapi.json', { key: null })).body;
      expect(JSON.stringify(spec.paths['/api/v1/experiments'].post.requestBody)).toContain('thumbs_up_rate');
      expect(JSON.stringify(spec.paths['/api/v1/evaluations'].post.requestBody)).toContain('adversarial');
      expect(Object.keys(spec.paths)).toEqual(
        expect.arrayContaining([
          '/api/v1/experiments/{ref}/stop',
          '/api/v1/evaluations/{id}/items',
          '/api/v1/routes/{route}',
        ]),
      );
    });
  });
}
