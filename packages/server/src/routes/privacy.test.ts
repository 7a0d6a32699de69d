import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deletionSubjectHash, type Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';

/** The end user whose data goes, and words only their interactions contain. */
const alice = 'alice@example.com';
const aliceWords = 'ALICE-PRIVATE';
const bob = 'bob-42';

const interaction = (id: string, userId: string, words: string) => ({
  id,
  model: 'tiny',
  route: 'support',
  userId,
  tags: ['segment:vip'],
  messages: [{ role: 'user', content: `${words} question ${id}` }],
  output: `${words} answer ${id}`,
});

const ktoSpec = (name: string) => ({
  name,
  method: 'kto',
  curation: false,
  options: { requireConfidentSign: false, margin: 0, split: { by: 'prompt', testFraction: 0 } },
});

/** Every row of every table, as text: where deleted data could remain in the database. */
async function everyTableAsText(store: Store): Promise<Record<string, string>> {
  const tables =
    store.dialect === 'sqlite'
      ? (
          await sql<{
            name: string;
          }>`select name from sqlite_master where type = 'table' and name not like 'sqlite_%'`.execute(
            store.db,
          )
        ).rows.map((r) => r.name)
      : (
          await sql<{
            name: string;
          }>`select table_name as name from information_schema.tables where table_schema = 'public'`.execute(
            store.db,
          )
        ).rows.map((r) => r.name);
  const out: Record<string, string> = {};
  for (const table of tables) {
    const rows = await sql`select * from ${sql.table(table)}`.execute(store.db);
    out[table] = JSON.stringify(rows.rows, (_k, v) => (typeof v === 'bigint' ? Number(v) : v));
  }
  return out;
}

/** Every file under a folder, as text. */
function everyFileAsText(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out[path] = readFileSync(path, 'utf8');
    }
  };
  walk(dir);
  return out;
}

const containing = (texts: Record<string, string>, needle: string) =>
  Object.entries(texts)
    .filter(([, text]) => text.includes(needle))
    .map(([where]) => where);

for (const target of testDatabases()) {
  describe(`deleting an end user on ${target.name}`, () => {
    let t: TestServer;
    let dataDir: string;
    const tokens = new Map<string, string>();

    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'ratchet-privacy-'));
      t = await startTestServer(await target.create(), { config: { dataDir } });
      const items = [
        ...['a1', 'a2', 'a3'].map((id) => interaction(id, alice, aliceWords)),
        ...['b1', 'b2', 'b3'].map((id) => interaction(id, bob, 'bob')),
      ];
      const logged = await t.call('/api/v1/interactions', { body: { items } });
      expect(logged.status).toBe(201);
      for (const r of logged.body.items) tokens.set(r.id, r.feedbackToken);
      const ratings = items.flatMap((it, i) =>
        ['r1', 'r2'].map((raterId) => ({
          kind: 'thumbs',
          interactionId: it.id,
          raterId,
          source: 'annotator',
          value: i % 2 ? 'up' : 'down',
        })),
      );
      const more = [
        // Alice rates as herself, on her own answer (through her page's token) and on Bob's.
        { kind: 'thumbs', interactionId: 'b1', raterId: alice, value: 'up' },
        { kind: 'correction', interactionId: 'a1', raterId: alice, text: `${aliceWords} corrected` },
        // An annotator compares Bob's answer with Alice's: evidence made of her answer.
        {
          kind: 'preference',
          interactionId: 'b2',
          other: 'a2',
          choice: 'this',
          raterId: 'r1',
          source: 'annotator',
        },
      ];
      expect((await t.call('/api/v1/feedback', { body: { items: [...ratings, ...more] } })).status).toBe(201);
      const publicRating = await t.call('/api/v1/feedback', {
        key: t.publicKey,
        body: { kind: 'thumbs', interactionId: 'a3', value: 'up', feedbackToken: tokens.get('a3') },
      });
      expect(publicRating.status).toBe(201);
      await t.store.deadLetters.insert(t.projectId, [
        {
          interactionId: 'a-lost',
          source: 'gateway',
          reason: 'write_failed',
          error: 'refused',
          payload: {
            id: 'a-lost',
            userId: alice,
            messages: [{ role: 'user', content: `${aliceWords} lost` }],
          },
          repaired: false,
        },
        {
          interactionId: 'b-lost',
          source: 'gateway',
          reason: 'write_failed',
          error: 'refused',
          payload: { id: 'b-lost', userId: bob, messages: [{ role: 'user', content: 'bob lost' }] },
          repaired: false,
        },
      ]);
      await t.store.usage.insert(t.projectId, {
        kind: 'embeddings',
        model: 'embed',
        upstream: 'local',
        userId: alice,
        inputs: 1,
        latencyMs: 3,
        status: 'ok',
        createdAt: Date.now(),
      });
      expect((await t.call('/api/v1/calibrations', { body: {} })).status).toBe(201);
      const v1 = await t.call('/api/v1/datasets', { body: ktoSpec('kto') });
      expect(v1.status).toBe(201);
      await t.store.models.register(
        t.projectId,
        {
          name: 'support-v1',
          route: 'support',
          baseModel: 'tiny',
          datasetId: v1.body.id,
          adapterPath: join(dataDir, 'merged-v1'),
        },
        'test',
      );
      // A stacked round: trained on Bob's data only, on top of support-v1's merged weights.
      await t.store.models.register(
        t.projectId,
        { name: 'support-v2', route: 'support', baseModel: join(dataDir, 'merged-v1') },
        'test',
      );
      await t.store.models.register(
        t.projectId,
        { name: 'unrelated', route: 'support', baseModel: 'tiny' },
        'test',
      );
      // Before: Alice's words are in the database and the dataset files (the test can fail).
      expect(containing(await everyTableAsText(t.store), aliceWords).length).toBeGreaterThan(0);
      expect(containing(everyFileAsText(dataDir), aliceWords).length).toBeGreaterThan(0);
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await target.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('removes her interactions and feedback from every table and every dataset file; audits counts only', async () => {
      const res = await t.call(`/api/v1/end-users/${encodeURIComponent(alice)}`, { method: 'DELETE' });
      expect(res.status).toBe(200);
      expect(res.body.counts).toMatchObject({
        interactions: 3,
        // 2 annotators x 3 answers, her correction and public thumbs on hers, her thumbs on b1,
        // the preference against a2.
        feedback: 10,
        deadLetters: 1,
        usageRecords: 1,
        datasetMemberships: 3,
      });
      expect(res.body.counts.raters).toBeGreaterThanOrEqual(1);

      const tables = await everyTableAsText(t.store);
      expect(containing(tables, aliceWords)).toEqual([]);
      expect(containing(tables, alice)).toEqual([]);
      const files = everyFileAsText(dataDir);
      expect(containing(files, aliceWords)).toEqual([]);
      for (const id of ['a1', 'a2', 'a3']) {
        expect(await t.store.interactions.get(t.projectId, id)).toBeUndefined();
        expect(await t.store.feedback.listForInteraction(t.projectId, id)).toEqual([]);
      }
      // Bob's data stays, less what was hers (her thumbs on b1) or made of hers (the preference).
      expect((await t.call('/api/v1/interactions/b1')).status).toBe(200);
      const b1 = await t.store.feedback.listForInteraction(t.projectId, 'b1');
      expect(b1.map((f) => f.raterId).sort()).toEqual(['r1', 'r2']);
      expect((await t.store.feedback.listForInteraction(t.projectId, 'b2')).map((f) => f.kind)).toEqual([
        'thumbs',
        'thumbs',
      ]);
      expect(
        (await t.store.deadLetters.list(t.projectId, { limit: 10 })).items.map((d) => d.interactionId),
      ).toEqual(['b-lost']);

      const [entry] = await t.store.audit.list(t.projectId, { action: 'data.deleted' });
      expect(entry).toMatchObject({
        actor: expect.stringMatching(/^api:/),
        subjectType: 'end_user',
        subjectId: deletionSubjectHash(t.projectId, alice),
        details: { counts: res.body.counts },
      });
      const audited = JSON.stringify(entry);
      expect(audited).not.toContain(alice);
      expect(audited).not.toContain(aliceWords);
    });

    it('her feedback token no longer writes anything', async () => {
      const before = await t.store.feedback.listForInteraction(t.projectId, 'b1');
      const late = await t.call('/api/v1/feedback', {
        key: t.publicKey,
        body: { kind: 'thumbs', interactionId: 'a1', value: 'down', feedbackToken: tokens.get('a1') },
      });
      expect([403, 404]).toContain(late.status);
      expect(await t.store.feedback.listForInteraction(t.projectId, 'a1')).toEqual([]);
      expect(await t.store.feedback.listForInteraction(t.projectId, 'b1')).toEqual(before);
    });

    it('marks the dataset version and the model trained on it; the next build leaves her out', async () => {
      const v1 = await t.call('/api/v1/datasets/kto@1');
      expect(v1.body).toMatchObject({ deletedInteractions: 3, dataDeletedAt: expect.any(Number) });
      expect(v1.body.deletedRows).toBeGreaterThanOrEqual(3);
      const rows = readFileSync(join(v1.body.path, 'rows.jsonl'), 'utf8').trim().split('\n');
      const lineage = readFileSync(join(v1.body.path, 'lineage.jsonl'), 'utf8').trim().split('\n');
      expect(rows.length).toBe(lineage.length);
      expect(rows.length).toBe(v1.body.rowCount - v1.body.deletedRows);
      const model = await t.call('/api/v1/models/support-v1');
      expect(model.body.dataDeletedAt).toEqual(expect.any(Number));
      // Its weights went into support-v2 (stacked on them); the unrelated model is as it was.
      expect((await t.call('/api/v1/models/support-v2')).body.dataDeletedAt).toEqual(expect.any(Number));
      expect((await t.call('/api/v1/models/unrelated')).body.dataDeletedAt).toBeNull();

      expect((await t.call('/api/v1/calibrations', { body: {} })).status).toBe(201);
      const v2 = await t.call('/api/v1/datasets', { body: ktoSpec('kto') });
      expect(v2.status).toBe(201);
      expect(v2.body.version).toBe(2);
      expect(v2.body).toMatchObject({ deletedInteractions: 0, dataDeletedAt: null });
      const built = readFileSync(join(v2.body.path, 'lineage.jsonl'), 'utf8');
      expect(built).toContain('"b1"');
      for (const id of ['a1', 'a2', 'a3']) expect(built).not.toContain(`"${id}"`);
      expect(readFileSync(join(v2.body.path, 'rows.jsonl'), 'utf8')).not.toContain(aliceWords);
    });

    it('deletes one interaction by id; an unknown one is a 404 naming it; a read key may not delete', async () => {
      const tooLong = await t.call(`/api/v1/end-users/${'x'.repeat(201)}`, { method: 'DELETE' });
      expect(tooLong.status).toBe(400);
      expect(tooLong.body.error.path).toBe('userId');
      const res = await t.call('/api/v1/interactions/b3', { method: 'DELETE' });
      expect(res.status).toBe(200);
      expect(res.body.counts).toMatchObject({ interactions: 1, feedback: 2 });
      expect((await t.call('/api/v1/interactions/b3')).status).toBe(404);
      const again = await t.call('/api/v1/interactions/b3', { method: 'DELETE' });
      expect(again.status).toBe(404);
      expect(again.body.error.path).toBe('id');
      const reader = await t.call('/api/v1/keys', { body: { scopes: ['read'] } });
      const refused = await t.call('/api/v1/interactions/b2', { method: 'DELETE', key: reader.body.key });
      expect(refused.status).toBe(403);
      expect(refused.body.error.message).toContain('"admin"');
      expect((await t.call('/api/v1/interactions/b2')).status).toBe(200);
    });

    it('sets the retention policy over the API; a bad one is a 400 naming the field', async () => {
      const bad = await t.call('/api/v1/retention', { method: 'PUT', body: { days: 0 } });
      expect(bad.status).toBe(400);
      expect(bad.body.error.path).toBe('days');
      const set = await t.call('/api/v1/retention', { method: 'PUT', body: { days: 30 } });
      expect(set.status).toBe(200);
      expect((await t.call('/api/v1/retention')).body).toEqual({
        policy: { days: 30, keepProductionTrainingData: true },
      });
      // Everything here is minutes old: a run deletes nothing.
      const run = await t.call('/api/v1/retention/run', { body: {} });
      expect(run.status).toBe(200);
      expect(run.body.counts.interactions).toBe(0);
    });
  });
}
