import { checkStageMove, type ModelStage, newId, RatchetError } from '@ratchet/core';
import type { Kysely, Selectable } from 'kysely';
import type { AuditLog } from './audit.js';
import type { DialectName } from './connection.js';
import { decodeJson, encodeJson } from './json.js';
import type { Database, ModelsTable } from './schema.js';

export interface Model {
  id: string;
  projectId: string;
  name: string;
  route: string | null;
  baseModel: string;
  adapterPath: string | null;
  runId: string | null;
  datasetId: string | null;
  stage: ModelStage;
  metrics: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

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

/**
 * The model registry. Stage changes run in one transaction with their audit entries; making a
 * model production archives the route's previous production model, which a rollback restores.
 */
export class ModelRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly audit: AuditLog,
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
    const rows = await q.orderBy('created_at', 'desc').execute();
    return rows.map((r) => this.toModel(r));
  }

  async production(projectId: string, route: string): Promise<Model | undefined> {
    return (await this.list(projectId, { route, stage: 'production' }))[0];
  }

  /** Moves a model to a stage; production replaces (archives) the route's current production model. */
  async setStage(
    projectId: string,
    ref: string,
    stage: ModelStage,
    actor: string,
    reason: string,
  ): Promise<Model> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('models')
        .selectAll()
        .where('project_id', '=', projectId)
        .where((eb) => eb.or([eb('id', '=', ref), eb('name', '=', ref)]))
        .executeTakeFirst();
      if (!row) throw new RatchetError('not_found', `model "${ref}" not found`, 'model');
      checkStageMove(row.stage, stage, row.name);
      const now = Date.now();
      if (stage === 'production' && row.route !== null) {
        const current = await trx
          .selectFrom('models')
          .select(['id', 'name'])
          .where('project_id', '=', projectId)
          .where('route', '=', row.route)
          .where('stage', '=', 'production')
          .execute();
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
      return this.toModel({ ...row, stage, updated_at: now });
    });
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
  ): Promise<{ from: Model; to: Model }> {
    return this.db.transaction().execute(async (trx) => {
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
      return {
        from: this.toModel({ ...current, stage: 'archived', updated_at: now }),
        to: this.toModel({ ...previous, stage: 'production', updated_at: now }),
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
    };
  }
}
