import { newId, RatchetError } from '@ratchet/core';
import type { Kysely } from 'kysely';
import type { AuditLog } from './audit.js';
import type { DialectName } from './connection.js';
import { chunk, decodeJson, encodeJson, rowsPerStatement } from './json.js';
import type { Database, EvaluationStatus } from './schema.js';

export interface Evaluation {
  id: string;
  projectId: string;
  name: string | null;
  candidateModelId: string | null;
  baselineModelId: string | null;
  spec: Record<string, unknown>;
  status: EvaluationStatus;
  summary: Record<string, unknown> | null;
  gate: ({ passed: boolean; reasons: string[] } & Record<string, unknown>) | null;
  passed: boolean | null;
  error: string | null;
  createdAt: number;
  finishedAt: number | null;
}

/** What the store keeps of one item; `result` is the whole per-item record. */
export interface EvaluationItemRow {
  index: number;
  suite: string;
  itemId: string;
  category: string | null;
  judge: string | null;
  result: unknown;
}

export class EvaluationRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly audit: AuditLog,
  ) {}

  async create(
    projectId: string,
    e: {
      name?: string | null;
      candidateModelId?: string | null;
      baselineModelId?: string | null;
      spec: unknown;
    },
  ): Promise<Evaluation> {
    const now = Date.now();
    const id = newId(now);
    await this.db
      .insertInto('evaluations')
      .values({
        id,
        project_id: projectId,
        name: e.name ?? null,
        candidate_model_id: e.candidateModelId ?? null,
        baseline_model_id: e.baselineModelId ?? null,
        spec: encodeJson(e.spec),
        status: 'running',
        summary: null,
        gate: null,
        passed: null,
        error: null,
        created_at: now,
        finished_at: null,
      })
      .execute();
    return (await this.get(projectId, id))!;
  }

  /**
   * Items, summary and gate land together in one transaction: a finished evaluation is whole.
   * When the candidate is a registry model, the gate's verdict and reasons go to the audit log in
   * the same transaction (`model.gate_passed`, `model.gate_undecided` or `model.gate_failed`; the
   * stage is not changed). `passed` is 1 unless a gate failed (undecided may go on to a canary).
   */
  async complete(
    projectId: string,
    id: string,
    result: {
      items: EvaluationItemRow[];
      summary: unknown;
      gate: { passed: boolean; reasons: string[] } & Record<string, unknown>;
    },
    actor = 'loop',
  ): Promise<Evaluation> {
    await this.db.transaction().execute(async (trx) => {
      const rows = result.items.map((i) => ({
        evaluation_id: id,
        idx: i.index,
        suite: i.suite,
        item_id: i.itemId,
        category: i.category,
        judge: i.judge,
        result: encodeJson(i.result),
      }));
      for (const part of chunk(rows, rowsPerStatement(7))) {
        await trx.insertInto('evaluation_items').values(part).execute();
      }
      const updated = await trx
        .updateTable('evaluations')
        .set({
          status: 'succeeded',
          summary: encodeJson(result.summary),
          gate: encodeJson(result.gate),
          passed: result.gate.passed ? 1 : 0,
          finished_at: Date.now(),
        })
        .where('project_id', '=', projectId)
        .where('id', '=', id)
        .where('status', '=', 'running')
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1)
        throw new RatchetError('conflict', `evaluation ${id} is not running`, 'id');
      const row = await trx
        .selectFrom('evaluations')
        .select('candidate_model_id')
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
      if (row.candidate_model_id) {
        await this.audit.record(
          {
            projectId,
            actor,
            action: !result.gate.passed
              ? 'model.gate_failed'
              : result.gate.decision === 'undecided'
                ? 'model.gate_undecided'
                : 'model.gate_passed',
            subjectType: 'model',
            subjectId: row.candidate_model_id,
            details: { evaluationId: id, reasons: result.gate.reasons },
          },
          trx,
        );
      }
    });
    return (await this.get(projectId, id))!;
  }

  async fail(projectId: string, id: string, error: string): Promise<void> {
    await this.db
      .updateTable('evaluations')
      .set({ status: 'failed', error: error.slice(0, 4000), finished_at: Date.now() })
      .where('project_id', '=', projectId)
      .where('id', '=', id)
      .where('status', '=', 'running')
      .execute();
  }

  async get(projectId: string, id: string): Promise<Evaluation | undefined> {
    const row = await this.db
      .selectFrom('evaluations')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && this.toEvaluation(row);
  }

  async list(projectId: string, filter: { modelId?: string; limit?: number } = {}): Promise<Evaluation[]> {
    let q = this.db.selectFrom('evaluations').selectAll().where('project_id', '=', projectId);
    if (filter.modelId) q = q.where('candidate_model_id', '=', filter.modelId);
    const rows = await q
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(filter.limit ?? 100)
      .execute();
    return rows.map((r) => this.toEvaluation(r));
  }

  async items(
    projectId: string,
    id: string,
    filter: { suite?: string; judge?: string; offset?: number; limit?: number } = {},
  ): Promise<EvaluationItemRow[]> {
    let q = this.db
      .selectFrom('evaluation_items as i')
      .innerJoin('evaluations as e', 'e.id', 'i.evaluation_id')
      .select(['i.idx', 'i.suite', 'i.item_id', 'i.category', 'i.judge', 'i.result'])
      .where('e.project_id', '=', projectId)
      .where('i.evaluation_id', '=', id);
    if (filter.suite) q = q.where('i.suite', '=', filter.suite);
    if (filter.judge) q = q.where('i.judge', '=', filter.judge);
    const rows = await q
      .orderBy('i.idx')
      .offset(filter.offset ?? 0)
      .limit(filter.limit ?? 10_000)
      .execute();
    return rows.map((r) => ({
      index: r.idx,
      suite: r.suite,
      itemId: r.item_id,
      category: r.category,
      judge: r.judge,
      result: decodeJson(this.dialect, r.result),
    }));
  }

  /** The interactions of a dataset version's held-out (test) split, in id order. */
  async heldOutInteractionIds(projectId: string, datasetId: string, limit: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('dataset_interactions')
      .select('interaction_id')
      .where('project_id', '=', projectId)
      .where('dataset_id', '=', datasetId)
      .where('split', '=', 'test')
      .orderBy('interaction_id')
      .limit(limit)
      .execute();
    return rows.map((r) => r.interaction_id);
  }

  private toEvaluation(r: {
    id: string;
    project_id: string;
    name: string | null;
    candidate_model_id: string | null;
    baseline_model_id: string | null;
    spec: unknown;
    status: EvaluationStatus;
    summary: unknown;
    gate: unknown;
    passed: number | null;
    error: string | null;
    created_at: number;
    finished_at: number | null;
  }): Evaluation {
    return {
      id: r.id,
      projectId: r.project_id,
      name: r.name,
      candidateModelId: r.candidate_model_id,
      baselineModelId: r.baseline_model_id,
      spec: decodeJson(this.dialect, r.spec),
      status: r.status,
      summary: r.summary === null ? null : decodeJson(this.dialect, r.summary),
      gate: r.gate === null ? null : decodeJson(this.dialect, r.gate),
      passed: r.passed === null ? null : Boolean(r.passed),
      error: r.error,
      createdAt: Number(r.created_at),
      finishedAt: r.finished_at === null ? null : Number(r.finished_at),
    };
  }
}
