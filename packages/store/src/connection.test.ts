import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { postgresTestDatabase } from './testing.js';

const adminUrl = process.env.RATCHET_TEST_POSTGRES_URL;

describe.skipIf(!adminUrl)('PostgreSQL connections', () => {
  it('survive the server closing an idle pooled connection', async () => {
    const database = postgresTestDatabase(adminUrl!);
    const url = await database.create();
    const store = await Store.open(url);
    try {
      await store.projects.getOrCreate('p'); // leaves idle connections in the pool
      const dbName = new URL(url).pathname.slice(1);
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      const { rows } = await admin.query(
        'select pg_terminate_backend(pid) as ok from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
        [dbName],
      );
      await admin.end();
      expect(rows.length).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 200)); // the idle clients hear of it
      // Without the pool's error handler the process would have died of an unhandled 'error'.
      expect((await store.projects.getOrCreate('p')).name).toBe('p');
    } finally {
      await store.close();
      await database.cleanup();
    }
  });
});
