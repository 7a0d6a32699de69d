import { resolve } from 'node:path';
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import type { DatabaseConfig, DialectName } from './connection.js';
import type { Database } from './schema.js';

/** Wakes a process when something it caches changed in the database (the payload is empty). */
export type ChangeListener = () => void | Promise<void>;

/** The one-row counters a change bumps: read by processes that cannot LISTEN (SQLite). */
export type VersionTable = 'gateway_route_version' | 'api_key_version';

/**
 * The listeners of each (database, channel) in this process: a change committed by any Store
 * in this process (a server's API, the loop, the CLI run in-process) wakes every listener here
 * on the same database, whichever Store object it reads through.
 */
const localListeners = new Map<string, Set<ChangeListener>>();

function databaseKey(config: DatabaseConfig): string {
  return config.dialect === 'sqlite' && config.location !== ':memory:'
    ? `sqlite:${resolve(config.location)}`
    : `${config.dialect}:${config.location}`;
}

/**
 * How a cache of database rows (the gateway's routes, the servers' API keys) learns at once that
 * they changed: a writer calls `markChanged` in its transaction (bumps a version row and, on
 * PostgreSQL, `pg_notify`s, so the signal goes out exactly when the change commits) and
 * `notifyLocal` after commit; a reader `subscribe`s and hears it from this process at once, from
 * other PostgreSQL clients by LISTEN, and by polling the version (the only way between processes
 * on one SQLite file; a fallback for a dropped LISTEN connection).
 */
export class ChangeSignal {
  private readonly key: string;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly database: DatabaseConfig,
    /** The PostgreSQL channel (a fixed identifier, never input). */
    private readonly channel: string,
    private readonly versionTable: VersionTable,
  ) {
    this.key = `${databaseKey(database)}#${channel}`;
  }

  /** Calls `listener` whenever the data changes. Returns the function that stops it. */
  subscribe(
    listener: ChangeListener,
    options: { pollMs?: number; onError?: (err: unknown) => void } = {},
  ): () => Promise<void> {
    const onError = options.onError ?? (() => {});
    const listeners = localListeners.get(this.key) ?? new Set<ChangeListener>();
    localListeners.set(this.key, listeners);
    listeners.add(listener);
    const poll = this.pollVersion(
      listener,
      options.pollMs ?? (this.dialect === 'sqlite' ? 250 : 1000),
      onError,
    );
    const listen = this.dialect === 'postgres' ? this.listen(listener, onError) : undefined;
    return async () => {
      listeners.delete(listener);
      if (listeners.size === 0) localListeners.delete(this.key);
      poll.stop();
      await listen?.stop();
    };
  }

  /** The counter every change bumps. */
  async version(): Promise<number> {
    const row = await this.db
      .selectFrom(this.versionTable)
      .select('version')
      .where('id', '=', 1)
      .executeTakeFirst();
    return Number(row?.version ?? 0);
  }

  /** Bumps the version and (PostgreSQL) notifies: both take effect when `trx` commits. */
  async markChanged(trx: Kysely<Database>): Promise<void> {
    await trx
      .updateTable(this.versionTable)
      .set((eb) => ({ version: eb('version', '+', 1) }))
      .where('id', '=', 1)
      .execute();
    if (this.dialect === 'postgres') await sql`select pg_notify(${this.channel}, '')`.execute(trx);
  }

  /** Wakes this process's listeners on the same database; call after the change committed. */
  async notifyLocal(): Promise<void> {
    const listeners = [...(localListeners.get(this.key) ?? [])];
    // A listener's failure is its own (its owner logs it); the change has committed.
    await Promise.all(listeners.map(async (l) => l()).map((p) => p.catch(() => {})));
  }

  private pollVersion(listener: ChangeListener, pollMs: number, onError: (err: unknown) => void) {
    let last: number | undefined;
    let busy = false;
    const tick = async () => {
      if (busy) return;
      busy = true;
      try {
        const now = await this.version();
        if (last !== undefined && now !== last) await listener();
        last = now;
      } catch (err) {
        onError(err);
      } finally {
        busy = false;
      }
    };
    void tick();
    const timer = setInterval(() => void tick(), pollMs);
    timer.unref();
    return { stop: () => clearInterval(timer) };
  }

  /**
   * One LISTEN connection (outside the pool: a pooled client would be handed to queries). When
   * it drops it reconnects after a second and calls the listener once, for what it may have missed.
   */
  private listen(listener: ChangeListener, onError: (err: unknown) => void) {
    let client: pg.Client | undefined;
    let stopped = false;
    let retry: NodeJS.Timeout | undefined;
    // A client fails once however it fails (a refused connect, an error event, an end): only the
    // current one schedules the single reconnect.
    const drop = (c: pg.Client, err?: unknown) => {
      if (client !== c) return;
      client = undefined;
      if (err !== undefined) onError(err);
      void c.end().catch(() => {});
      if (!stopped) retry = setTimeout(() => void connect(true), 1000);
    };
    const connect = async (reconnecting: boolean) => {
      const c = new pg.Client({ connectionString: this.database.location });
      client = c;
      c.on('notification', () => void listener());
      c.on('error', (err) => drop(c, err));
      c.on('end', () => drop(c));
      try {
        await c.connect();
        await c.query(`listen ${this.channel}`);
        if (stopped) await c.end();
        else if (reconnecting) await listener();
      } catch (err) {
        drop(c, err);
      }
    };
    const started = connect(false);
    return {
      stop: async () => {
        stopped = true;
        clearTimeout(retry);
        await started;
        const c = client;
        client = undefined;
        await c?.end().catch(() => {});
      },
    };
  }
}
