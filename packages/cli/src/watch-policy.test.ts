import { advanceLoop, LoopPolicy, startExperiment } from '@ratchet/loop';
import { startTestServer, type TestServer } from '@ratchet/server/testing';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './test-utils/process.js';

/**
 * The guardrail's watch policy per route: set through the API (zod-checked, a bad value is a 400
 * naming the field and writes nothing) or `ratchet watch policy`, it is what the route's next
 * promotion is watched with (length, holdback share on the route, thresholds); open watches keep
 * theirs; a loop policy's `promotion.watch` wins for the loop's own promotions; without either,
 * the defaults (5% holdback).
 */
for (const db of testDatabases()) {
  describe(`watch policy per route (${db.name})`, () => {
    let t: TestServer;
    let url: string;

    beforeAll(async () => {
      url = await db.create();
      t = await startTestServer(url, {
        gateway: { upstreams: { up: { baseURL: 'http://127.0.0.1:9/v1' } }, defaultUpstream: 'up' },
        project: 'policied',
      });
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await db.cleanup();
    });

    /** Registers `<route>-v1..vN` on the route and makes v1 production (nothing replaced: no watch). */
    async function route(name: string, versions = 3) {
      for (let v = 1; v <= versions; v++)
        expect(
          (
            await t.call('/api/v1/models', {
              body: { name: `${name}-v${v}`, route: name, baseModel: 'tiny' },
            })
          ).status,
        ).toBe(201);
      await promote(`${name}-v1`);
    }
    const promote = async (model: string) => {
      const res = await t.call(`/api/v1/models/${model}/stage`, {
        body: { stage: 'production', reason: 'test' },
      });
      expect(res.status).toBe(200);
      return res.body.watchId as string | null;
    };
    const holdbackWeight = async (r: string) =>
      (await t.store.routes.get(t.projectId, r))!.variants.find((v) => v.name === 'holdback')?.weight;
    const watchPolicy = async (id: string) => (await t.store.watches.get(t.projectId, id))!.policy;

    it("the API sets a route's policy; its next promotion is watched with it, other routes keep the defaults", async () => {
      await route('tuned');
      await route('plain', 2);
      const before = await t.call('/api/v1/routes/tuned/watch-policy');
      expect(before.body).toMatchObject({
        configured: false,
        policy: { holdbackShare: 0.05, users: 10_000, hours: 24 },
      });

      const put = await t.call('/api/v1/routes/tuned/watch-policy', {
        method: 'PUT',
        body: { users: 500, hours: 2, holdbackShare: 0.2, harm: { thumbsUpDrop: 0.03 } },
      });
      expect(put.status).toBe(200);
      expect(put.body).toMatchObject({ configured: true, updatedBy: expect.stringMatching(/^api:/) });
      const got = await t.call('/api/v1/routes/tuned/watch-policy');
      // Left-out fields take their defaults.
      expect(got.body.policy).toEqual({
        users: 500,
        hours: 2,
        holdbackShare: 0.2,
        alpha: 0.05,
        minUsersPerArm: 20,
        tauInStandardDeviations: 0.4,
        harm: {
          thumbsUpDrop: 0.03,
          rewardDrop: 0,
          errorRateRise: 0.01,
          emptyRateRise: 0.01,
          slowRateRise: 0.05,
        },
      });

      const watchId = await promote('tuned-v2');
      expect(await watchPolicy(watchId!)).toEqual(got.body.policy);
      expect(await holdbackWeight('tuned')).toBe(0.2);
      const plain = await promote('plain-v2');
      expect((await watchPolicy(plain!)).holdbackShare).toBe(0.05);
      expect(await holdbackWeight('plain')).toBe(0.05);

      // A change applies to the next promotion; the open watch keeps what it opened with.
      await t.call('/api/v1/routes/tuned/watch-policy', { method: 'PUT', body: { holdbackShare: 0.1 } });
      expect((await watchPolicy(watchId!)).holdbackShare).toBe(0.2);
      const next = await promote('tuned-v3');
      expect(await watchPolicy(next!)).toMatchObject({ holdbackShare: 0.1, users: 10_000, hours: 24 });
      expect(await holdbackWeight('tuned')).toBe(0.1);
      const audited = await t.store.audit.list(t.projectId, {
        subjectType: 'route',
        subjectId: 'tuned',
        action: 'watch.policy',
      });
      expect(
        audited.map((a) => (a.details as { policy: { holdbackShare: number } }).policy.holdbackShare),
      ).toEqual([0.1, 0.2]);

      // Removed: the defaults again; removing twice is a 404.
      expect((await t.call('/api/v1/routes/tuned/watch-policy', { method: 'DELETE' })).body.configured).toBe(
        false,
      );
      expect((await t.call('/api/v1/routes/tuned/watch-policy', { method: 'DELETE' })).status).toBe(404);
      expect((await watchPolicy((await promote('tuned-v2'))!)).holdbackShare).toBe(0.05);
    });

    it('bad values are refused with the field named, and nothing is written', async () => {
      await t.call('/api/v1/routes/strict/watch-policy', { method: 'PUT', body: { holdbackShare: 0.3 } });
      for (const [body, path] of [
        [{ holdbackShare: 0.7 }, 'holdbackShare'],
        [{ holdbackShare: 0 }, 'holdbackShare'],
        [{ users: -1 }, 'users'],
        [{ users: 1.5 }, 'users'],
        [{ hours: 'a day' }, 'hours'],
        [{ alpha: 0.9 }, 'alpha'],
        [{ harm: { thumbsUpDrop: 2 } }, 'harm.thumbsUpDrop'],
        [{ harm: { latency: 1 } }, 'harm.latency'],
        [{ holdback: 0.05 }, 'holdback'],
      ] as const) {
        const res = await t.call('/api/v1/routes/strict/watch-policy', { method: 'PUT', body });
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.body.error.path, JSON.stringify(body)).toBe(path);
      }
      expect((await t.call('/api/v1/routes/strict/watch-policy')).body.policy.holdbackShare).toBe(0.3);
      // The public key cannot set it.
      const pub = await t.call('/api/v1/routes/strict/watch-policy', {
        method: 'PUT',
        key: t.publicKey,
        body: { holdbackShare: 0.1 },
      });
      expect(pub.status).toBe(403);
    });

    it("the loop's promotion: the loop policy's promotion.watch wins, else the route's policy", async () => {
      /** A round at decide whose experiment shipped the candidate, under `policy`. */
      async function shipped(r: string, promotion: Record<string, unknown>) {
        const { store, projectId } = t;
        await store.models.register(
          projectId,
          { name: `${r}-prod`, route: r, baseModel: '/m', stage: 'production' },
          't',
        );
        await store.models.register(projectId, { name: `${r}-cand`, route: r, baseModel: '/m' }, 't');
        const experiment = await startExperiment(store, projectId, {
          name: `${r}-r1`,
          route: r,
          control: 'production',
          variants: [
            { name: 'production', model: `${r}-prod`, upstream: 'up', weight: 0.5 },
            { name: 'candidate', model: `${r}-cand`, upstream: 'up', weight: 0.5 },
          ],
        });
        await store.models.setStage(projectId, `${r}-cand`, 'canary', 't', 'canary');
        const round = await store.loops.start(projectId, r, 'decide', {}, 't');
        await store.loops.advance(projectId, round.id, {
          from: 'decide',
          to: 'decide',
          actor: 't',
          state: {
            production: `${r}-prod`,
            candidate: `${r}-cand`,
            experimentId: experiment.id,
            decision: 'ship',
          },
        });
        const policy = LoopPolicy.parse({ route: r, baseModel: '/m', upstream: 'up', promotion });
        expect(
          await advanceLoop({ store, projectId, policy, modelsBaseUrl: 'http://127.0.0.1:9/v1' }),
        ).toMatchObject({
          stage: 'done',
          status: 'succeeded',
        });
        const [watch] = await store.watches.list(projectId, { route: r, open: true });
        return watch!;
      }
      for (const r of ['looped', 'routed'])
        await t.call(`/api/v1/routes/${r}/watch-policy`, {
          method: 'PUT',
          body: { holdbackShare: 0.15, hours: 6 },
        });
      const fromLoop = await shipped('looped', { watch: { holdbackShare: 0.25, users: 2000 } });
      expect(fromLoop.policy).toMatchObject({ holdbackShare: 0.25, users: 2000, hours: 24 });
      expect(await holdbackWeight('looped')).toBe(0.25);
      const fromRoute = await shipped('routed', {});
      expect(fromRoute.policy).toMatchObject({ holdbackShare: 0.15, hours: 6 });
      expect(await holdbackWeight('routed')).toBe(0.15);
      // The loop policy file is checked by the same schema, the field named.
      expect(() =>
        LoopPolicy.parse({ route: 'x', baseModel: '/m', promotion: { watch: { holdbackShare: 0.9 } } }),
      ).toThrow(/holdbackShare/);
    });

    // Spawns the CLI: seconds each from TypeScript source on a loaded machine.
    it('`ratchet watch policy` shows, sets (flags laid over the stored policy), refuses and resets', async () => {
      const env = { RATCHET_DATABASE_URL: url };
      const base = ['watch', 'policy', '--project', 'policied', '--route', 'cli'];
      const set = await runCli([...base, '--holdback-share', '0.1', '--hours', '3'], env);
      expect(set.code, set.stderr).toBe(0);
      expect(set.stdout).toMatch(/^cli: set by cli /);
      expect(set.stdout).toMatch(/--holdback-share +0\.1\n/);
      expect(set.stdout).toMatch(/--hours +3\n/);
      const more = await runCli([...base, '--thumbs-up-drop', '0.02', '--json'], env);
      expect(JSON.parse(more.stdout)).toMatchObject({
        configured: true,
        policy: { holdbackShare: 0.1, hours: 3, harm: { thumbsUpDrop: 0.02 } },
      });
      const bad = await runCli([...base, '--holdback-share', '0.9'], env);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/--holdback-share 0\.9: holdbackShare: /);
      const notNumber = await runCli([...base, '--users', 'many'], env);
      expect(notNumber.stderr).toMatch(/--users many: users: /);
      expect((await t.store.watches.policyOf(t.projectId, 'cli'))?.policy).toMatchObject({
        holdbackShare: 0.1,
      });
      const reset = await runCli([...base, '--reset'], env);
      expect(reset.stdout).toMatch(/^cli: the defaults \(no policy set\)/);
      expect(reset.stdout).toMatch(/--holdback-share +0\.05\n/);
      expect(await t.store.watches.policyOf(t.projectId, 'cli')).toBeUndefined();
    }, 120_000);
  });
}
