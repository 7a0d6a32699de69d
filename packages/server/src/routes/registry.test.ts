import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';

describe('model registry over HTTP', () => {
  const db = sqliteTestDatabase();
  let t: TestServer;
  beforeAll(async () => {
    // Stage changes are checked against the gateway file: `support` calls go to `local`.
    t = await startTestServer(await db.create(), {
      gateway: { upstreams: { local: { baseURL: 'http://127.0.0.1:9/v1' } }, defaultUpstream: 'local' },
    });
  });
  afterAll(async () => {
    await t?.close();
    await db.cleanup();
  });

  it('registers, promotes, rolls back, and keeps the history', async () => {
    for (const name of ['v1', 'v2']) {
      expect(
        (await t.call('/api/v1/models', { body: { name, route: 'support', baseModel: 'tiny' } })).status,
      ).toBe(201);
    }
    expect(
      (await t.call('/api/v1/models/v1/stage', { body: { stage: 'production', reason: 'baseline' } })).body
        .stage,
    ).toBe('production');
    expect(
      (
        await t.call('/api/v1/models/v2/stage', {
          body: { stage: 'production', reason: 'won the experiment' },
        })
      ).status,
    ).toBe(200);
    expect(
      (await t.call('/api/v1/models?stage=production')).body.items.map((m: { name: string }) => m.name),
    ).toEqual(['v2']);
    const rolled = await t.call('/api/v1/routes/support/rollback', { body: { reason: 'regression' } });
    expect(rolled.body).toMatchObject({
      from: { name: 'v2', stage: 'archived' },
      to: { name: 'v1', stage: 'production' },
      served: { route: 'support', variants: [{ upstream: 'local', model: 'v1', weight: 1 }] },
    });
    const v2 = await t.call('/api/v1/models/v2');
    // The hand promotion over v1 opened a watch; the rollback closed it.
    expect(v2.body.history.map((h: { action: string }) => h.action)).toEqual([
      'watch.rolled_back',
      'model.rolled_back',
      'watch.opened',
      'model.stage',
      'model.registered',
    ]);
    expect(v2.body.history[0].actor).toMatch(/^api:/);
  });

  it('answers bad moves and input with the field named', async () => {
    expect(await t.call('/api/v1/models/v1/stage', { body: { stage: 'canary', reason: 'x' } })).toMatchObject(
      { status: 409, body: { error: { path: 'stage' } } },
    );
    expect(await t.call('/api/v1/models/v1/stage', { body: { stage: 'live', reason: 'x' } })).toMatchObject({
      status: 400,
      body: { error: { path: 'stage' } },
    });
    expect(await t.call('/api/v1/models/v1/stage', { body: { stage: 'archived' } })).toMatchObject({
      status: 400,
      body: { error: { path: 'reason' } },
    });
    expect(
      (await t.call('/api/v1/models/none/stage', { body: { stage: 'canary', reason: 'x' } })).status,
    ).toBe(404);
    expect((await t.call('/api/v1/models', { key: t.publicKey })).status).toBe(403);
  });
});
