import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type LocalUpstream,
  startLocalUpstream,
  startTestServer,
  type TestServer,
} from '@ratchet/server/testing';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from './main.js';
import { runCli } from './test-utils/process.js';

/**
 * What is served is what the registry says: after a stage change made through the API, the CLI
 * in this process, or the CLI in another process, the next calls through the real gateway are
 * answered by the model the registry now calls production, within a second; a change that
 * cannot be served is refused and changes nothing.
 */
for (const target of testDatabases()) {
  describe(`the gateway serves the registry's production model on ${target.name}`, () => {
    let upstream: LocalUpstream;
    let t: TestServer;
    let url: string;
    let gatewayFile: string;

    beforeAll(async () => {
      // The upstream answers with the model name it was asked for: the answer says who served it.
      upstream = await startLocalUpstream({
        answer: (body) => `served by ${String(body.model)}`,
        record: false,
      });
      const gateway = { upstreams: { local: { baseURL: upstream.url } }, defaultUpstream: 'local' };
      gatewayFile = join(mkdtempSync(join(tmpdir(), 'ratchet-served-')), 'gateway.json');
      writeFileSync(gatewayFile, JSON.stringify(gateway));
      url = await target.create();
      t = await startTestServer(url, { gateway, project: 'served' });
      for (const name of ['tiny-support', 'support-bot-r3', 'support-bot-r4'])
        await t.store.models.register(
          t.projectId,
          {
            name,
            route: 'support-bot',
            baseModel: 'tiny',
            // r4's adapter was never written (a crashed training run): it cannot be served.
            ...(name === 'support-bot-r4' ? { adapterPath: join(tmpdir(), 'ratchet-never-written') } : {}),
          },
          'test',
        );
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await target.cleanup();
    });

    const answer = async (): Promise<string> => {
      const res = await t.call('/v1/chat/completions', {
        // One end user throughout: a promotion over a production model opens a watch that keeps
        // 5% of the users (sticky) on the replaced model; this user is in the other 95%.
        body: {
          model: 'support-bot',
          user: 'served-test-user',
          messages: [{ role: 'user', content: 'Where is my refund?' }],
        },
      });
      expect(res.status).toBe(200);
      return res.body.choices[0].message.content;
    };

    /** Milliseconds from `since` until the gateway answers with `model`; then ten more calls agree. */
    const servedAfter = async (model: string, since: number): Promise<number> => {
      let elapsed = Number.POSITIVE_INFINITY;
      while (Date.now() - since < 3000) {
        if ((await answer()) === `served by ${model}`) {
          elapsed = Date.now() - since;
          break;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      for (let i = 0; i < 10; i++) expect(await answer()).toBe(`served by ${model}`);
      return elapsed;
    };

    /**
     * Calls the gateway until it answers with `model` and returns when it first did; the caller
     * makes the change meanwhile. Measured against the change's own time (its `route.served`
     * audit entry, written just before the commit), not against when a process exited.
     */
    const firstServed = async (model: string): Promise<number> => {
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline) {
        if ((await answer()) === `served by ${model}`) return Date.now();
        await new Promise((r) => setTimeout(r, 5));
      }
      return Number.POSITIVE_INFINITY;
    };
    const changedAt = async (): Promise<number> =>
      (await t.store.audit.list(t.projectId, { action: 'route.served', limit: 1 }))[0]!.createdAt;

    const stage = (model: string, to: string, reason: string) =>
      t.call(`/api/v1/models/${model}/stage`, { body: { stage: to, reason } });

    it('a stage change through the API is served at once', async () => {
      let since = Date.now();
      expect((await stage('tiny-support', 'production', 'baseline')).status).toBe(200);
      expect(await servedAfter('tiny-support', since)).toBeLessThan(1000);
      since = Date.now();
      expect((await stage('support-bot-r3', 'production', 'won the canary')).status).toBe(200);
      expect(await servedAfter('support-bot-r3', since)).toBeLessThan(1000);
    });

    it('`ratchet rollback` run in this process is served within a second', async () => {
      await main([
        'node',
        'ratchet',
        '--database-url',
        url,
        'rollback',
        '--project',
        'served',
        '--route',
        'support-bot',
        '--reason',
        'complaints spiked',
      ]);
      const since = Date.now();
      expect(await servedAfter('tiny-support', since)).toBeLessThan(1000);
      expect((await t.store.models.production(t.projectId, 'support-bot'))?.name).toBe('tiny-support');
    });

    it('`ratchet rollback` in another process is served by this one within a second', async () => {
      expect((await stage('support-bot-r3', 'production', 'fixed')).status).toBe(200);
      expect(await servedAfter('support-bot-r3', Date.now())).toBeLessThan(1000);
      const seen = firstServed('tiny-support');
      const run = await runCli(
        [
          'rollback',
          '--project',
          'served',
          '--route',
          'support-bot',
          '--reason',
          'complaints again',
          '--gateway-config',
          gatewayFile,
        ],
        { RATCHET_DATABASE_URL: url },
      );
      expect(run, run.stderr).toMatchObject({ code: 0 });
      expect(run.stdout).toContain('support-bot serves tiny-support@local:1');
      // SQLite: this process's poll of the route version; PostgreSQL: LISTEN/NOTIFY.
      expect((await seen) - (await changedAt())).toBeLessThan(1000);
      expect(await servedAfter('tiny-support', Date.now())).toBeLessThan(1000);
    }, 90_000);

    it('a stage change that cannot be served is refused, and nothing changes', async () => {
      const snapshot = async () => ({
        models: (await t.store.models.list(t.projectId)).map((m) => [m.name, m.stage]),
        routes: await t.store.routes.list(t.projectId),
        audit: await t.store.audit.list(t.projectId, { limit: 1000 }),
      });
      const before = await snapshot();
      const refused = await stage('support-bot-r4', 'production', 'looks good');
      expect(refused).toMatchObject({ status: 409, body: { error: { code: 'conflict', path: 'stage' } } });
      expect(refused.body.error.message).toMatch(
        /cannot serve "support-bot-r4": its adapter folder .* does not exist/,
      );
      expect(await snapshot()).toEqual(before);
      for (let i = 0; i < 5; i++) expect(await answer()).toBe('served by tiny-support');
    });
  });
}
