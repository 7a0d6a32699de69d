import type { Model } from '@ratchet/core';
import {
  checkStageMove,
  defaultWatchPolicy,
  type ModelStage,
  newId,
  parseInput,
  RatchetError,
  type WatchPolicyInput,
  watchPolicySchema,
} from '@ratchet/core';
import type { Kysely, Selectable, Transaction } from 'kysely';
import type { AuditLog } from './audit.js';
import type { DialectName } from './connection.js';
import { decodeJson, encodeJson } from './json.js';
import type { GatewayRouteRepository, StoredVariant } from './routes.js';
import type { Database, ModelsTable } from './schema.js';
import { type GatewayFacts, productionVariant, servingModel, servingNoModel } from './serving.js';
import { type WatchRepository, watchedVariants } from './watches.js';

export type { Model } from '@ratchet/core';

export interface NewModel {
  name: string;
  route?: string | null;
  baseModel: string;
  adapterPath?: string | null;
  runId?: string | null;
  datasetId?: string | null;
  stage?: ModelStage;
  metrics?: Record<string, unknown>;
}

/** A stage change's effect on the gateway: the route's variants now (null: the file's route). */
export interface ServedChange {
  route: string;
  variants: StoredVariant[] | null;
}

/**
 * The model registry. Stage changes run in one transaction with their audit entries and with
 * the gateway's routing (`gateway_routes`): making a model production archives the route's
 * previous production model, which a rollback restores, and makes the route serve it. So what
 * the registry calls production is what every gateway serves, or the change is refused.
 */
export class ModelRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly audit: AuditLog,
    private readonly routes: GatewayRouteRepository,
    private readonly watches: WatchRepository,
  ) {}

  async register(projectId: string, m: NewModel, actor: string): Promise<Model> {
    const now = Date.now();
    const model: Model = {
      id: newId(now),
      projectId,
      name: m.name,
      route: m.route ?? null,
      baseModel: m.baseModel,
      adapterPath: m.adapterPath ?? null,
      runId: m.runId ?? null,
      datasetId: m.datasetId ?? null,
      stage: m.stage ?? 'candidate',
      metrics: m.metrics ?? {},
      createdAt: now,
      updatedAt: now,
      dataDeletedAt: null,
    };
    await this.db.transaction().execute(async (trx) => {
      const clash = await trx
        .selectFrom('models')
        .select('id')
        .where('project_id', '=', projectId)
        .where('name', '=', m.name)
        .executeTakeFirst();
      if (clash) throw new RatchetError('conflict', `name: a model named "${m.name}" exists`, 'name');
      await trx
        .insertInto('models')
        .values({
          id: model.id,
          project_id: projectId,
          name: model.name,
          route: model.route,
          base_model: model.baseModel,
          adapter_path: model.adapterPath,
          run_id: model.runId,
          dataset_id: model.datasetId,
          stage: model.stage,
          metrics: encodeJson(model.metrics),
          created_at: now,
          updated_at: now,
        })
        .execute();
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'model.registered',
          subjectType: 'model',
          subjectId: model.id,
          details: { name: model.name, stage: model.stage, runId: model.runId, datasetId: model.datasetId },
        },
        trx,
      );
    });
    return model;
  }

  async get(projectId: string, ref: string): Promise<Model | undefined> {
    const row = await this.db
      .selectFrom('models')
      .selectAll()
      .where('project_id', '=', projectId)
      .where((eb) => eb.or([eb('id', '=', ref), eb('name', '=', ref)]))
      .executeTakeFirst();
    return row && this.toModel(row);
  }

  async list(projectId: string, filter: { route?: string; stage?: ModelStage } = {}): Promise<Model[]> {
    let q = this.db.selectFrom('models').selectAll().where('project_id', '=', projectId);
    if (filter.route !== undefined) q = q.where('route', '=', filter.route);
    if (filter.stage !== undefined) q = q.where('stage', '=', filter.stage);
    // Ties on created_at (two models in one millisecond) broken by id, which is time-ordered.
    const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').execute();
    return rows.map((r) => this.toModel(r));
  }

  async production(projectId: string, route: string): Promise<Model | undefined> {
    return (await this.list(projectId, { route, stage: 'production' }))[0];
  }

  /**
   * Moves a model to a stage; production replaces (archives) the route's current production model
   * and the route serves the new one; a production model leaving production hands the route back
   * to the gateway file. Refused, changing nothing, when that cannot be served (see serving.ts)
   * or an experiment runs on the route. `gateway`: what the caller knows of the gateway file.
   * A promotion that replaces a production model opens a watch (watches.ts) here, the one place
   * every promotion goes through: the replaced model keeps a holdback share of the route's users
   * until the watch ends or the guardrail rolls back. `watch`: its policy (defaults otherwise).
   */
  async setStage(
    projectId: string,
    ref: string,
    stage: ModelStage,
    actor: string,
    reason: string,
    gateway?: GatewayFacts,
    options: { watch?: WatchPolicyInput } = {},
  ): Promise<Model & { served: ServedChange | null; watchId: string | null }> {
    // A policy given with the change (the loop policy's) wins over the route's configured one.
    const given =
      options.watch === undefined ? undefined : parseInput(watchPolicySchema, options.watch, 'watch');
    return this.routes.transaction(async (trx) => {
      const row = await trx
        .selectFrom('models')
        .selectAll()
        .where('project_id', '=', projectId)
        .where((eb) => eb.or([eb('id', '=', ref), eb('name', '=', ref)]))
        .executeTakeFirst();
      if (!row) throw new RatchetError('not_found', `model "${ref}" not found`, 'model');
      checkStageMove(row.stage, stage, row.name);
      const served = await this.planStageServing(trx, row, stage, gateway);
      const now = Date.now();
      let replaced: Selectable<ModelsTable> | undefined;
      if (stage === 'production' && row.route !== null) {
        const current = await trx
          .selectFrom('models')
          .selectAll()
          .where('project_id', '=', projectId)
          .where('route', '=', row.route)
          .where('stage', '=', 'production')
          .where('id', '!=', row.id)
          .execute();
        replaced = current[0];
        if (current.length > 0)
          await this.watches.closeOn(trx, projectId, row.route, 'superseded', actor, `${row.name} promoted`);
        for (const c of current) {
          await trx
            .updateTable('models')
            .set({ stage: 'archived', updated_at: now })
            .where('id', '=', c.id)
            .execute();
          await this.audit.record(
            {
              projectId,
              actor,
              action: 'model.replaced',
              subjectType: 'model',
              subjectId: c.id,
              details: { from: 'production', to: 'archived', by: row.id, route: row.route, reason },
            },
            trx,
          );
        }
      }
      await trx.updateTable('models').set({ stage, updated_at: now }).where('id', '=', row.id).execute();
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'model.stage',
          subjectType: 'model',
          subjectId: row.id,
          details: { from: row.stage, to: stage, route: row.route, reason },
        },
        trx,
      );
      let watchId: string | null = null;
      if (served && stage === 'production' && row.route !== null && replaced) {
        const policy =
          given ?? (await this.watches.policyOf(projectId, row.route, trx))?.policy ?? defaultWatchPolicy;
        watchId = await this.openWatch(trx, row, replaced, served, gateway, policy, actor);
      } else if (row.stage === 'production' && stage !== 'production' && row.route !== null) {
        await this.watches.closeOn(
          trx,
          projectId,
          row.route,
          'superseded',
          actor,
          `${row.name} left production`,
        );
      }
      if (served) await this.writeServed(trx, projectId, served, actor, reason);
      return { ...this.toModel({ ...row, stage, updated_at: now }), served, watchId };
    });
  }

  /**
   * Puts the replaced model on the route as the holdback (mutating `served`) and opens the watch.
   * When the replaced model cannot be served any more (its adapter is gone, no upstream), the
   * promotion still goes ahead unwatched, and the audit says why: refusing a promotion because the
   * old model is broken would keep the broken one.
   */
  private async openWatch(
    trx: Transaction<Database>,
    row: Selectable<ModelsTable>,
    replaced: Selectable<ModelsTable>,
    served: ServedChange,
    gateway: GatewayFacts | undefined,
    policy: ReturnType<typeof watchPolicySchema.parse>,
    actor: string,
  ): Promise<string | null> {
    const route = row.route!;
    const before = (await this.routes.get(row.project_id, route, trx))?.variants ?? [];
    let holdback: StoredVariant | undefined;
    try {
      const asProduction = servingModel(
        route,
        { id: replaced.id, name: replaced.name, adapterPath: replaced.adapter_path },
        before,
        gateway,
        'stage',
      );
      holdback = asProduction.find((v) => v.name === productionVariant && !v.segment);
    } catch (err) {
      if (!(err instanceof RatchetError)) throw err;
      await this.audit.record(
        {
          projectId: row.project_id,
          actor,
          action: 'watch.skipped',
          subjectType: 'model',
          subjectId: row.id,
          details: { route, holdback: replaced.id, reason: err.message },
        },
        trx,
      );
      return null;
    }
    if (!holdback || !served.variants) return null;
    served.variants = watchedVariants(served.variants, holdback, policy.holdbackShare);
    return this.watches.open(
      trx,
      { projectId: row.project_id, route, modelId: row.id, holdbackModelId: replaced.id, policy },
      actor,
    );
  }

  /**
   * What a stage move does to the gateway: a model becoming production is served by its route;
   * the production model leaving production hands the route back to the gateway file; other
   * moves (candidate, canary: an experiment sends canary traffic) leave routing alone. Throws
   * when the move cannot be served, or would change a route an experiment runs on.
   */
  private async planStageServing(
    trx: Transaction<Database>,
    row: Selectable<ModelsTable>,
    stage: ModelStage,
    gateway: GatewayFacts | undefined,
  ): Promise<ServedChange | null> {
    const touchesRoute = row.route !== null && (stage === 'production' || row.stage === 'production');
    if (!touchesRoute) {
      if (stage !== 'canary') await this.refuseDuringExperiment(trx, row.project_id, { model: row });
      return null;
    }
    const route = row.route!;
    await this.refuseDuringExperiment(trx, row.project_id, { route });
    const current = (await this.routes.get(row.project_id, route, trx))?.variants ?? [];
    const variants =
      stage === 'production'
        ? servingModel(
            route,
            { id: row.id, name: row.name, adapterPath: row.adapter_path },
            current,
            gateway,
            'stage',
          )
        : servingNoModel(route, current, gateway, 'stage');
    return { route, variants };
  }

  /**
   * A running experiment owns its route's traffic split and compares its variants: a stage change
   * that rewrote the route (or took away a model it serves) would invalidate its evidence and
   * leave a loop round waiting on a comparison that no longer exists. So it is refused; stopping
   * the experiment (keeping a variant) is an explicit decision with its own audit entry.
   */
  private async refuseDuringExperiment(
    trx: Transaction<Database>,
    projectId: string,
    on: { route: string } | { model: Selectable<ModelsTable> },
    path = 'stage',
  ): Promise<void> {
    let q = trx
      .selectFrom('experiments')
      .select(['name', 'route', 'variants'])
      .where('project_id', '=', projectId)
      .where('status', '=', 'running');
    if ('route' in on) q = q.where('route', '=', on.route);
    for (const e of await q.execute()) {
      const variants = decodeJson<StoredVariant[]>(this.dialect, e.variants);
      if ('model' in on && !variants.some((v) => v.modelId === on.model.id)) continue;
      throw new RatchetError(
        'conflict',
        `${path}: experiment "${e.name}" runs on route "${e.route}"${
          'model' in on ? ` with ${on.model.name} as a variant` : ''
        }; stop it first (ratchet experiment stop ${e.name} --keep <variant>)`,
        path,
      );
    }
  }

  /** Writes the route's new variants (or removes its entry) and audits it, in the caller's transaction. */
  private async writeServed(
    trx: Transaction<Database>,
    projectId: string,
    served: ServedChange,
    actor: string,
    reason: string,
  ): Promise<void> {
    const before = (await this.routes.get(projectId, served.route, trx))?.variants ?? null;
    if (served.variants) await this.routes.put(projectId, served.route, served.variants, trx);
    else await this.routes.delete(projectId, served.route, trx);
    await this.audit.record(
      {
        projectId,
        actor,
        action: 'route.served',
        subjectType: 'route',
        subjectId: served.route,
        details: { from: before, to: served.variants, reason },
      },
      trx,
    );
  }

  /**
   * Rolls a route back: its production model is archived and the model it replaced returns to
   * production. Fails, changing nothing, when there is nothing to go back to.
   */
  async rollback(
    projectId: string,
    route: string,
    actor: string,
    reason: string,
    gateway?: GatewayFacts,
  ): Promise<{ from: Model; to: Model; served: ServedChange }> {
    return this.routes.transaction(async (trx) => {
      const current = await trx
        .selectFrom('models')
        .selectAll()
        .where('project_id', '=', projectId)
        .where('route', '=', route)
        .where('stage', '=', 'production')
        .executeTakeFirst();
      if (!current)
        throw new RatchetError('conflict', `route: "${route}" has no production model to roll back`, 'route');
      const replaced = await trx
        .selectFrom('audit_log as a')
        .innerJoin('models as m', 'm.id', 'a.subject_id')
        .select('m.id')
        .where('a.project_id', '=', projectId)
        .where('a.action', '=', 'model.replaced')
        .where('m.route', '=', route)
        .where('m.stage', '=', 'archived')
        .where('m.id', '!=', current.id)
        .orderBy('a.created_at', 'desc')
        .orderBy('a.id', 'desc')
        .executeTakeFirst();
      if (!replaced)
        throw new RatchetError(
          'conflict',
          `route: "${route}" has no earlier production model to return to`,
          'route',
        );
      const previous = await trx
        .selectFrom('models')
        .selectAll()
        .where('id', '=', replaced.id)
        .executeTakeFirstOrThrow();
      await this.refuseDuringExperiment(trx, projectId, { route }, 'route');
      const routeNow = (await this.routes.get(projectId, route, trx))?.variants ?? [];
      const served: ServedChange = {
        route,
        variants: servingModel(
          route,
          { id: previous.id, name: previous.name, adapterPath: previous.adapter_path },
          routeNow,
          gateway,
          'route',
        ),
      };
      const now = Date.now();
      await trx
        .updateTable('models')
        .set({ stage: 'archived', updated_at: now })
        .where('id', '=', current.id)
        .execute();
      await trx
        .updateTable('models')
        .set({ stage: 'production', updated_at: now })
        .where('id', '=', previous.id)
        .execute();
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'model.rolled_back',
          subjectType: 'model',
          subjectId: current.id,
          details: { from: 'production', to: 'archived', route, restored: previous.id, reason },
        },
        trx,
      );
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'model.restored',
          subjectType: 'model',
          subjectId: previous.id,
          details: { from: 'archived', to: 'production', route, replacing: current.id, reason },
        },
        trx,
      );
      await this.watches.closeOn(trx, projectId, route, 'rolled_back', actor, reason);
      await this.writeServed(trx, projectId, served, actor, reason);
      return {
        from: this.toModel({ ...current, stage: 'archived', updated_at: now }),
        to: this.toModel({ ...previous, stage: 'production', updated_at: now }),
        served,
      };
    });
  }

  private toModel(r: Selectable<ModelsTable>): Model {
    return {
      id: r.id,
      projectId: r.project_id,
      name: r.name,
      route: r.route,
      baseModel: r.base_model,
      adapterPath: r.adapter_path,
      runId: r.run_id,
      datasetId: r.dataset_id,
      stage: r.stage,
      metrics: decodeJson(this.dialect, r.metrics),
      createdAt: r.created_at,
      updatedAt: r.updated_at,
      dataDeletedAt: r.data_deleted_at ?? null,
    };
  }
}
