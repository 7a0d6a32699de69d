import { type Kysely, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GroupCommit } from './group-commit.js';
import type { Database } from './schema.js';
import { Store } from './store.js';
import { sqliteTestDatabase, testDatabases } from './testing.js';
import { WalSync } from './wal-sync.js';

describe('GroupCommit on SQLite', () => {
  const target = sqliteTestDatabase();
  let store: Store;
  let transactions = 0;
  let group: GroupCommit;

  beforeAll(async () => {
    store = await Store.open(await target.create());
    // Count the database transactions the group opens.
    const counted = new Proxy(store.db, {
      get(db, prop) {
        if (prop === 'transaction') {
          return () => {
            transactions++;
            return db.transaction();
          };
        }
        return Reflect.get(db, prop);
      },
    }) as Kysely<Database>;
    group = new GroupCommit(counted);
  });
  afterAll(async () => {
    await store?.close();
    await target.cleanup();
  });

  const createProject = (name: string) => (trx: Kysely<Database>) =>
    trx
      .insertInto('projects')
      .values({ id: name, name, settings: '{}', created_at: Date.now() })
      .returning('id')
      .executeTakeFirstOrThrow();

  it('commits units that arrive together in one transaction, each with its own result', async () => {
    transactions = 0;
    const names = Array.from({ length: 20 }, (_, i) => `together-${i}`);
    const results = await Promise.all(names.map((n) => group.run(createProject(n))));
    expect(results.map((r) => r.id)).toEqual(names);
    expect(transactions).toBe(1);
    const stored = await store.db
      .selectFrom('projects')
      .select('id')
      .where('id', 'like', 'together-%')
      .execute();
    expect(stored).toHaveLength(20);
  });

  it('undoes a failing unit alone and rejects it with its own error', async () => {
    const ok = group.run(createProject('kept-1'));
    const bad = group.run(async (trx) => {
      await createProject('undone')(trx);
      throw new Error('unit 2 is invalid');
    });
    const duplicate = group.run(createProject('kept-1')); // primary key violation
    const ok2 = group.run(createProject('kept-2'));
    await expect(ok).resolves.toEqual({ id: 'kept-1' });
    await expect(bad).rejects.toThrow('unit 2 is invalid');
    await expect(duplicate).rejects.toThrow(/UNIQUE/);
    await expect(ok2).resolves.toEqual({ id: 'kept-2' });
    const ids = (await store.db.selectFrom('projects').select('id').execute()).map((r) => r.id);
    expect(ids).toEqual(expect.arrayContaining(['kept-1', 'kept-2']));
    expect(ids).not.toContain('undone');
  });

  it('runs a group without savepoints, and again with them only when a unit fails', async () => {
    transactions = 0;
    const ok = await Promise.all([group.run(createProject('plain-1')), group.run(createProject('plain-2'))]);
    expect(ok).toEqual([{ id: 'plain-1' }, { id: 'plain-2' }]);
    expect(transactions).toBe(1);

    transactions = 0;
    let attempts = 0;
    const kept = group.run(async (trx) => {
      attempts++;
      return createProject('retried-kept')(trx);
    });
    const failing = group.run(createProject('plain-1')); // primary key violation
    await expect(kept).resolves.toEqual({ id: 'retried-kept' });
    await expect(failing).rejects.toThrow(/UNIQUE/);
    // The first attempt was rolled back as a whole; the second kept the good unit once.
    expect(transactions).toBe(2);
    expect(attempts).toBe(2);
    const stored = await store.db
      .selectFrom('projects')
      .select('id')
      .where('id', '=', 'retried-kept')
      .execute();
    expect(stored).toHaveLength(1);
  });

  it('runs units queued while a group commits in the next group', async () => {
    transactions = 0;
    const first = group.run(createProject('wave-1'));
    await new Promise((r) => setImmediate(r));
    const second = group.run(createProject('wave-2'));
    await Promise.all([first, second]);
    expect(transactions).toBe(2);
  });
});

describe('GroupCommit with a WalSync (SQLite file at synchronous=FULL)', () => {
  const target = sqliteTestDatabase();
  afterAll(() => target.cleanup());

  it('acknowledges a group only once its WAL fsync returned, and leaves the connection at FULL', async () => {
    const url = await target.create();
    const store = await Store.open(url);
    const file = url.slice('sqlite:'.length);
    // The real fsync, held back until the test lets it finish.
    let release: () => void = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    let syncs = 0;
    class HeldSync extends WalSync {
      override async sync(): Promise<void> {
        syncs++;
        await held;
        return super.sync();
      }
    }
    const group = new GroupCommit(store.db, { walSync: new HeldSync(file) });
    let acknowledged = false;
    const unit = group
      .run((trx) =>
        trx
          .insertInto('projects')
          .values({ id: 'durable', name: 'durable', settings: '{}', created_at: 1 })
          .returning('id')
          .executeTakeFirstOrThrow(),
      )
      .then((r) => {
        acknowledged = true;
        return r;
      });
    await new Promise((r) => setTimeout(r, 50));
    // Committed (readable) but not yet acknowledged.
    expect(
      await store.db.selectFrom('projects').select('id').where('id', '=', 'durable').execute(),
    ).toHaveLength(1);
    expect(acknowledged).toBe(false);
    expect(syncs).toBe(1);
    const { rows } = await sql<{ synchronous: number }>`pragma synchronous`.execute(store.db);
    expect(rows[0]!.synchronous).toBe(2); // FULL for every other write
    release();
    await expect(unit).resolves.toEqual({ id: 'durable' });
    await store.close();
  });

  it('shares one fsync among the groups committed while another runs', async () => {
    const url = await target.create();
    const file = url.slice('sqlite:'.length);
    const store = await Store.open(url);
    await store.db
      .insertInto('projects')
      .values({ id: 'x', name: 'x', settings: '{}', created_at: 1 })
      .execute();
    const wal = new WalSync(file);
    const first = wal.sync();
    const more = [wal.sync(), wal.sync(), wal.sync()];
    expect(more[0]).toBe(more[1]);
    await Promise.all([first, ...more]);
    await store.close();
  });
});

for (const target of testDatabases()) {
  describe(`Store.writeRelaxed on ${target.name}`, () => {
    let store: Store;
    beforeAll(async () => {
      store = await Store.open(await target.create());
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('commits its work, rolls back on error, and leaves later writes fully durable', async () => {
      const insert = (name: string) => (trx: Kysely<Database>) =>
        trx.insertInto('projects').values({ id: name, name, settings: '{}', created_at: 1 }).execute();
      await store.writeRelaxed(insert('relaxed'));
      await expect(
        store.writeRelaxed(async (trx) => {
          await insert('rolled-back')(trx);
          throw new Error('no');
        }),
      ).rejects.toThrow('no');
      const ids = (await store.db.selectFrom('projects').select('id').execute()).map((r) => r.id);
      expect(ids).toContain('relaxed');
      expect(ids).not.toContain('rolled-back');
      if (target.name === 'sqlite') {
        const { rows } = await sql<{ synchronous: number }>`pragma synchronous`.execute(store.db);
        expect(rows[0]!.synchronous).toBe(2); // FULL again
      } else {
        const { rows } = await sql<{ synchronous_commit: string }>`show synchronous_commit`.execute(store.db);
        expect(rows[0]!.synchronous_commit).toBe('on');
      }
    });
  });
}
