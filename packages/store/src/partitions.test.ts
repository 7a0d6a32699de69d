import { FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { monthIndexOf, monthPartition } from './partitions.js';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

const interaction = (id: string, createdAt: number, extra: Record<string, unknown> = {}) =>
  parseInput(InteractionInput, {
    id,
    model: 'tiny',
    route: 'support',
    messages: [{ role: 'user', content: `question ${id}` }],
    output: `answer ${id}`,
    userId: `user-${id}`,
    createdAt,
    ...extra,
  });
const feedback = (input: Record<string, unknown>) =>
  parseInput(FeedbackInput, { source: 'annotator', ...input });

/** Every row of the tables migration 0037 rebuilds or re-references, in a stable order. */
const TABLES = [
  'interactions',
  'feedback',
  'interaction_tags',
  'feedback_current',
  'feedback_scores',
  'interaction_rewards',
  'raters',
  'rollup_log',
];
async function snapshot(store: Store): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const table of TABLES) {
    const { rows } = await sql<Record<string, unknown>>`select * from ${sql.table(table)}`.execute(store.db);
    out[table] = rows
      .map((r) => JSON.stringify(Object.entries(r).sort(([a], [b]) => a.localeCompare(b))))
      .sort();
  }
  return out;
}
const relkind = async (store: Store, table: string) =>
  (await sql<{ relkind: string }>`select relkind from pg_class where relname = ${table}`.execute(store.db))
    .rows[0]?.relkind;
const partitionOf = async (store: Store, table: string, id: string) =>
  (
    await sql<{
      p: string;
    }>`select tableoid::regclass::text as p from ${sql.table(table)} where id = ${id}`.execute(store.db)
  ).rows[0]?.p;

const jan = Date.UTC(2026, 0, 10);
const mar = Date.UTC(2026, 2, 10);
const ancient = Date.UTC(1990, 4, 1);

for (const target of testDatabases()) {
  describe(`time partitions on ${target.name}`, () => {
    const stores: Store[] = [];
    afterAll(async () => {
      for (const s of stores) await s.close();
      await target.cleanup();
    });
    const open = async (url: string, withhold?: string[]) => {
      const s = await Store.open(url, { withholdMigrations: withhold });
      stores.push(s);
      return s;
    };

    if (target.name === 'sqlite') {
      it('has none on SQLite: nothing is made ahead and retention finds no month to drop', async () => {
        const store = await open(await target.create());
        const { id } = await store.projects.create('p');
        await store.interactions.insert(id, [interaction('i1', jan)]);
        expect(await store.partitions.createAhead()).toEqual([]);
        expect(await store.partitions.list('interactions')).toEqual([]);
        expect(await store.deletion.retentionPartitions(id, Date.now(), false)).toEqual([]);
      });
      return;
    }

    it('migrates a populated database: every row, reference, uniqueness and query as before', async () => {
      const url = await target.create();
      // A database from before 0037, so before 0040 too (its view reads 0037's interaction_ids).
      const store = await open(url, ['0037_partitions', '0040_reward_changes']);
      expect(await relkind(store, 'interactions')).toBe('r');
      const a = (await store.projects.create('a')).id;
      const b = (await store.projects.create('b')).id;
      await store.interactions.insert(a, [
        interaction('i1', jan, { tags: ['x', 'y'] }),
        interaction('i2', jan + 1000, { sessionId: 's1' }),
        interaction('i3', mar, { tags: ['x'] }),
        interaction('old', ancient),
      ]);
      await store.interactions.insert(b, [interaction('i1', mar)]);
      await store.feedback.insert(a, [
        feedback({
          kind: 'thumbs',
          interactionId: 'i1',
          raterId: 'r1',
          value: 'up',
          idempotencyKey: 'k1',
          createdAt: jan,
        }),
        feedback({ kind: 'thumbs', interactionId: 'i1', raterId: 'r1', value: 'down', createdAt: mar }),
        feedback({ kind: 'stars', interactionId: 'i2', raterId: 'r2', value: 4, createdAt: jan + 5000 }),
        feedback({ kind: 'comment', interactionId: 'i3', raterId: 'r2', text: 'curt', createdAt: mar }),
        feedback({ kind: 'preference', interactionId: 'i2', raterId: 'r1', other: 'i3', choice: 'other' }),
        feedback({ kind: 'thumbs', interactionId: 'old', raterId: 'r3', value: 'up', createdAt: ancient }),
      ]);
      await store.feedback.insert(b, [
        feedback({ kind: 'thumbs', interactionId: 'i1', raterId: 'r1', value: 'up' }),
      ]);
      await store.db
        .insertInto('interaction_rewards')
        .values({
          project_id: a,
          interaction_id: 'i2',
          calibration_id: 'c1',
          n: 1,
          raw_mean: 0.5,
          reward: 0.4,
          sd: 0.1,
          lower: 0.2,
          upper: 0.6,
        })
        .execute();
      const before = await snapshot(store);
      const listed = await store.interactions.list(a, {}, { limit: 2 });
      const queries = async () => ({
        page1: await store.interactions.list(a, {}, { limit: 2 }),
        page2: await store.interactions.list(a, {}, { limit: 2, cursor: listed.nextCursor! }),
        tagged: await store.interactions.list(a, { tag: 'x' }),
        ratedDown: await store.interactions.list(a, { rating: 'down' }),
        january: await store.interactions.list(a, { from: jan, to: mar }),
        one: await store.interactions.get(a, 'i1'),
        other: await store.interactions.get(b, 'i1'),
        history: await store.feedback.listForInteraction(a, 'i1'),
        counts: [await store.interactions.count(a), await store.feedback.count(a)],
      });
      const answers = await queries();

      await store.migrate();

      expect(await relkind(store, 'interactions')).toBe('p');
      expect(await relkind(store, 'feedback')).toBe('p');
      expect(await snapshot(store)).toEqual(before);
      expect(await queries()).toEqual(answers);
      expect(await partitionOf(store, 'interactions', 'i3')).toBe('interactions_p2026_03');
      expect(await partitionOf(store, 'interactions', 'i2')).toBe('interactions_p2026_01');
      expect(await partitionOf(store, 'interactions', 'old')).toBe('interactions_default');
      const ids = await sql<{ n: number }>`select count(*)::int as n from interaction_ids`.execute(store.db);
      expect(ids.rows[0]!.n).toBe(5);

      // An id stays unique per project across months: a repeat with another time is not written.
      expect(await store.interactions.insert(a, [interaction('i1', mar), interaction('new', mar)])).toEqual([
        { id: 'i1', created: false },
        { id: 'new', created: true },
      ]);
      expect((await store.interactions.get(a, 'i1'))!.createdAt).toBe(jan);
      // An idempotency key too, whatever month the repeat says it is from.
      const [first] = await store.feedback.listForInteraction(a, 'i1');
      expect(
        await store.feedback.insert(a, [
          feedback({
            kind: 'thumbs',
            interactionId: 'i1',
            raterId: 'r1',
            value: 'up',
            idempotencyKey: 'k1',
            createdAt: mar,
          }),
        ]),
      ).toEqual([{ id: first!.id, created: false }]);
      // References hold: nothing can point at an interaction that does not exist.
      await expect(
        store.db
          .insertInto('interaction_tags')
          .values({ project_id: a, interaction_id: 'nope', tag: 'x' })
          .execute(),
      ).rejects.toThrow(/foreign key/);
      // Deleting an interaction takes what refers to it, as the cascades did.
      await store.deletion.delete(a, { kind: 'interactions', ids: ['i1'] }, 'test');
      const left = await sql<{ n: number }>`select
          (select count(*) from interaction_tags where project_id = ${a} and interaction_id = 'i1')
          + (select count(*) from feedback where project_id = ${a} and interaction_id = 'i1')
          + (select count(*) from feedback_current where project_id = ${a} and interaction_id = 'i1')
          + (select count(*) from feedback_keys where project_id = ${a})
          + (select count(*) from interaction_ids where project_id = ${a} and id = 'i1') as n`.execute(
        store.db,
      );
      expect(Number(left.rows[0]!.n)).toBe(0);
      expect(await store.interactions.get(b, 'i1')).toMatchObject({ id: 'i1' });
      // The key is free again once its event went.
      expect(
        (
          await store.feedback.insert(a, [
            feedback({
              kind: 'thumbs',
              interactionId: 'i2',
              raterId: 'r1',
              value: 'up',
              idempotencyKey: 'k1',
            }),
          ])
        )[0]!.created,
      ).toBe(true);
    });

    it('makes the coming months once with two servers at it, moving early rows out of the default', async () => {
      const url = await target.create();
      const [one, two] = [await open(url), await open(url)];
      const { id } = await one.projects.create('p');
      const now = Date.now();
      const month = monthIndexOf(now);
      // A client's clock far ahead: no month exists for it yet, so it waits in the default partition.
      const ahead = monthPartition('interactions', month + 5);
      await one.interactions.insert(id, [interaction('early', ahead.from + 1000)]);
      await one.feedback.insert(id, [
        feedback({
          kind: 'thumbs',
          interactionId: 'early',
          value: 'up',
          idempotencyKey: 'e',
          createdAt: ahead.from + 2000,
        }),
      ]);
      expect(await partitionOf(one, 'interactions', 'early')).toBe('interactions_default');

      const later = Date.UTC(
        new Date(ahead.from).getUTCFullYear(),
        new Date(ahead.from).getUTCMonth() - 2,
        15,
      );
      const made = await Promise.all([one.partitions.createAhead(later), two.partitions.createAhead(later)]);
      const names = made.flat().sort();
      // The migration made the current month and three ahead; this adds what `later` needs.
      expect(names).toEqual(
        [4, 5, 6]
          .flatMap((m) => [
            monthPartition('interactions', month + m).name,
            monthPartition('feedback', month + m).name,
          ])
          .sort(),
      );
      expect(await one.partitions.createAhead(later)).toEqual([]);
      expect(await partitionOf(one, 'interactions', 'early')).toBe(ahead.name);
      expect(
        await partitionOf(one, 'feedback', (await one.feedback.listForInteraction(id, 'early'))[0]!.id),
      ).toBe(monthPartition('feedback', month + 5).name);
      // The move kept the ids: a repeat of the moved call and of its key is still a repeat.
      expect(await one.interactions.insert(id, [interaction('early', now)])).toEqual([
        { id: 'early', created: false },
      ]);
      expect(
        (
          await one.feedback.insert(id, [
            feedback({ kind: 'thumbs', interactionId: 'early', value: 'down', idempotencyKey: 'e' }),
          ])
        )[0]!.created,
      ).toBe(false);
    });

    it('reads of a time range touch only the months in it (partition pruning)', async () => {
      const store = await open(await target.create());
      const { id } = await store.projects.create('p');
      for (let m = 0; m < 4; m++) await store.partitions.createAhead(Date.UTC(2026, m, 1), 0);
      await store.interactions.insert(id, [interaction('j', jan), interaction('m', mar)]);
      const { rows } = await sql<{ 'QUERY PLAN': string }>`explain select id from interactions
        where project_id = ${id} and created_at >= ${Date.UTC(2026, 2, 1)} and created_at < ${Date.UTC(2026, 3, 1)}`.execute(
        store.db,
      );
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
      expect(plan).toContain('interactions_p2026_03');
      expect(plan).not.toMatch(/interactions_p2026_0[124]|interactions_default/);
    });
  });
}
