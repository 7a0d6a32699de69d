import { createHash } from 'node:crypto';
import type { DeletionSummary } from '@ratchet/core';
import { RatchetError } from '@ratchet/core';
import { type Kysely, sql, type Transaction } from 'kysely';
import type { AuditLog } from './audit.js';
import type { DialectName } from './connection.js';
import { chunk, decodeJson } from './json.js';
import { listMonthPartitions, type MonthPartition } from './partitions.js';
import type { RollupRepository } from './rollups.js';
import type { Database } from './schema.js';

/** What a deletion removes: an end user's data, some interactions, or what a retention policy selected. */
export type DeletionSubject =
  | { kind: 'end_user'; userId: string }
  | { kind: 'interactions'; ids: readonly string[] }
  | {
      kind: 'retention';
      ids: readonly string[];
      olderThan: number;
      /**
       * A month of interactions (PostgreSQL) that goes whole: its rows are this project's, all
       * past the policy's age, none protected (`retentionPartitions`). The partition is dropped
       * instead of its rows deleted; everything that refers to them goes as for `ids`.
       */
      partition?: MonthPartition;
      /** The policy's rule, checked again for `partition` once it is locked. */
      keepProductionTrainingData?: boolean;
    };

/** Rows removed per table, and the dataset versions and models the deletion marked. */
export interface DeletionCounts {
  interactions: number;
  interactionTags: number;
  feedback: number;
  feedbackCurrent: number;
  feedbackScores: number;
  interactionRewards: number;
  datasetMemberships: number;
  evaluationItems: number;
  deadLetters: number;
  usageRecords: number;
  raters: number;
  /** The annotation queue's locks, assignments and adjudications of the interactions. */
  annotations: number;
}

/** Every count at zero: the one list of what a deletion counts. */
export function emptyDeletionCounts(): DeletionCounts {
  return {
    interactions: 0,
    interactionTags: 0,
    feedback: 0,
    feedbackCurrent: 0,
    feedbackScores: 0,
    interactionRewards: 0,
    datasetMemberships: 0,
    evaluationItems: 0,
    deadLetters: 0,
    usageRecords: 0,
    raters: 0,
    annotations: 0,
  };
}

/** A deletion's summary (core's DeletionSummary, which the dashboard reads) with typed counts. */
export type DeletionResult = DeletionSummary<DeletionCounts>;

/** IN lists stay under both databases' parameter limits (SQLite: 32,766). */
const CHUNK = 500;

const chunks = <T>(items: readonly T[]): T[][] => chunk(items, CHUNK);

/**
 * The audit entry names the subject by a hash, never by its id: an end-user id or a client's
 * interaction id is often an e-mail address or a name, which is the data being deleted. Whoever
 * must show that a given user was deleted can hash the id the same way.
 */
export function deletionSubjectHash(projectId: string, subject: string): string {
  return `sha256:${createHash('sha256').update(`${projectId}\u0000${subject}`).digest('hex')}`;
}

/**
 * Deletes people's data everywhere the database holds it, in one transaction: interactions with
 * their tags, rewards, dataset memberships, held-out evaluation items and dead letters; feedback
 * about them or by the end user (with its current-value and score rows, and preferences that
 * compare against a deleted answer); the end user's rater row and usage records. Dataset versions
 * that contained a deleted interaction and the models trained on them are marked in the same
 * transaction (`data_deleted_at`); the files are the loop's (`scrubDeletedData`). The audit entry
 * holds counts only.
 */
export class DeletionRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly audit: AuditLog,
    private readonly rollups: RollupRepository,
  ) {}

  async delete(projectId: string, subject: DeletionSubject, actor: string): Promise<DeletionResult> {
    return this.db.transaction().execute((trx) => this.deleteIn(trx, projectId, subject, actor));
  }

  private async deleteIn(
    trx: Transaction<Database>,
    projectId: string,
    subject: DeletionSubject,
    actor: string,
  ): Promise<DeletionResult> {
    const now = Date.now();
    if (subject.kind === 'retention' && subject.partition) {
      // No write reaches the month while it is checked and dropped; a row of another project or
      // a newly protected one that arrived since it was chosen leaves it to the row-by-row path.
      await sql`lock table ${sql.table(subject.partition.name)} in exclusive mode`.execute(trx);
      const state = await this.partitionState(
        trx,
        projectId,
        subject.partition,
        !!subject.keepProductionTrainingData,
      );
      if (!state.mine || state.others || state.kept)
        return { auditId: null, counts: emptyDeletionCounts(), datasets: [], models: [] };
    }
    const ids = await this.interactionIds(trx, projectId, subject);
    const userId = subject.kind === 'end_user' ? subject.userId : undefined;
    const feedback = await this.feedbackToDelete(trx, projectId, ids, userId);
    const counts = emptyDeletionCounts();
    const n = (r: { numDeletedRows: bigint }) => Number(r.numDeletedRows);

    // Memberships first: which versions held the interactions, before the links go.
    const perDataset = new Map<string, number>();
    for (const part of chunks(ids)) {
      const rows = await trx
        .selectFrom('dataset_interactions')
        .select(['dataset_id', (eb) => eb.fn.countAll<number>().as('n')])
        .where('project_id', '=', projectId)
        .where('interaction_id', 'in', part)
        .groupBy('dataset_id')
        .execute();
      for (const r of rows) perDataset.set(r.dataset_id, (perDataset.get(r.dataset_id) ?? 0) + Number(r.n));
    }

    // The dashboard's rollups of the hours these rows fall in, while the rows are still there.
    await this.rollups.markFeedbackStale(trx, projectId, feedback.ids);
    await this.rollups.markInteractionsStale(trx, projectId, ids);
    for (const part of chunks(feedback.ids)) {
      counts.feedbackScores += n(
        await trx.deleteFrom('feedback_scores').where('feedback_id', 'in', part).executeTakeFirst(),
      );
      counts.feedbackCurrent += n(
        await trx.deleteFrom('feedback_current').where('feedback_id', 'in', part).executeTakeFirst(),
      );
      counts.feedback += n(await trx.deleteFrom('feedback').where('id', 'in', part).executeTakeFirst());
    }
    const evaluations = trx.selectFrom('evaluations').select('id').where('project_id', '=', projectId);
    for (const part of chunks(ids)) {
      const inProject = <
        T extends
          | 'interaction_tags'
          | 'interaction_rewards'
          | 'dataset_interactions'
          | 'dead_letters'
          | 'gateway_responses',
      >(
        table: T,
      ) =>
        trx
          .deleteFrom(table as 'interaction_tags')
          .where('project_id', '=', projectId)
          .where('interaction_id', 'in', part)
          .executeTakeFirst();
      counts.interactionTags += n(await inProject('interaction_tags'));
      counts.interactionRewards += n(await inProject('interaction_rewards'));
      counts.datasetMemberships += n(await inProject('dataset_interactions'));
      for (const table of ['annotation_locks', 'annotation_assignments', 'annotation_adjudications'] as const)
        counts.annotations += n(
          await trx
            .deleteFrom(table as 'annotation_locks')
            .where('project_id', '=', projectId)
            .where('interaction_id', 'in', part)
            .executeTakeFirst(),
        );
      // A held-out item's result holds the prompt and both models' answers to it.
      counts.evaluationItems += n(
        await trx
          .deleteFrom('evaluation_items')
          .where('evaluation_id', 'in', evaluations)
          .where('item_id', 'in', part)
          .executeTakeFirst(),
      );
      counts.deadLetters += n(await inProject('dead_letters'));
      // Ids only, but a later turn must not link to an interaction that is gone.
      await inProject('gateway_responses');
      if (subject.kind === 'retention' && subject.partition) continue;
      counts.interactions += n(
        await trx
          .deleteFrom('interactions')
          .where('project_id', '=', projectId)
          .where('id', 'in', part)
          .executeTakeFirst(),
      );
    }
    if (subject.kind === 'retention' && subject.partition) counts.interactions = ids.length;
    if (userId !== undefined) {
      counts.deadLetters += await this.deleteUsersDeadLetters(trx, projectId, userId);
      counts.usageRecords += n(
        await trx
          .deleteFrom('usage_records')
          .where('project_id', '=', projectId)
          .where('user_id', '=', userId)
          .executeTakeFirst(),
      );
    }
    if (subject.kind === 'retention') {
      // Past the policy's age, what could not be stored and usage lines go too.
      counts.deadLetters += n(
        await trx
          .deleteFrom('dead_letters')
          .where('project_id', '=', projectId)
          .where('created_at', '<', subject.olderThan)
          .executeTakeFirst(),
      );
      counts.usageRecords += n(
        await trx
          .deleteFrom('usage_records')
          .where('project_id', '=', projectId)
          .where('created_at', '<', subject.olderThan)
          .executeTakeFirst(),
      );
    }
    counts.raters += await this.settleRaters(trx, projectId, feedback.raters);

    const marked = await this.markDatasets(trx, projectId, perDataset, now);
    if (subject.kind === 'retention' && Object.values(counts).every((c) => c === 0))
      return { auditId: null, counts, ...marked };
    const what =
      subject.kind === 'end_user'
        ? subject.userId
        : subject.kind === 'interactions'
          ? ids.join('\n')
          : `older than ${subject.olderThan}`;
    const entry = await this.audit.record(
      {
        projectId,
        actor,
        action: 'data.deleted',
        subjectType: subject.kind,
        subjectId: deletionSubjectHash(projectId, what),
        details: {
          counts,
          ...(subject.kind === 'retention' ? { olderThan: subject.olderThan } : {}),
          ...(subject.kind === 'retention' && subject.partition ? { partition: subject.partition.name } : {}),
          datasets: marked.datasets.map((d) => ({
            id: d.id,
            name: d.name,
            version: d.version,
            interactions: d.interactions,
          })),
          models: marked.models.map((m) => m.id),
        },
      },
      trx,
    );
    if (subject.kind === 'retention' && subject.partition)
      await this.dropPartition(trx, projectId, subject.partition, ids);
    return { auditId: entry.id, counts, ...marked };
  }

  /**
   * Last in the deletion's transaction, so the lock the drop takes on the parent table is held
   * for a moment only: the month goes, and with it the ids' rows (a dropped table's rows fire no
   * delete trigger, so migration 0037's `interaction_ids` rows are deleted here).
   */
  private async dropPartition(
    trx: Transaction<Database>,
    projectId: string,
    partition: MonthPartition,
    ids: readonly string[],
  ): Promise<void> {
    await sql`drop table ${sql.table(partition.name)}`.execute(trx);
    for (const part of chunks(ids))
      await sql`delete from interaction_ids where project_id = ${projectId} and id in (${sql.join(part)})`.execute(
        trx,
      );
  }

  /**
   * The months of interactions retention can drop whole for a project (PostgreSQL; none on
   * SQLite): entirely older than `olderThan`, holding rows of this project and of no other
   * (a month is shared by every project; another project's rows leave by its own policy first),
   * and with `keepProductionTrainingData` none in a dataset version a production model was
   * trained on (the rule `retentionCandidates` keeps row by row). Oldest first.
   */
  async retentionPartitions(
    projectId: string,
    olderThan: number,
    keepProductionTrainingData: boolean,
  ): Promise<MonthPartition[]> {
    if (this.dialect !== 'postgres') return [];
    const out: MonthPartition[] = [];
    for (const p of await listMonthPartitions(this.db, 'interactions')) {
      if (p.to > olderThan) continue;
      const r = await this.partitionState(this.db, projectId, p, keepProductionTrainingData);
      if (r.mine && !r.others && !r.kept) out.push(p);
    }
    return out;
  }

  /** Whether a month holds this project's rows, another project's, and rows the policy keeps. */
  private async partitionState(
    db: Kysely<Database>,
    projectId: string,
    p: MonthPartition,
    keepProductionTrainingData: boolean,
  ): Promise<{ mine: boolean; others: boolean; kept: boolean }> {
    const t = sql.table(p.name);
    // Two index probes instead of "<>", which would scan the month.
    const { rows } = await sql<{ mine: boolean; others: boolean; kept: boolean }>`select
        exists (select 1 from ${t} where project_id = ${projectId}) as mine,
        exists (select 1 from ${t} where project_id < ${projectId})
          or exists (select 1 from ${t} where project_id > ${projectId}) as others,
        ${keepProductionTrainingData} and exists (
          select 1 from dataset_interactions m
          join models pm on pm.dataset_id = m.dataset_id and pm.stage = 'production'
          join ${t} i on i.project_id = m.project_id and i.id = m.interaction_id
          where m.project_id = ${projectId}) as kept`.execute(db);
    return rows[0]!;
  }

  private async interactionIds(
    trx: Transaction<Database>,
    projectId: string,
    subject: DeletionSubject,
  ): Promise<string[]> {
    if (subject.kind === 'end_user') {
      const rows = await trx
        .selectFrom('interactions')
        .select('id')
        .where('project_id', '=', projectId)
        .where('user_id', '=', subject.userId)
        .execute();
      return rows.map((r) => r.id);
    }
    if (subject.kind === 'retention' && subject.partition) {
      const { rows } = await sql<{ id: string }>`select id from ${sql.table(subject.partition.name)}
        where project_id = ${projectId}`.execute(trx);
      return rows.map((r) => r.id);
    }
    const found: string[] = [];
    for (const part of chunks([...new Set(subject.ids)])) {
      const rows = await trx
        .selectFrom('interactions')
        .select('id')
        .where('project_id', '=', projectId)
        .where('id', 'in', part)
        .execute();
      found.push(...rows.map((r) => r.id));
    }
    if (subject.kind === 'interactions' && found.length < new Set(subject.ids).size) {
      const known = new Set(found);
      const index = subject.ids.findIndex((id) => !known.has(id));
      throw new RatchetError(
        'not_found',
        `ids.${index}: interaction "${subject.ids[index]}" not found`,
        `ids.${index}`,
      );
    }
    return found;
  }

  /**
   * Feedback about the interactions, by the end user anywhere, and preferences that name a
   * deleted interaction as the other answer or in a ranking (evidence made of the deleted answer).
   */
  private async feedbackToDelete(
    trx: Transaction<Database>,
    projectId: string,
    interactionIds: readonly string[],
    userId: string | undefined,
  ): Promise<{ ids: string[]; raters: Set<string> }> {
    const ids = new Set<string>();
    const raters = new Set<string>();
    const add = (rows: { id: string; rater_id: string }[]) => {
      for (const r of rows) {
        ids.add(r.id);
        raters.add(r.rater_id);
      }
    };
    for (const part of chunks(interactionIds))
      add(
        await trx
          .selectFrom('feedback')
          .select(['id', 'rater_id'])
          .where('project_id', '=', projectId)
          .where('interaction_id', 'in', part)
          .execute(),
      );
    if (userId !== undefined) {
      add(
        await trx
          .selectFrom('feedback')
          .select(['id', 'rater_id'])
          .where('project_id', '=', projectId)
          .where('rater_id', '=', userId)
          .execute(),
      );
      raters.add(userId);
    }
    if (interactionIds.length > 0) {
      const deleted = new Set(interactionIds);
      const preferences = await trx
        .selectFrom('feedback')
        .select(['id', 'rater_id', 'data'])
        .where('project_id', '=', projectId)
        .where('kind', '=', 'preference')
        .execute();
      add(
        preferences.filter((p) => {
          const data = (decodeJson(this.dialect, p.data) ?? {}) as { other?: string; ranking?: string[] };
          return (
            (data.other !== undefined && deleted.has(data.other)) ||
            (data.ranking ?? []).some((id) => deleted.has(id))
          );
        }),
      );
    }
    return { ids: [...ids], raters };
  }

  /**
   * Gateway calls that could not be stored at all (`write_failed`) have no interaction row to
   * find them by; their payload is the call as it arrived, with the end user's id in it.
   */
  private async deleteUsersDeadLetters(
    trx: Transaction<Database>,
    projectId: string,
    userId: string,
  ): Promise<number> {
    const needle = `"userId":${JSON.stringify(userId)}`.replace(/[\\%_]/g, (c) => `\\${c}`);
    const r = await trx
      .deleteFrom('dead_letters')
      .where('project_id', '=', projectId)
      .where(sql<boolean>`payload like ${`%${needle}%`} escape '\\'`)
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /**
   * The raters whose events went: counts recomputed from what is left, and a rater with nothing
   * left removed (the end user's own rater row, an `anonymous:<interaction>` rater).
   */
  private async settleRaters(
    trx: Transaction<Database>,
    projectId: string,
    raters: Set<string>,
  ): Promise<number> {
    let removed = 0;
    for (const part of chunks([...raters])) {
      const left = await trx
        .selectFrom('feedback')
        .select(['rater_id', (eb) => eb.fn.countAll<number>().as('n')])
        .where('project_id', '=', projectId)
        .where('rater_id', 'in', part)
        .groupBy('rater_id')
        .execute();
      const count = new Map(left.map((r) => [r.rater_id, Number(r.n)]));
      const gone = part.filter((id) => !count.has(id));
      if (gone.length)
        removed += Number(
          (
            await trx
              .deleteFrom('raters')
              .where('project_id', '=', projectId)
              .where('id', 'in', gone)
              .executeTakeFirst()
          ).numDeletedRows,
        );
      for (const [id, n] of count)
        await trx
          .updateTable('raters')
          .set({ feedback_count: n })
          .where('project_id', '=', projectId)
          .where('id', '=', id)
          .execute();
    }
    return removed;
  }

  private async markDatasets(
    trx: Transaction<Database>,
    projectId: string,
    perDataset: Map<string, number>,
    now: number,
  ): Promise<Pick<DeletionResult, 'datasets' | 'models'>> {
    const datasets: DeletionResult['datasets'] = [];
    const models: DeletionResult['models'] = [];
    for (const [id, interactions] of perDataset) {
      const row = await trx
        .updateTable('datasets')
        .set((eb) => ({
          deleted_interactions: eb('deleted_interactions', '+', interactions),
          data_deleted_at: now,
        }))
        .where('project_id', '=', projectId)
        .where('id', '=', id)
        .returning(['id', 'name', 'version'])
        .executeTakeFirst();
      if (row) datasets.push({ ...row, interactions });
    }
    for (const part of chunks(datasets.map((d) => d.id))) {
      models.push(
        ...(await trx
          .updateTable('models')
          .set({ data_deleted_at: now })
          .where('project_id', '=', projectId)
          .where('dataset_id', 'in', part)
          .returning(['id', 'name'])
          .execute()),
      );
    }
    models.push(
      ...(await this.markStackedOn(
        trx,
        projectId,
        models.map((m) => m.id),
        now,
      )),
    );
    return { datasets, models };
  }

  /**
   * Models trained on top of marked ones (a stacked round's base is the previous model's merged
   * folder, `base_model` = its `adapter_path`) carry the deleted data in their weights too: marked,
   * generation by generation, each once.
   */
  private async markStackedOn(
    trx: Transaction<Database>,
    projectId: string,
    modelIds: readonly string[],
    now: number,
  ): Promise<{ id: string; name: string }[]> {
    const marked: { id: string; name: string }[] = [];
    let generation = [...modelIds];
    while (generation.length > 0) {
      const next: { id: string; name: string }[] = [];
      for (const part of chunks(generation)) {
        const folders = (
          await trx
            .selectFrom('models')
            .select('adapter_path')
            .where('project_id', '=', projectId)
            .where('id', 'in', part)
            .where('adapter_path', 'is not', null)
            .execute()
        ).map((r) => r.adapter_path!);
        if (folders.length === 0) continue;
        next.push(
          ...(await trx
            .updateTable('models')
            .set({ data_deleted_at: now })
            .where('project_id', '=', projectId)
            .where('base_model', 'in', folders)
            .where('data_deleted_at', 'is', null)
            .returning(['id', 'name'])
            .execute()),
        );
      }
      marked.push(...next);
      generation = next.map((m) => m.id);
    }
    return marked;
  }

  /** Marks a version whose files lost rows to a deletion (and its models), when the scrub finds more. */
  async markScrubbed(
    projectId: string,
    datasetId: string,
    rowsRemoved: number,
    actor: string,
  ): Promise<void> {
    const now = Date.now();
    await this.db.transaction().execute(async (trx) => {
      await trx
        .updateTable('datasets')
        .set((eb) => ({
          deleted_rows: eb('deleted_rows', '+', rowsRemoved),
          data_deleted_at: eb.fn.coalesce('data_deleted_at', eb.val(now)),
        }))
        .where('project_id', '=', projectId)
        .where('id', '=', datasetId)
        .execute();
      const trained = await trx
        .updateTable('models')
        .set((eb) => ({ data_deleted_at: eb.fn.coalesce('data_deleted_at', eb.val(now)) }))
        .where('project_id', '=', projectId)
        .where('dataset_id', '=', datasetId)
        .returning('id')
        .execute();
      await this.markStackedOn(
        trx,
        projectId,
        trained.map((m) => m.id),
        now,
      );
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'dataset.rows_deleted',
          subjectType: 'dataset',
          subjectId: datasetId,
          details: { rows: rowsRemoved },
        },
        trx,
      );
    });
  }

  /**
   * Up to `limit` interactions created before `olderThan`; with `keepProductionTrainingData`, not
   * one in a dataset version that a model now in production was trained on.
   */
  async retentionCandidates(
    projectId: string,
    olderThan: number,
    keepProductionTrainingData: boolean,
    limit: number,
  ): Promise<string[]> {
    let q = this.db
      .selectFrom('interactions as i')
      .select('i.id')
      .where('i.project_id', '=', projectId)
      .where('i.created_at', '<', olderThan);
    if (keepProductionTrainingData)
      q = q.where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('dataset_interactions as m')
              .innerJoin('models as p', (j) =>
                j.onRef('p.dataset_id', '=', 'm.dataset_id').on('p.stage', '=', 'production'),
              )
              .select('m.dataset_id')
              .where('m.project_id', '=', projectId)
              .whereRef('m.interaction_id', '=', 'i.id'),
          ),
        ),
      );
    const rows = await q.orderBy('i.created_at').limit(limit).execute();
    return rows.map((r) => r.id);
  }

  /** Whether anything past a retention age is left that has no interaction to go with (dead letters, usage). */
  async hasOldUnlinked(projectId: string, olderThan: number): Promise<boolean> {
    const [dead, usage] = await Promise.all([
      this.db
        .selectFrom('dead_letters')
        .select('id')
        .where('project_id', '=', projectId)
        .where('created_at', '<', olderThan)
        .limit(1)
        .executeTakeFirst(),
      this.db
        .selectFrom('usage_records')
        .select('id')
        .where('project_id', '=', projectId)
        .where('created_at', '<', olderThan)
        .limit(1)
        .executeTakeFirst(),
    ]);
    return dead !== undefined || usage !== undefined;
  }

  /** Which of these interaction and feedback ids still exist (the scrub keeps rows made only of those). */
  async existing(
    projectId: string,
    interactionIds: readonly string[],
    feedbackIds: readonly string[],
  ): Promise<Set<string>> {
    const found = new Set<string>();
    for (const part of chunks(interactionIds))
      for (const r of await this.db
        .selectFrom('interactions')
        .select('id')
        .where('project_id', '=', projectId)
        .where('id', 'in', part)
        .execute())
        found.add(`i:${r.id}`);
    for (const part of chunks(feedbackIds))
      for (const r of await this.db
        .selectFrom('feedback')
        .select('id')
        .where('project_id', '=', projectId)
        .where('id', 'in', part)
        .execute())
        found.add(`f:${r.id}`);
    return found;
  }
}
