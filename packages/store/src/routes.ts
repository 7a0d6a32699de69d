import type { ServedRoute, ServedVariant } from '@ratchet/core';
import type { Kysely, Transaction } from 'kysely';
import { type ChangeListener, ChangeSignal } from './change-signal.js';
import type { DatabaseConfig, DialectName } from './connection.js';
import { decodeJson, encodeJson } from './json.js';
import type { Database } from './schema.js';

/** A variant as the store keeps it: core's ServedVariant, the one declaration of the shape. */
export type StoredVariant = ServedVariant;

/** The route's per-segment variants, which experiments on the route's global model leave alone. */
export function segmentVariants(variants: readonly StoredVariant[] | undefined): StoredVariant[] {
  return (variants ?? []).filter((v) => v.segment !== undefined);
}

export interface StoredRoute extends ServedRoute {
  projectId: string;
}

/** Wakes a gateway when the routes it serves changed; it reloads them (the payload is empty). */
export type RouteChangeListener = ChangeListener;

/** The PostgreSQL channel every route write notifies, at commit. */
const routesChannel = 'ratchet_gateway_routes';

/**
 * Routes kept in the database: a route's weighted variants, written by stage changes of the
 * registry (what production serves), experiments, and Thompson sampling as it moves weights.
 * The gateway reads them all into memory and reloads when `subscribe` tells it they changed; no
 * request reads this table. Every write bumps `gateway_route_version` and, on PostgreSQL,
 * NOTIFYs in the writer's transaction, so the signal goes out exactly when the change commits.
 */
export class GatewayRouteRepository {
  private readonly signal: ChangeSignal;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    database: DatabaseConfig,
  ) {
    this.signal = new ChangeSignal(db, dialect, database, routesChannel, 'gateway_route_version');
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
    return this.signal.subscribe(listener, options);
  }

  /** The counter every route write bumps. */
  version(): Promise<number> {
    return this.signal.version();
  }

  private notifyLocal(): Promise<void> {
    return this.signal.notifyLocal();
  }

  /** Bumps the version and (PostgreSQL) notifies: both take effect when `trx` commits. */
  private markChanged(trx: Kysely<Database>): Promise<void> {
    return this.signal.markChanged(trx);
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
