import { resolve } from 'node:path';
import { type Kysely, sql, type Transaction } from 'kysely';
import pg from 'pg';
import type { DatabaseConfig, DialectName } from './connection.js';
import { decodeJson, encodeJson } from './json.js';
import type { Database } from './schema.js';

export interface StoredVariant {
  name: string;
  /** A gateway upstream (from the gateway file). */
  upstream: string;
  /** The model name sent upstream. */
  model: string;
  weight: number;
  /** The registry model this variant serves, when it is one. */
  modelId?: string | null;
  /**
   * Only calls of this segment get this variant (tagged `tag`, or metadata key equal to
   * `equals`); calls of no segment go to the variants without one. Experiments keep these.
   */
  segment?: { tag: string } | { metadata: string; equals: string | number | boolean };
}

/** The route's per-segment variants, which experiments on the route's global model leave alone. */
export function segmentVariants(variants: readonly StoredVariant[] | undefined): StoredVariant[] {
  return (variants ?? []).filter((v) => v.segment !== undefined);
}

export interface StoredRoute {
  projectId: string;
  name: string;
  variants: StoredVariant[];
  updatedAt: number;
}

/** Wakes a gateway when the routes it serves changed; it reloads them (the payload is empty). */
export type RouteChangeListener = () => void | Promise<void>;

/** The PostgreSQL channel every route write notifies, at commit. */
const routesChannel = 'ratchet_gateway_routes';

/**
 * The listeners of each database in this process, by database: a change committed by any Store
 * in this process (a server's API, the loop, the CLI run in-process) wakes every gateway here
 * on the same database, whichever Store object it reads through.
 */
const localListeners = new Map<string, Set<RouteChangeListener>>();

function databaseKey(config: DatabaseConfig): string {
  return config.dialect === 'sqlite' && config.location !== ':memory:'
    ? `sqlite:${resolve(config.location)}`
    : `${config.dialect}:${config.location}`;
}

/**
 * Routes kept in the database: a route's weighted variants, written by stage changes of the
 * registry (what production serves), experiments, and Thompson sampling as it moves weights.
 * The gateway reads them all into memory and reloads when `subscribe` tells it they changed; no
 * request reads this table. Every write bumps `gateway_route_version` and, on PostgreSQL,
 * NOTIFYs in the writer's transaction, so the signal goes out exactly when the change commits.
 */
export class GatewayRouteRepository {
  private readonly key: string;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly database: DatabaseConfig,
  ) {
    this.key = databaseKey(database);
  }

  /**
   * Runs `work` in a transaction that may write routes; after it commits, this process's
   * gateways on the same database have reloaded them (other processes hear it by NOTIFY, or by
   * their poll of the version on SQLite).
   */
  async transaction<T>(work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    const result = await this.db.transaction().execute(work);
    await this.notifyLocal();
    return result;
  }

  /**
   * Calls `listener` whenever routes change: at once for changes from this process, by LISTEN
   * for other PostgreSQL clients, and by polling the version counter every `pollMs` (the only
   * way between processes on one SQLite file; a fallback for a dropped LISTEN connection).
   * Returns the function that stops it.
   */
  subscribe(
    listener: RouteChangeListener,
    options: { pollMs?: number; onError?: (err: unknown) => void } = {},
  ): () => Promise<void> {
    const onError = options.onError ?? (() => {});
    const listeners = localListeners.get(this.key) ?? new Set<RouteChangeListener>();
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

  /** The counter every route write bumps. */
  async version(): Promise<number> {
    const row = await this.db
      .selectFrom('gateway_route_version')
      .select('version')
      .where('id', '=', 1)
      .executeTakeFirst();
    return Number(row?.version ?? 0);
  }

  private pollVersion(listener: RouteChangeListener, pollMs: number, onError: (err: unknown) => void) {
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
   * it drops it reconnects after a second and reloads once, for what it may have missed.
   */
  private listen(listener: RouteChangeListener, onError: (err: unknown) => void) {
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
        await c.query(`listen ${routesChannel}`);
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

  private async notifyLocal(): Promise<void> {
    const listeners = [...(localListeners.get(this.key) ?? [])];
    // A listener's failure is its own (the gateway logs it); the change has committed.
    await Promise.all(listeners.map(async (l) => l()).map((p) => p.catch(() => {})));
  }

  /** Bumps the version and (PostgreSQL) notifies: both take effect when `trx` commits. */
  private async markChanged(trx: Kysely<Database>): Promise<void> {
    await trx
      .updateTable('gateway_route_version')
      .set((eb) => ({ version: eb('version', '+', 1) }))
      .where('id', '=', 1)
      .execute();
    if (this.dialect === 'postgres') await sql`select pg_notify(${routesChannel}, '')`.execute(trx);
  }

  /** Sets a route's variants; without `trx`, in a transaction of its own that wakes the gateways. */
  async put(
    projectId: string,
    name: string,
    variants: StoredVariant[],
    trx?: Transaction<Database>,
  ): Promise<StoredRoute> {
    if (!trx) return this.transaction((t) => this.put(projectId, name, variants, t));
    const now = Date.now();
    const row = { project_id: projectId, name, variants: encodeJson(variants), updated_at: now };
    await trx
      .insertInto('gateway_routes')
      .values(row)
      .onConflict((oc) =>
        oc.columns(['project_id', 'name']).doUpdateSet({ variants: row.variants, updated_at: now }),
      )
      .execute();
    await this.markChanged(trx);
    return { projectId, name, variants, updatedAt: now };
  }

  async get(
    projectId: string,
    name: string,
    trx: Kysely<Database> | Transaction<Database> = this.db,
  ): Promise<StoredRoute | undefined> {
    const row = await trx
      .selectFrom('gateway_routes')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('name', '=', name)
      .executeTakeFirst();
    return row && this.toRoute(row);
  }

  /** One project's routes, or every project's (the gateway's cache) when no project is given. */
  async list(projectId?: string): Promise<StoredRoute[]> {
    let q = this.db.selectFrom('gateway_routes').selectAll();
    if (projectId !== undefined) q = q.where('project_id', '=', projectId);
    const rows = await q.orderBy('project_id').orderBy('name').execute();
    return rows.map((r) => this.toRoute(r));
  }

  /** Removes a route's entry (the gateway file's route applies again); false when there was none. */
  async delete(projectId: string, name: string, trx?: Transaction<Database>): Promise<boolean> {
    if (!trx) return this.transaction((t) => this.delete(projectId, name, t));
    const r = await trx
      .deleteFrom('gateway_routes')
      .where('project_id', '=', projectId)
      .where('name', '=', name)
      .executeTakeFirst();
    const deleted = Number(r.numDeletedRows) > 0;
    if (deleted) await this.markChanged(trx);
    return deleted;
  }

  private toRoute(r: {
    project_id: string;
    name: string;
    variants: unknown;
    updated_at: number;
  }): StoredRoute {
    return {
      projectId: r.project_id,
      name: r.name,
      variants: decodeJson(this.dialect, r.variants),
      updatedAt: Number(r.updated_at),
    };
  }
}
