import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/**
 * Databases the test suites run against: always a fresh SQLite file, and PostgreSQL when
 * `RATCHET_TEST_POSTGRES_URL` names a server (make test and CI set it). With
 * `RATCHET_REQUIRE_POSTGRES=1` a missing server is an error, not a skip, so CI cannot pass
 * without having run the PostgreSQL half.
 */
export interface TestDatabase {
  name: 'sqlite' | 'postgres';
  /** Creates an empty database and returns its URL. */
  create(): Promise<string>;
  /** Drops every database this helper created. */
  cleanup(): Promise<void>;
}

export function testDatabases(): TestDatabase[] {
  const dbs: TestDatabase[] = [sqliteTestDatabase()];
  const url = process.env.RATCHET_TEST_POSTGRES_URL;
  if (url) dbs.push(postgresTestDatabase(url));
  else if (process.env.RATCHET_REQUIRE_POSTGRES === '1') {
    throw new Error('RATCHET_REQUIRE_POSTGRES=1 but RATCHET_TEST_POSTGRES_URL is not set');
  }
  return dbs;
}

export function sqliteTestDatabase(): TestDatabase {
  const dirs: string[] = [];
  return {
    name: 'sqlite',
    async create() {
      const dir = mkdtempSync(join(tmpdir(), 'ratchet-test-'));
      dirs.push(dir);
      return `sqlite:${join(dir, 'ratchet.db')}`;
    },
    async cleanup() {
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    },
  };
}

/**
 * Drops a test database, retrying while a server process we may not terminate holds it: FORCE
 * ends other roles' connections only with pg_signal_backend, and an autovacuum worker can be on a
 * fresh database for a moment (CI failed once on "must be a member of the role whose process is
 * being terminated" after every test had passed).
 */
async function dropDatabase(c: pg.Client, name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await c.query(`drop database if exists ${name} with (force)`);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '42501' || attempt >= 20) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

export function postgresTestDatabase(adminUrl: string): TestDatabase {
  const created: string[] = [];
  const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  };
  return {
    name: 'postgres',
    async create() {
      const name = `ratchet_t_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
      await admin((c) => c.query(`create database ${name}`));
      created.push(name);
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async cleanup() {
      const names = created.splice(0);
      if (names.length === 0) return;
      await admin(async (c) => {
        for (const n of names) await dropDatabase(c, n);
      });
    },
  };
}
