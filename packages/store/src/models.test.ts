import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RatchetError } from '@ratchet/core';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GatewayFacts } from './serving.js';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

/** A gateway file with one upstream that its route `support` and unrouted names go to. */
const gateway: GatewayFacts = {
  upstreams: ['local'],
  routeUpstreams: { support: 'local' },
  defaultUpstream: 'local',
};

for (const target of testDatabases()) {
  describe(`model registry on ${target.name}`, () => {
    let store: Store;
    let projectId: string;

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('registry')).id;
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('promotes through the stages, replacing production, and rolls back to the replaced model', async () => {
      const a = await store.models.register(
        projectId,
        { name: 'bot-v1', route: 'support', baseModel: 'tiny' },
        'test',
      );
      await store.models.setStage(projectId, a.id, 'production', 'test', 'first model', gateway);
      const adapter = mkdtempSync(join(tmpdir(), 'ratchet-adapter-'));
      await store.models.register(
        projectId,
        { name: 'bot-v2', route: 'support', baseModel: 'tiny', adapterPath: adapter },
        'test',
      );
      await store.models.setStage(projectId, 'bot-v2', 'canary', 'test', 'gate passed');
      await store.models.setStage(projectId, 'bot-v2', 'production', 'test', 'experiment shipped', gateway);
      expect((await store.models.get(projectId, a.id))?.stage).toBe('archived');
      expect((await store.models.production(projectId, 'support'))?.name).toBe('bot-v2');

      // No gateway facts needed: the route's database entry names the upstream that serves it.
      const { from, to } = await store.models.rollback(projectId, 'support', 'test', 'complaints spiked');
      expect([from.name, from.stage, to.name, to.stage]).toEqual([
        'bot-v2',
        'archived',
        'bot-v1',
        'production',
      ]);
      expect((await store.models.production(projectId, 'support'))?.id).toBe(a.id);
      await expect(store.models.rollback(projectId, 'support', 'test', 'again')).rejects.toThrow(
        /no earlier production model/,
      );

      const log = await store.audit.list(projectId, { subjectType: 'model' });
      expect(log.map((e) => e.action).reverse()).toEqual([
        'model.registered',
        'model.stage',
        'model.registered',
        'model.stage',
        'model.replaced',
        'model.stage',
        // Replacing a production model opens a watch; the rollback closes it.
        'watch.opened',
        'model.rolled_back',
        'model.restored',
        'watch.rolled_back',
      ]);
      expect(log[0]).toMatchObject({
        actor: 'test',
        details: { route: 'support', reason: 'complaints spiked' },
      });
    });

    it('refuses moves the lifecycle does not allow, and unknown models, changing nothing', async () => {
      const before = (await store.audit.list(projectId, { limit: 1000 })).length;
      await expect(store.models.setStage(projectId, 'bot-v1', 'canary', 'test', 'x')).rejects.toMatchObject({
        code: 'conflict',
        path: 'stage',
      });
      await expect(
        store.models.setStage(projectId, 'nope', 'production', 'test', 'x'),
      ).rejects.toBeInstanceOf(RatchetError);
      await expect(
        store.models.register(projectId, { name: 'bot-v1', baseModel: 'tiny' }, 'test'),
      ).rejects.toMatchObject({ code: 'conflict' });
      await expect(store.models.rollback(projectId, 'other-route', 'test', 'x')).rejects.toMatchObject({
        path: 'route',
      });
      expect((await store.audit.list(projectId, { limit: 1000 })).length).toBe(before);
    });

    describe('what is served', () => {
      let url: string;
      let other: Store;
      let chat: string;
      const segment = {
        name: 'busy',
        upstream: 'local',
        model: 'busy-adapter',
        weight: 1,
        segment: { tag: 'segment:busy' },
      };
      beforeAll(async () => {
        url = await target.create();
        store = await Store.open(url);
        other = await Store.open(url);
        chat = (await store.projects.create('serving')).id;
        for (const name of ['chat-v1', 'chat-v2', 'chat-v3'])
          await store.models.register(chat, { name, route: 'chat', baseModel: 'tiny' }, 'test');
      });
      afterAll(async () => {
        await other?.close();
      });

      /** Everything a refused change must leave as it was. */
      const snapshot = async () => ({
        stages: (await store.models.list(chat)).map((m) => [m.name, m.stage]),
        routes: await store.routes.list(chat),
        audit: (await store.audit.list(chat, { limit: 1000 })).length,
        version: await store.routes.version(),
      });

      it('a stage change writes the route in its transaction, keeps segments, and wakes another Store at once', async () => {
        const heard: number[] = [];
        const stop = other.routes.subscribe(() => {
          heard.push(Date.now());
        });
        await store.routes.put(chat, 'chat', [segment]);
        const start = Date.now();
        const m = await store.models.setStage(chat, 'chat-v1', 'production', 'test', 'first', gateway);
        const served = [
          segment,
          { name: 'production', upstream: 'local', model: 'chat-v1', weight: 1, modelId: m.id },
        ];
        expect(m.served).toEqual({ route: 'chat', variants: served });
        expect((await store.routes.get(chat, 'chat'))?.variants).toEqual(served);
        const [entry] = await store.audit.list(chat, { subjectType: 'route', action: 'route.served' });
        expect(entry).toMatchObject({ subjectId: 'chat', details: { from: [segment], to: served } });
        // In-process listeners have run by the time the change returns (PostgreSQL: LISTEN too).
        await expect.poll(() => heard.filter((t) => t >= start).length, { timeout: 1000 }).toBeGreaterThan(0);

        await store.models.setStage(chat, 'chat-v2', 'production', 'test', 'better', gateway);
        // chat-v1 stays on as the watch's holdback (5% of the users), segments untouched.
        expect(
          (await store.routes.get(chat, 'chat'))?.variants.map((v) => [v.name, v.model, v.weight]),
        ).toEqual([
          ['busy', 'busy-adapter', 1],
          ['production', 'chat-v2', 0.95],
          ['holdback', 'chat-v1', 0.05],
        ]);
        // Production leaving production: the gateway file's route takes the calls of no segment.
        const file = { ...gateway, routeUpstreams: { chat: 'local' } };
        const archived = await store.models.setStage(chat, 'chat-v2', 'archived', 'test', 'bad', file);
        expect(archived.served).toEqual({ route: 'chat', variants: [segment] });
        await store.routes.delete(chat, 'chat');
        await stop();
      });

      it('another process on the database hears a change it did not make within a second', async () => {
        const heard: number[] = [];
        const stop = store.routes.subscribe(() => {
          heard.push(Date.now());
        });
        await new Promise((r) => setTimeout(r, 300)); // the poll's first read of the version
        const start = Date.now();
        // Written through `other`'s connection without its in-process signal: what another
        // process's write looks like here (SQLite: the version poll; PostgreSQL: NOTIFY).
        await other.db.transaction().execute((trx) => other.routes.put(chat, 'elsewhere', [segment], trx));
        await expect.poll(() => heard.find((t) => t >= start), { timeout: 1000, interval: 20 }).toBeDefined();
        expect(heard.find((t) => t >= start)! - start).toBeLessThan(1000);
        await other.routes.delete(chat, 'elsewhere');
        await stop();
      });

      it.runIf(target.name === 'postgres')(
        'after its LISTEN connection is cut, a subscriber reconnects and hears changes again',
        async () => {
          const heard: number[] = [];
          // No poll within the test: only LISTEN can hear the change.
          const stop = store.routes.subscribe(() => void heard.push(Date.now()), { pollMs: 600_000 });
          await new Promise((r) => setTimeout(r, 300));
          const cut = await sql<{
            cut: boolean;
          }>`select pg_terminate_backend(pid) as cut from pg_stat_activity
            where datname = current_database() and query = 'listen ratchet_gateway_routes'`.execute(other.db);
          expect(cut.rows.length).toBeGreaterThan(0);
          // Reconnected after a second, it reloads once for what it may have missed.
          await expect.poll(() => heard.length, { timeout: 3000 }).toBeGreaterThan(0);
          const start = Date.now();
          await other.db.transaction().execute((trx) => other.routes.put(chat, 'cut', [segment], trx));
          await expect
            .poll(() => heard.find((t) => t >= start), { timeout: 1000, interval: 20 })
            .toBeDefined();
          await other.routes.delete(chat, 'cut');
          await stop();
        },
      );

      it('refuses a stage change that cannot be served, changing nothing', async () => {
        await store.models.setStage(chat, 'chat-v3', 'production', 'test', 'baseline', gateway);
        await store.models.register(
          chat,
          { name: 'elsewhere-v1', route: 'fresh', baseModel: 'tiny' },
          'test',
        );
        let before = await snapshot();
        const refused = async (p: Promise<unknown>, message: RegExp, path = 'stage') => {
          await expect(p).rejects.toMatchObject({
            code: 'conflict',
            path,
            message: expect.stringMatching(message),
          });
          expect(await snapshot()).toEqual(before);
        };
        await refused(
          store.models.setStage(chat, 'elsewhere-v1', 'production', 'test', 'x'),
          /no upstream can serve "elsewhere-v1" on route "fresh".*no gateway file/,
        );
        await refused(
          store.models.setStage(chat, 'elsewhere-v1', 'production', 'test', 'x', {
            upstreams: ['local'],
            routeUpstreams: {},
          }),
          /neither a route "fresh" nor a defaultUpstream/,
        );
        await refused(
          store.models.setStage(chat, 'chat-v2', 'production', 'test', 'x', {
            ...gateway,
            upstreams: ['remote'],
          }),
          /upstream "local", which the gateway file does not define/,
        );
        const missing = join(tmpdir(), 'ratchet-no-such-adapter');
        await store.models.register(
          chat,
          { name: 'chat-v4', route: 'chat', baseModel: 'tiny', adapterPath: missing },
          'test',
        );
        before = await snapshot();
        await expect(
          store.models.setStage(chat, 'chat-v4', 'production', 'test', 'x', gateway),
        ).rejects.toThrow(`its adapter folder ${missing} does not exist`);
        expect(await snapshot()).toEqual(before);
        await refused(
          store.models.setStage(chat, 'chat-v3', 'archived', 'test', 'x', gateway),
          /route "chat" would serve nothing without a production model/,
        );
      });

      it('refuses stage changes on a route an experiment runs on', async () => {
        const v2 = (await store.models.get(chat, 'chat-v2'))!;
        await store.experiments.start(
          chat,
          {
            name: 'tone',
            route: 'chat',
            control: 'a',
            variants: [
              { name: 'a', upstream: 'local', model: 'chat-v3', weight: 0.5 },
              { name: 'b', upstream: 'local', model: 'chat-v2', weight: 0.5, modelId: v2.id },
            ],
            metric: 'thumbs_up_rate',
            engine: 'msprt',
            decisionRule: {},
            bandit: false,
          },
          'test',
        );
        const before = await snapshot();
        for (const [change, path] of [
          [() => store.models.setStage(chat, 'chat-v1', 'production', 'test', 'x', gateway), 'stage'],
          [() => store.models.rollback(chat, 'chat', 'test', 'x', gateway), 'route'],
          [() => store.models.setStage(chat, 'chat-v2', 'candidate', 'test', 'x', gateway), 'stage'],
        ] as const) {
          await expect(change()).rejects.toMatchObject({
            code: 'conflict',
            path,
            message: expect.stringContaining('experiment "tone" runs on route "chat"'),
          });
        }
        expect(await snapshot()).toEqual(before);
      });
    });
  });
}
