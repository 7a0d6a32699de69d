import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';

describe('ratings to training data over HTTP', () => {
  const db = sqliteTestDatabase();
  let t: TestServer;

  beforeAll(async () => {
    t = await startTestServer(await db.create(), {
      config: { dataDir: mkdtempSync(join(tmpdir(), 'ratchet-http-data-')) },
    });
    const items = Array.from({ length: 24 }, (_, i) => ({
      id: `i${i}`,
      model: 'm',
      messages: [{ role: 'user', content: `question ${i % 6}` }],
      output: `answer ${i}`,
    }));
    expect((await t.call('/api/v1/interactions', { body: { items } })).status).toBe(201);
    const feedback = items.flatMap((it, i) =>
      ['a', 'b', 'c'].map((r) => ({ kind: 'stars', interactionId: it.id, raterId: r, value: i % 2 ? 5 : 1 })),
    );
    expect((await t.call('/api/v1/feedback', { body: { items: feedback } })).status).toBe(201);
  });
  afterAll(async () => {
    await t?.close();
    await db.cleanup();
  });

  it('calibrates, builds a dataset version, pages its rows and shows membership', async () => {
    const run = await t.call('/api/v1/calibrations', { body: {} });
    expect(run).toMatchObject({ status: 201, body: { ratings: 72, items: 24, raters: 3 } });
    const built = await t.call('/api/v1/datasets', {
      body: {
        name: 'http-kto',
        method: 'kto',
        curation: false,
        options: { split: { by: 'prompt', testFraction: 0 } },
      },
    });
    expect(built).toMatchObject({ status: 201, body: { name: 'http-kto', version: 1, rowCount: 24 } });
    const rows = await t.call('/api/v1/datasets/http-kto/rows?limit=5&offset=2');
    expect(rows.body.items).toHaveLength(5);
    expect(rows.body.items[0]).toMatchObject({
      row: { label: expect.any(Boolean) },
      lineage: { split: 'train' },
    });
    const interaction = await t.call('/api/v1/interactions/i1');
    expect(interaction.body.reward.reward).toBeGreaterThan(0);
    expect(interaction.body.datasets).toEqual([
      { datasetId: built.body.id, name: 'http-kto', version: 1, split: 'train' },
    ]);
    const analysis = await t.call('/api/v1/analysis');
    expect(analysis.body.agreement.criteria.stars.alpha).toBeCloseTo(1, 9);
  });

  it('rejects a bad build spec naming the field, and an unknown dataset with 404', async () => {
    const bad = await t.call('/api/v1/datasets', { body: { name: 'x', method: 'ppo' } });
    expect(bad).toMatchObject({ status: 400, body: { error: { path: 'method' } } });
    expect((await t.call('/api/v1/datasets/none')).status).toBe(404);
    expect(
      (await t.call('/api/v1/calibrations', { body: { calibration: { maxIterations: -1 } } })).body.error
        .path,
    ).toBe('calibration.maxIterations');
    const badReference = await t.call('/api/v1/calibrations', { body: { reference: 'vibes' } });
    expect(badReference).toMatchObject({ status: 400, body: { error: { path: 'reference' } } });
  });

  it('screens raters against the word-model reference when asked, and counts its ratings apart', async () => {
    const run = await t.call('/api/v1/calibrations', { body: { reference: 'words' } });
    // Three raters agree on every answer: the reference rates each of the 24 once and flags nobody.
    expect(run).toMatchObject({
      status: 201,
      body: { ratings: 72, items: 24, raters: 3, referenceRatings: 24, flaggedByReference: 0, flagged: 0 },
    });
    const latest = await t.call('/api/v1/calibrations/latest');
    expect(latest.body.options).toMatchObject({ reference: 'words' });
  });
});
