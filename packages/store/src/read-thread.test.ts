import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InteractionInput, parseInput } from '@ratchet/core';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, parseDatabaseUrl } from './connection.js';
import { SqliteReadThread } from './read-thread.js';
import { RollupRepository } from './rollups.js';
import { Store } from './store.js';
import { sqliteTestDatabase } from './testing.js';

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

// A read that takes SQLite a few hundred milliseconds: two million rows counted.
const slowCount = sql<{
  n: number;
}>`with recursive c(x) as (select 1 union all select x + 1 from c where x < 2000000) select count(*) as n from c`;

describe('long reads on their own thread (SQLite)', () => {
  const target = sqliteTestDatabase();
  afterAll(() => target.cleanup());

  async function opened(prepare?: (store: Store) => Promise<void>) {
    const url = await target.create();
    // Made and migrated by a store first: the thread opens an existing file, read-only.
    const store = await Store.open(url);
    await prepare?.(store);
    await store.close();
    return { file: url.slice('sqlite:'.length), ...openDatabase(parseDatabaseUrl(url)) };
  }

  it('runs a long query while the event loop keeps serving, with the rows the main connection returns', async () => {
    const db = await opened();
    try {
      // On the server's own connection the query holds the event loop: the interval cannot fire.
      const main = await ticksDuring(() => slowCount.execute(db.db));
      expect(main.ticks).toBeLessThanOrEqual(1);
      const off = await ticksDuring(() => db.readThread!.run([slowCount.compile(db.db)]));
      expect(off.ticks).toBeGreaterThanOrEqual(5);
      expect(off.value).toEqual([main.value.rows]);
      expect(main.value.rows).toEqual([{ n: 2_000_000 }]);
    } finally {
      await db.db.destroy();
    }
  });

  it('runs a batch in order, refuses writes, answers a failing query with its error and goes on', async () => {
    const db = await opened();
    try {
      const thread = db.readThread!;
      const [projects, one] = await thread.run([
        db.db.selectFrom('projects').select('id').compile(),
        sql<{ one: number }>`select ${1} as one`.compile(db.db),
      ]);
      expect(projects).toEqual([]);
      expect(one).toEqual([{ one: 1 }]);
      await expect(thread.run([sql`select * from no_such_table`.compile(db.db)])).rejects.toThrow(
        /no such table/,
      );
      // A read-only connection: a write is refused there, not run.
      await expect(
        thread.run([
          sql`insert into projects (id, name, created_at) values ('p', 'p', 0) returning id`.compile(db.db),
        ]),
      ).rejects.toThrow(/readonly/);
      expect(await db.db.selectFrom('projects').select('id').execute()).toEqual([]);
      expect(await thread.run([sql`select ${2} as two`.compile(db.db)])).toEqual([[{ two: 2 }]]);
      expect(thread.alive).toBe(true);
    } finally {
      await db.db.destroy();
    }
  });

  it('says when it cannot open the database, and a roll-forward then reads on the main connection', async () => {
    let projectId = '';
    const db = await opened(async (store) => {
      projectId = (await store.projects.create('p')).id;
      const at = Date.UTC(2026, 10, 20, 10);
      await store.interactions.insert(
        projectId,
        [0, 1, 2].map((i) =>
          parseInput(InteractionInput, {
            id: `i-${i}`,
            model: 'm',
            createdAt: at + i,
            messages: [{ role: 'user', content: 'hi' }],
            output: 'hello',
          }),
        ),
      );
    });
    const broken = new SqliteReadThread(join(dirname(db.file), 'missing.db'));
    try {
      await expect(broken.run([sql`select 1`.compile(db.db)])).rejects.toThrow(/could not open/);
      expect(broken.alive).toBe(false);
      await new RollupRepository(db.db, 'sqlite', broken).rollForward(projectId);
      const rows = await db.db
        .selectFrom('rollup_hours')
        .select('calls')
        .where('project_id', '=', projectId)
        .execute();
      expect(rows).toEqual([{ calls: 3 }]);
    } finally {
      broken.stop();
      await db.db.destroy();
    }
  });

  it('closes its connection with the database, so the last close removes the WAL', async () => {
    const db = await opened();
    await db.readThread!.run([slowCount.compile(db.db)]);
    // (Kysely opens, and so closes, the main connection on its first query.)
    await sql`select 1`.execute(db.db);
    await db.db.destroy();
    expect(db.readThread!.alive).toBe(false);
    await expect(db.readThread!.run([sql`select 1`.compile(db.db)])).rejects.toThrow(/not running/);
    // A connection left open on the thread would have kept the WAL file.
    expect(existsSync(`${db.file}-wal`)).toBe(false);
  });
});
