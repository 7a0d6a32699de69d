import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dayMs, FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrateProject } from '../calibrate.js';
import { buildDatasetVersion } from '../datasets.js';
import { applyRetention } from './index.js';

const facts = { upstreams: ['local'], routeUpstreams: {}, defaultUpstream: 'local' };

// Partitions exist on PostgreSQL only; on SQLite the same policy runs row by row (retention.test.ts).
for (const target of testDatabases().filter((d) => d.name === 'postgres')) {
  describe(`retention drops whole months on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    let otherId: string;
    let dataDir: string;
    // A fixed calendar: the policy runs on 2026-06-15 with 30 days, so the cutoff is 2026-05-16
    // and February, March and April are entirely older.
    const now = Date.UTC(2026, 5, 15);
    const feb = ['f1', 'f2'];
    const march = ['m1', 'm2', 'm3', 'm4'];
    const april = ['a1', 'a2', 'a3', 'a4'];
    const june = ['j1', 'j2'];

    const log = async (project: string, ids: string[], at: number) => {
      await store.interactions.insert(
        project,
        ids.map((id, i) =>
          parseInput(InteractionInput, {
            id,
            model: 'tiny',
            route: 'support',
            messages: [{ role: 'user', content: `question ${id}` }],
            output: `answer ${id}`,
            tags: ['t'],
            createdAt: at + i * 60_000,
          }),
        ),
      );
      await store.feedback.insert(
        project,
        ids.flatMap((id, i) =>
          ['r1', 'r2'].map((raterId) =>
            parseInput(FeedbackInput, {
              kind: 'thumbs',
              interactionId: id,
              raterId,
              source: 'annotator',
              value: i % 2 ? 'up' : 'down',
              idempotencyKey: `${id}:${raterId}`,
              createdAt: at + i * 60_000 + 1000,
            }),
          ),
        ),
      );
    };
    const build = (name: string) =>
      buildDatasetVersion(
        store,
        projectId,
        {
          name,
          method: 'kto',
          curation: false,
          options: { requireConfidentSign: false, margin: 0, split: { by: 'prompt', testFraction: 0 } },
        },
        { dataDir },
      );
    const exists = async (table: string) =>
      (
        await sql<{ n: number }>`select count(*)::int as n from pg_class where relname = ${table}`.execute(
          store.db,
        )
      ).rows[0]!.n > 0;
    /** Rows that mention the ids, per table where an interaction's data could remain. */
    const leftOf = async (ids: string[]) => {
      const out: Record<string, number> = {};
      const list = sql.join(ids);
      for (const [table, column] of [
        ['interactions', 'id'],
        ['interaction_ids', 'id'],
        ['interaction_tags', 'interaction_id'],
        ['interaction_rewards', 'interaction_id'],
        ['interaction_reward_changes', 'interaction_id'],
        ['feedback', 'interaction_id'],
        ['feedback_current', 'interaction_id'],
        ['feedback_keys', 'interaction_id'],
        ['dataset_interactions', 'interaction_id'],
      ] as const) {
        const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}
          where ${sql.ref(column)} in (${list})`.execute(store.db);
        out[table] = rows[0]!.n;
      }
      return out;
    };

    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'ratchet-retention-months-'));
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('retention-months')).id;
      otherId = (await store.projects.create('neighbour')).id;
      // What a server running since February would have made ahead, month by month.
      for (let m = 1; m <= 5; m++) await store.partitions.createAhead(Date.UTC(2026, m, 1), 1);
      await log(projectId, march, Date.UTC(2026, 2, 10));
      await calibrateProject(store, projectId);
      const v1 = await build('kto');
      await store.models.register(
        projectId,
        { name: 'support-v1', route: 'support', baseModel: 'tiny', datasetId: v1.id },
        'test',
      );
      await store.models.setStage(projectId, 'support-v1', 'production', 'test', 'baseline', facts);
      await log(projectId, feb, Date.UTC(2026, 1, 10));
      await log(otherId, ['x1'], Date.UTC(2026, 1, 11));
      await log(projectId, april, Date.UTC(2026, 3, 10));
      await log(projectId, june, Date.UTC(2026, 5, 10));
      await calibrateProject(store, projectId);
      await build('kto-all');
      await store.rollups.rollForward(projectId);
      await store.projects.setRetention(projectId, { days: 30, keepProductionTrainingData: true }, 'test');
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('drops the unprotected month of only this project, audited with counts, leaving nothing of it', async () => {
      expect(await store.deletion.retentionPartitions(projectId, now - 30 * dayMs, true)).toEqual([
        expect.objectContaining({ name: 'interactions_p2026_04' }),
      ]);
      const april2026 = { from: Date.UTC(2026, 3, 1), to: Date.UTC(2026, 4, 1) };
      const aprilHours = (await store.rollups.rows(projectId, april2026)).reduce((n, h) => n + h.calls, 0);
      expect(aprilHours).toBe(4);

      const report = await applyRetention(store, projectId, { now });
      expect(report!.partitions).toEqual(['interactions_p2026_04']);
      // April whole, and February's two rows of this project one by one (the neighbour shares it).
      expect(report!.counts).toMatchObject({ interactions: 6, feedback: 12, interactionTags: 6 });
      expect(await exists('interactions_p2026_04')).toBe(false);
      expect(await exists('interactions_p2026_02')).toBe(true);
      expect(await exists('interactions_p2026_03')).toBe(true);
      expect(await leftOf(april)).toEqual({
        interactions: 0,
        interaction_ids: 0,
        interaction_tags: 0,
        interaction_rewards: 0,
        interaction_reward_changes: 0,
        feedback: 0,
        feedback_current: 0,
        feedback_keys: 0,
        dataset_interactions: 0,
      });

      const entries = await store.audit.list(projectId, { action: 'data.deleted' });
      const dropped = entries.find((e) => (e.details as { partition?: string }).partition !== undefined);
      expect(dropped).toMatchObject({ actor: 'retention', subjectType: 'retention' });
      expect(dropped!.details).toMatchObject({
        partition: 'interactions_p2026_04',
        counts: {
          interactions: 4,
          feedback: 8,
          feedbackCurrent: 8,
          interactionTags: 4,
          datasetMemberships: 4,
        },
        datasets: [expect.objectContaining({ name: 'kto-all', interactions: 4 })],
      });
      // The version that held April is marked and its file scrubbed of April's rows.
      const all = await store.datasets.get(projectId, 'kto-all@1');
      expect(all).toMatchObject({ deletedInteractions: 6, dataDeletedAt: expect.any(Number) });
      const rows = readFileSync(join(all!.path, 'rows.jsonl'), 'utf8');
      for (const id of [...april, ...feb]) expect(rows).not.toContain(`question ${id}`);
      expect(rows).toContain('question m1');
      // The dashboard's April hours were logged stale and roll forward to nothing.
      expect(await store.rollups.rows(projectId, april2026)).toEqual([]);
      expect(await store.rollups.rows(projectId, { ...april2026, bucketMs: dayMs })).toEqual([]);
    });

    it('keeps the month a production model was trained on, and the neighbour’s rows', async () => {
      const left = (await store.interactions.list(projectId, {}, { limit: 100 })).items
        .map((i) => i.id)
        .sort();
      expect(left).toEqual([...march, ...june].sort());
      expect(await store.interactions.get(otherId, 'x1')).toMatchObject({ id: 'x1' });
      expect(await leftOf(march)).toMatchObject({ interactions: 4, interaction_ids: 4, feedback: 8 });
    });

    it('takes a dropped id again as a new interaction (its id row went with the month)', async () => {
      const [written] = await store.interactions.insert(projectId, [
        parseInput(InteractionInput, {
          id: 'a1',
          model: 'tiny',
          messages: [{ role: 'user', content: 'again' }],
          output: 'again',
        }),
      ]);
      expect(written).toEqual({ id: 'a1', created: true });
    });

    it('with keepProductionTrainingData off, the protected month goes whole too', async () => {
      await store.projects.setRetention(projectId, { days: 30, keepProductionTrainingData: false }, 'test');
      const report = await applyRetention(store, projectId, { now });
      expect(report!.partitions).toEqual(['interactions_p2026_03']);
      expect(await exists('interactions_p2026_03')).toBe(false);
      expect((await store.models.get(projectId, 'support-v1'))!.dataDeletedAt).toEqual(expect.any(Number));
      expect(await leftOf(march)).toMatchObject({ interactions: 0, interaction_ids: 0, feedback: 0 });
    });
  });
}
