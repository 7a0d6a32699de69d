import { advanceLoop, type LoopContext, LoopPolicy, startExperiment } from '@ratchet/loop';
import { startTestServer, type TestServer } from '@ratchet/server/testing';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../test-utils/process.js';

/**
 * `promotion.auto: false`: a round whose experiment shipped waits for a person. Nothing changes
 * while it waits; an approval promotes the candidate (the route serves it), a rejection keeps
 * production; both are audited with who answered, through the store, the API and the CLI.
 */
for (const db of testDatabases()) {
  describe(`a round awaiting approval (${db.name})`, () => {
    const servers: TestServer[] = [];
    afterAll(async () => {
      for (const s of servers) await s.close();
      await db.cleanup();
    });

    /** A route with production and a candidate in an experiment the loop has judged `ship`. */
    async function shippedRound(t: TestServer, route: string) {
      const policy = LoopPolicy.parse({ route, baseModel: '/m', upstream: 'up', promotion: { auto: false } });
      const { store, projectId } = t;
      await store.models.register(
        projectId,
        { name: `${route}-prod`, route, baseModel: '/m', stage: 'production' },
        't',
      );
      await store.models.register(projectId, { name: `${route}-cand`, route, baseModel: '/m' }, 't');
      const experiment = await startExperiment(store, projectId, {
        name: `${route}-r1`,
        route,
        control: 'production',
        variants: [
          { name: 'production', model: `${route}-prod`, upstream: 'up', weight: 0.5 },
          { name: 'candidate', model: `${route}-cand`, upstream: 'up', weight: 0.5 },
        ],
      });
      await store.models.setStage(projectId, `${route}-cand`, 'canary', 't', 'canary');
      const round = await store.loops.start(projectId, route, 'decide', {}, 't');
      await store.loops.advance(projectId, round.id, {
        from: 'decide',
        to: 'decide',
        actor: 't',
        state: {
          production: `${route}-prod`,
          candidate: `${route}-cand`,
          experimentId: experiment.id,
          decision: 'ship',
          decisionReasons: ['planted'],
        },
      });
      const ctx: LoopContext = { store, projectId, policy, modelsBaseUrl: 'http://127.0.0.1:9/v1' };
      return { ctx, roundId: round.id };
    }

    const stageOf = async (t: TestServer, name: string) =>
      (await t.store.models.get(t.projectId, name))!.stage;
    const served = async (t: TestServer, route: string) =>
      (await t.store.routes.get(t.projectId, route))!.variants.map((v) => `${v.model}@${v.weight}`).sort();
    const actions = async (t: TestServer, subjectId: string) =>
      (await t.store.audit.list(t.projectId, { subjectId })).map((a) => `${a.action} by ${a.actor}`);

    it('waits without changing anything, then an approval through the API promotes the candidate', async () => {
      const t = await startTestServer(await db.create(), {
        gateway: { upstreams: { up: { baseURL: 'http://127.0.0.1:9/v1' } } },
      });
      servers.push(t);
      const { ctx, roundId } = await shippedRound(t, 'bot');

      const waiting = await advanceLoop(ctx);
      expect(waiting).toMatchObject({ status: 'awaiting_approval', stage: 'decide' });
      // Asked again, it still waits: no promotion on faith.
      expect(await advanceLoop(ctx)).toMatchObject({ status: 'awaiting_approval' });
      expect(await stageOf(t, 'bot-cand')).toBe('canary');
      expect(await stageOf(t, 'bot-prod')).toBe('production');
      expect(await served(t, 'bot')).toEqual(['bot-cand@0.5', 'bot-prod@0.5']);

      const listed = await t.call('/api/v1/loop/rounds?route=bot');
      expect(listed.status).toBe(200);
      expect(listed.body.items[0]).toMatchObject({ id: roundId, status: 'awaiting_approval' });
      // A rejection must say why.
      const noReason = await t.call(`/api/v1/loop/rounds/${roundId}/reject`, { method: 'POST', body: {} });
      expect(noReason.status).toBe(400);
      expect(noReason.body.error.path).toBe('reason');

      const approved = await t.call(`/api/v1/loop/rounds/${roundId}/approve`, {
        method: 'POST',
        body: { reason: 'looked at the examples' },
      });
      expect(approved.status).toBe(200);
      expect(approved.body).toMatchObject({ status: 'running', state: { approval: { approved: true } } });
      // The answer lands once.
      const again = await t.call(`/api/v1/loop/rounds/${roundId}/approve`, { method: 'POST', body: {} });
      expect(again.status).toBe(409);

      const done = await advanceLoop(ctx);
      expect(done).toMatchObject({ stage: 'done', status: 'succeeded' });
      expect(await stageOf(t, 'bot-cand')).toBe('production');
      expect(await stageOf(t, 'bot-prod')).toBe('archived');
      // The promotion opened a watch: the replaced model keeps its 5% holdback.
      expect(await served(t, 'bot')).toEqual(['bot-cand@0.95', 'bot-prod@0.05']);
      const approver = approved.body.state.approval.actor as string;
      expect(approver).toMatch(/^api:/);
      expect(await actions(t, roundId)).toEqual(
        expect.arrayContaining([
          'loop.round.awaiting_approval by loop',
          `loop.round.approved by ${approver}`,
        ]),
      );
      // The promotion itself is the approver's act.
      const cand = (await t.store.models.get(t.projectId, 'bot-cand'))!;
      expect(await actions(t, cand.id)).toContain(`model.stage by ${approver}`);
    });

    /** A round at its experiment stage: production and a candidate sharing the route, undecided. */
    async function canaryRound(t: TestServer, route: string) {
      const { ctx, roundId } = await shippedRound(t, route);
      const state = (await t.store.loops.current(t.projectId, route))!.state;
      await t.store.loops.advance(t.projectId, roundId, {
        from: 'decide',
        to: 'experiment',
        actor: 't',
        state: { ...state, decision: undefined, decisionReasons: undefined },
      });
      return { ctx, roundId, experimentId: (state as { experimentId: string }).experimentId };
    }

    it('a canary a person stops through the API ends its round by their choice, not a stuck test', async () => {
      const t = await startTestServer(await db.create(), {
        gateway: { upstreams: { up: { baseURL: 'http://127.0.0.1:9/v1' } } },
      });
      servers.push(t);
      // Keeping production: the round ends rolled back, the candidate archived, the route production's.
      const kept = await canaryRound(t, 'mail');
      expect(await advanceLoop(kept.ctx)).toMatchObject({ stage: 'experiment', status: 'running' });
      const stop = await t.call(`/api/v1/experiments/${kept.experimentId}/stop`, {
        method: 'POST',
        body: { reason: 'traffic ended before the test decided', keep: 'production' },
      });
      expect(stop.status).toBe(200);
      const ended = await advanceLoop(kept.ctx);
      expect(ended).toMatchObject({ stage: 'done', status: 'rolled_back' });
      expect(ended!.state).toMatchObject({ decision: 'stopped' });
      expect(String((ended!.state as { decisionReasons: string[] }).decisionReasons[0])).toMatch(
        /^stopped by api:.*traffic ended before the test decided/,
      );
      expect(await stageOf(t, 'mail-prod')).toBe('production');
      expect(await stageOf(t, 'mail-cand')).toBe('archived');
      expect(await served(t, 'mail')).toEqual(['mail-prod@1']);
      expect(await t.store.loops.current(t.projectId, 'mail')).toBeUndefined();

      // Keeping the candidate is the person's approval: it is promoted, as their act.
      const chosen = await canaryRound(t, 'chat');
      const pick = await t.call(`/api/v1/experiments/${chosen.experimentId}/stop`, {
        method: 'POST',
        body: { reason: 'the examples convinced me', keep: 'candidate' },
      });
      expect(pick.status).toBe(200);
      expect(await advanceLoop(chosen.ctx)).toMatchObject({ stage: 'done', status: 'succeeded' });
      expect(await stageOf(t, 'chat-cand')).toBe('production');
      expect(await stageOf(t, 'chat-prod')).toBe('archived');
      const cand = (await t.store.models.get(t.projectId, 'chat-cand'))!;
      expect((await actions(t, cand.id)).some((a) => /^model\.stage by api:/.test(a))).toBe(true);
    });

    // Spawns the CLI four times: seconds each from TypeScript source on a loaded machine.
    it('a rejection from the CLI keeps production on the route and archives the candidate', async () => {
      const url = await db.create();
      const t = await startTestServer(url, {
        gateway: { upstreams: { up: { baseURL: 'http://127.0.0.1:9/v1' } } },
      });
      servers.push(t);
      const { ctx, roundId } = await shippedRound(t, 'desk');
      await advanceLoop(ctx);

      const status = await runCli(['loop', 'status', '--project', 'test', '--route', 'desk'], {
        RATCHET_DATABASE_URL: url,
      });
      expect(status.stdout).toContain('awaiting approval');
      const noReason = await runCli(['loop', 'reject', '--project', 'test', '--route', 'desk'], {
        RATCHET_DATABASE_URL: url,
      });
      expect(noReason.code).not.toBe(0);
      expect(noReason.stderr).toContain('--reason');
      const rejected = await runCli(
        ['loop', 'reject', '--project', 'test', '--route', 'desk', '--reason', 'answers too long'],
        { RATCHET_DATABASE_URL: url, USER: 'carol' },
      );
      expect(rejected.code, rejected.stderr).toBe(0);
      expect(rejected.stdout).toContain('rejected');

      const done = await advanceLoop(ctx);
      expect(done).toMatchObject({ stage: 'done', status: 'rejected' });
      expect(await stageOf(t, 'desk-prod')).toBe('production');
      expect(await stageOf(t, 'desk-cand')).toBe('archived');
      expect(await served(t, 'desk')).toEqual(['desk-prod@1']);
      expect(await actions(t, roundId)).toContain('loop.round.rejected_by_person by cli:carol');
      const approveLate = await runCli(['loop', 'approve', '--project', 'test', '--route', 'desk'], {
        RATCHET_DATABASE_URL: url,
      });
      expect(approveLate.code).not.toBe(0);
      expect(approveLate.stderr).toContain('no round awaiting approval');
    }, 180_000);
  });
}
