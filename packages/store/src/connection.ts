import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { type Driver, Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { checkpointOffThread } from './checkpointer.js';
import { readOffThread, type SqliteReadThread } from './read-thread.js';
import type { Database } from './schema.js';
import { WalSync } from './wal-sync.js';
import { type SqliteWriteThread, writeOffThread } from './write-thread.js';

export type DialectName = 'sqlite' | 'postgres';

export interface DatabaseConfig {
  dialect: DialectName;
  /** sqlite: the file path (or `:memory:`); postgres: the connection string. */
  location: string;
  /** sqlite: `full` (default: a commit survives power loss) or `normal` (survives a process crash). */
  synchronous?: 'full' | 'normal';
  /** postgres: pool size. */
  poolSize?: number;
}

export const defaultDatabaseUrl = 'sqlite:.ratchet/ratchet.db';

/**
 * Reads `RATCHET_DATABASE_URL`: `sqlite:PATH` (options as `?synchronous=normal`) or
 * `postgres://...` / `postgresql://...` (option `?pool=N`, removed before connecting).
 */
export function parseDatabaseUrl(url: string = defaultDatabaseUrl): DatabaseConfig {
  if (url.startsWith('sqlite:')) {
    const [path = '', query = ''] = url.slice('sqlite:'.length).split('?');
    if (!path)
      throw new Error('RATCHET_DATABASE_URL: sqlite: needs a file path, e.g. sqlite:.ratchet/ratchet.db');
    const params = new URLSearchParams(query);
    const sync = params.get('synchronous') ?? 'full';
    if (sync !== 'full' && sync !== 'normal') {
      throw new Error(`RATCHET_DATABASE_URL: synchronous must be full or normal, got "${sync}"`);
    }
    return { dialect: 'sqlite', location: path, synchronous: sync };
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const parsed = new URL(url);
    const pool = parsed.searchParams.get('pool');
    parsed.searchParams.delete('pool');
    const poolSize = pool ? Number(pool) : 10;
    if (!Number.isInteger(poolSize) || poolSize < 1)
      throw new Error(`RATCHET_DATABASE_URL: pool must be a positive integer, got "${pool}"`);
    return { dialect: 'postgres', location: parsed.toString(), poolSize };
  }
  throw new Error(`RATCHET_DATABASE_URL must start with sqlite: or postgres://, got "${url}"`);
}

// COUNT(*) and bigint columns arrive as strings from pg by default; our bigints are epoch
// milliseconds and counts, far below 2^53, so numbers are exact and what callers expect.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v) => Number(v));

export interface OpenedDatabase {
  db: Kysely<Database>;
  /**
   * The SQLite handle under Kysely, for the few bulk paths (millions of rows) where building a
   * query object per row costs more than the database work; undefined on PostgreSQL.
   */
  sqlite?: SqliteDatabase.Database;
  /** A file database at synchronous=FULL: fsyncs its WAL off the event loop (see wal-sync.ts). */
  walSync?: WalSync;
  /** A file database: long read-only queries run on a thread of their own (see read-thread.ts). */
  readThread?: SqliteReadThread;
  /** A file database: the gateway log's relaxed writes run on a thread of their own (see write-thread.ts). */
  writeThread?: SqliteWriteThread;
}

export function openKysely(config: DatabaseConfig): Kysely<Database> {
  return openDatabase(config).db;
}

export function openDatabase(config: DatabaseConfig): OpenedDatabase {
  if (config.dialect === 'sqlite') {
    if (config.location !== ':memory:') mkdirSync(dirname(resolve(config.location)), { recursive: true });
    const sqlite = new SqliteDatabase(config.location);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma(`synchronous = ${config.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // Aggregations over millions of rows want a bigger page cache than the 2 MB default.
    sqlite.pragma('cache_size = -65536');
    const file = config.location === ':memory:' ? undefined : resolve(config.location);
    if (file) checkpointOffThread(sqlite, file);
    return {
      db: new Kysely<Database>({ dialect: new ImmediateSqliteDialect(sqlite) }),
      sqlite,
      ...(file && config.synchronous !== 'normal' ? { walSync: new WalSync(file) } : {}),
      ...(file ? { readThread: readOffThread(sqlite, file), writeThread: writeOffThread(sqlite, file) } : {}),
    };
  }
  const pool = new pg.Pool({ connectionString: config.location, max: config.poolSize ?? 10 });
  // An idle pooled connection that the server closes (a restart, a failover, an administrator's
  // terminate) is an 'error' event on the pool; unhandled, it would take the whole process down.
  // The pool has already dropped that client and opens a new one on next use.
  pool.on('error', (err) => {
    console.warn(`postgres: an idle connection was closed (${err.message}); a new one opens on next use`);
  });
  // A connection lost while checked out (mid-query) also emits 'error', on the client, where the
  // pool no longer listens: unhandled, a database outage would crash the server. Its query has
  // already failed with the same error, and the pool drops the dead client when it is released.
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  return { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }) };
}

/** How long a SQLite statement or transaction waits for another connection's write lock. */
const BUSY_TIMEOUT_MS = 10_000;

/**
 * Kysely's SQLite transactions begin DEFERRED: a transaction that reads before it writes (a
 * stage change reads the registry, then writes it) takes the write lock only at its first write,
 * and if another process committed since its read, SQLite answers SQLITE_BUSY at once, without
 * waiting out busy_timeout (waiting could deadlock). `ratchet rollback` beside a server logging
 * calls failed that way ("database is locked"). So transactions begin IMMEDIATE: the write lock
 * first. While another connection holds it, the wait is async (retries with growing pauses, up to
 * busy_timeout in all), never SQLite's busy handler, which sleeps on the event loop: a second
 * connection in this process (two stores on one file) could then never commit the transaction it
 * holds across an await, and no request would be served meanwhile.
 */
class ImmediateSqliteDialect extends SqliteDialect {
  constructor(private readonly sqlite: SqliteDatabase.Database) {
    super({ database: sqlite });
  }

  override createDriver(): Driver {
    const driver = super.createDriver();
    const sqlite = this.sqlite;
    driver.beginTransaction = async () => {
      const deadline = performance.now() + BUSY_TIMEOUT_MS;
      for (let pause = 1; ; pause = Math.min(2 * pause, 32)) {
        sqlite.pragma('busy_timeout = 0');
        try {
          sqlite.exec('begin immediate');
          return;
        } catch (err) {
          if ((err as { code?: string }).code !== 'SQLITE_BUSY' || performance.now() > deadline) throw err;
        } finally {
          sqlite.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
        }
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    };
    return driver;
  }
}
