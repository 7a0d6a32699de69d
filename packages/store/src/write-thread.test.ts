import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InteractionInput, type ParsedInteraction, parseInput } from '@ratchet/core';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, parseDatabaseUrl } from './connection.js';
import { InteractionRepository } from './interactions.js';
import { RollupRepository } from './rollups.js';
import { Store } from './store.js';
import { sqliteTestDatabase } from './testing.js';
import { SqliteWriteThread } from './write-thread.js';

/** How often a 2 ms interval fired while `run` was out, and what it returned. */
async function ticksDuring<T>(run: () => Promise<T>): Promise<{ ticks: number; value: T }> {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 2);
  try {
    const value = await run();
    return { ticks, value };
  } finally {
    clearInterval(timer);
  }
}

// A write that takes SQLite a few hundred milliseconds: a million rows made and inserted.
const slowInsert = (table: string) =>
  `insert into ${table} (x) with recursive c(x) as (select 1 union all select x + 1 from c where x < 1000000) select x from c`;

const HOUR = 3_600_000;
const at = Date.UTC(2026, 10, 20, 10);

function call(id: string, createdAt: number, tags: string[] = []): ParsedInteraction {
  return parseInput(InteractionInput, {
    id,
    model: 'm',
    createdAt,
    tags,
    messages: [{ role: 'user', content: `question ${id}` }],
    output: `answer ${id}`,
  });
}

describe('relaxed writes on their own thread (SQLite)', () => {
  const target = sqliteTestDatabase();
  afterAll(() => target.cleanup());

  it('runs a long write while the event loop keeps serving, and the main connection sees it committed', async () => {
    const url = await target.create();
    const store = await Store.open(url);
    await store.close();
    const db = openDatabase(parseDatabaseUrl(url));
    try {
      await sql`create table main_side (x integer)`.execute(db.db);
      await sql`create table thread_side (x integer)`.execute(db.db);
      // On the main connection the statement holds the event loop: the interval cannot fire.
      const main = await ticksDuring(() => sql.raw(slowInsert('main_side')).execute(db.db));
      expect(main.ticks).toBeLessThanOrEqual(1);
      const off = await ticksDuring(() =>
        db.writeThread!.run([{ sql: slowInsert('thread_side'), parameters: [] }]),
      );
      expect(off.ticks).toBeGreaterThanOrEqual(5);
      expect(off.value).toEqual([1_000_000]);
      const { rows } = await sql<{ n: number }>`select count(*) as n from thread_side`.execute(db.db);
      expect(rows).toEqual([{ n: 1_000_000 }]);
    } finally {
      await db.db.destroy();
    }
  });

  it('skips a statement whose `when` wrote nothing, and rolls the whole batch back on an error', async () => {
    const url = await target.create();
    const store = await Store.open(url);
    await store.close();
    const db = openDatabase(parseDatabaseUrl(url));
    try {
      await sql`create table t (x integer primary key)`.execute(db.db);
      const insert = 'insert into t (x) values (?) on conflict do nothing';
      const thread = db.writeThread!;
      expect(
        await thread.run([
          { sql: insert, parameters: [1] },
          { sql: insert, parameters: [1] },
          { sql: insert, parameters: [10], when: [1] },
          { sql: insert, parameters: [20], when: [0, 1] },
        ]),
      ).toEqual([1, 0, -1, 1]);
      await expect(
        thread.run([
          { sql: insert, parameters: [30] },
          { sql: 'insert into t (x) values (?)', parameters: [1] },
        ]),
      ).rejects.toMatchObject({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' });
      // Nothing of the failed batch stayed, and the thread goes on.
      expect(await thread.run([{ sql: insert, parameters: [40] }])).toEqual([1]);
      const { rows } = await sql<{ x: number }>`select x from t order by x`.execute(db.db);
      expect(rows.map((r) => r.x)).toEqual([1, 20, 40]);
    } finally {
      await db.db.destroy();
    }
  });

  it('logs interactions on the thread with the same rows, tags, stale hours and results as `insert`', async () => {
    const batch = [
      call('a', at, ['x', 'y', 'x']),
      call('b', at + HOUR, ['y']),
      call('a', at + 2 * HOUR, ['z']), // repeated in the batch: the first stands
      call('old', at + 3 * HOUR, ['w']), // written before: nothing new, no tags, no stale hour
    ];
    const written: unknown[] = [];
    for (const how of ['insert', 'insertInBackground'] as const) {
      const url = await target.create();
      const store = await Store.open(url);
      try {
        const project = await store.projects.create('p');
        await store.interactions.insert(project.id, [call('old', at + 3 * HOUR, ['v'])]);
        await sql`delete from rollup_log`.execute(store.db);
        const results =
          how === 'insert'
            ? await store.writeRelaxed((trx) => store.interactions.insert(project.id, batch, trx))
            : await store.interactions.insertInBackground(project.id, batch);
        const tags = await store.db
          .selectFrom('interaction_tags')
          .select(['interaction_id', 'tag'])
          .orderBy('interaction_id')
          .orderBy('tag')
          .execute();
        const hours = await store.db.selectFrom('rollup_log').select('hour').orderBy('hour').execute();
        const stored = await store.db
          .selectFrom('interactions')
          .select(['id', 'created_at', 'prompt_hash'])
          .orderBy('id')
          .execute();
        written.push({ results, tags, hours, stored });
      } finally {
        await store.close();
      }
    }
    expect(written[1]).toEqual(written[0]);
    expect(written[0]).toMatchObject({
      results: [
        { id: 'a', created: true },
        { id: 'b', created: true },
        { id: 'a', created: false },
        { id: 'old', created: false },
      ],
      hours: [{ hour: at }, { hour: at + HOUR }],
    });
  });

  it('writes through the main connection once the thread cannot run, and stops with the database', async () => {
    const url = await target.create();
    const store = await Store.open(url);
    const project = await store.projects.create('p');
    await store.close();
    const db = openDatabase(parseDatabaseUrl(url));
    const file = url.slice('sqlite:'.length);
    const broken = new SqliteWriteThread(join(dirname(file), 'missing.db'));
    try {
      await expect(broken.run([{ sql: 'select 1', parameters: [] }])).rejects.toThrow(/could not open/);
      expect(broken.alive).toBe(false);
      const rollups = new RollupRepository(db.db, 'sqlite');
      const interactions = new InteractionRepository(db.db, 'sqlite', undefined, db.sqlite, rollups, {
        thread: broken,
        relaxed: (work) => db.db.transaction().execute(work),
      });
      expect(await interactions.insertInBackground(project.id, [call('c', at)])).toEqual([
        { id: 'c', created: true },
      ]);
      expect(await interactions.get(project.id, 'c')).toMatchObject({
        id: 'c',
        output: { content: 'answer c' },
      });
      await db.writeThread!.run([{ sql: 'create table t (x)', parameters: [] }]);
    } finally {
      broken.stop();
      await db.db.destroy();
    }
    expect(db.writeThread!.alive).toBe(false);
    await expect(db.writeThread!.run([{ sql: 'select 1', parameters: [] }])).rejects.toThrow(/not running/);
    // A connection left open on the thread would have kept the WAL file.
    expect(existsSync(`${file}-wal`)).toBe(false);
  });
});
