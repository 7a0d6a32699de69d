import type { Kysely, Transaction } from 'kysely';
import type { DialectName } from './connection.js';
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

/**
 * Routes kept in the database: a route's weighted variants, written by experiments (and by
 * Thompson sampling as it moves weights). The gateway reads them all into memory in the
 * background; no request reads this table.
 */
export class GatewayRouteRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
  ) {}

  async put(
    projectId: string,
    name: string,
    variants: StoredVariant[],
    trx: Kysely<Database> | Transaction<Database> = this.db,
  ): Promise<StoredRoute> {
    const now = Date.now();
    const row = { project_id: projectId, name, variants: encodeJson(variants), updated_at: now };
    await trx
      .insertInto('gateway_routes')
      .values(row)
      .onConflict((oc) =>
        oc.columns(['project_id', 'name']).doUpdateSet({ variants: row.variants, updated_at: now }),
      )
      .execute();
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

  async delete(
    projectId: string,
    name: string,
    trx: Kysely<Database> | Transaction<Database> = this.db,
  ): Promise<boolean> {
    const r = await trx
      .deleteFrom('gateway_routes')
      .where('project_id', '=', projectId)
      .where('name', '=', name)
      .executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
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
