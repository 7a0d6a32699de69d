import {
  checkAgainstScales,
  criterionReward,
  type Feedback,
  type FeedbackKind,
  type FeedbackSource,
  feedbackFields,
  newId,
  type ParsedFeedback,
  RatchetError,
  referencedInteractionIds,
  type ScoreConfig,
} from '@ratchet/core';
import type SqliteDatabase from 'better-sqlite3';
import { type Insertable, type Kysely, type Selectable, sql } from 'kysely';
import type { DialectName } from './connection.js';
import type { TransactionRunner } from './group-commit.js';
import type { ExistingCall, InteractionRepository, WriteResult } from './interactions.js';
import { chunk, decodeJson, encodeJson, rowsPerStatement } from './json.js';
import type { RollupRepository } from './rollups.js';
import type { Database, FeedbackTable, ScoreConfigsTable } from './schema.js';
import type { ScoreConfigRepository } from './score-configs.js';

const FEEDBACK_COLUMNS = 14;

/**
 * Checks (and may rewrite) each event once the end users of the interactions it refers to are
 * known (`endUsers` maps each existing interaction to its end user, null for none); throws to
 * refuse the whole batch. The feedback API uses it for public-key writes.
 */
export type FeedbackGate = (
  f: ParsedFeedback,
  index: number,
  endUsers: ReadonlyMap<string, string | null>,
) => ParsedFeedback;

export class FeedbackRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly interactions: InteractionRepository,
    private readonly scoreConfigs: ScoreConfigRepository,
    /** Write transactions: grouped commits on SQLite, one transaction each on PostgreSQL. */
    private readonly writes: TransactionRunner,
    private readonly rollups: RollupRepository,
    private readonly sqlite?: SqliteDatabase.Database,
  ) {}

  /**
   * SQLite's write path with prepared single-row statements, run inside the transaction Kysely
   * opened on this same connection: building multi-row insert queries cost ten times the
   * database work at ingest rates.
   */
  private sqliteStatements?: ReturnType<typeof prepareSqliteWrites>;

  /** Prepared on first use: the tables exist only once migrations have run. */
  private sqliteWrites(sqlite: SqliteDatabase.Database): ReturnType<typeof prepareSqliteWrites> {
    if (!this.sqliteStatements) this.sqliteStatements = prepareSqliteWrites(sqlite);
    return this.sqliteStatements;
  }

  /**
   * Writes a batch of feedback events all or nothing: every event must refer to interactions of
   * this project and fit the project's scales, or nothing is written and the error names the item
   * (`itemPath(N).field`, by default `items.N.field`). A repeated idempotency key returns the
   * event first written with it. `alsoInTransaction` runs last in the same transaction (the
   * annotation queue's lock and assignment): when it throws, none of the events is written.
   */
  async insert(
    projectId: string,
    given: readonly ParsedFeedback[],
    itemPath: (index: number) => string = (i) => `items.${i}`,
    gate?: FeedbackGate,
    alsoInTransaction?: (trx: Kysely<Database>) => Promise<void>,
  ): Promise<WriteResult[]> {
    const at = (i: number, field: string) => [itemPath(i), field].filter(Boolean).join('.');
    return this.writes.run(async (trx) => {
      const referenced = given.flatMap(referencedInteractionIds);
      const calls = this.sqlite
        ? this.sqliteExisting(this.sqlite, projectId, referenced)
        : await this.interactions.existingCalls(projectId, referenced, trx);
      const users = new Map([...calls].map(([id, call]) => [id, call.userId]));
      // The gate runs before anything else answers, so a caller it refuses learns nothing more
      // (not even whether an interaction exists).
      const items = gate ? given.map((f, i) => gate(f, i, users)) : given;
      const configs = await this.scalesFor(projectId, items, trx);
      items.forEach((f, i) => {
        checkAgainstScales(f, configs, itemPath(i));
      });
      items.forEach((f, i) => {
        for (const id of referencedInteractionIds(f)) {
          if (!users.has(id)) {
            const field =
              id === f.interactionId
                ? 'interactionId'
                : f.kind === 'preference' && f.ranking
                  ? 'ranking'
                  : 'other';
            throw new RatchetError(
              'not_found',
              `${at(i, field)}: interaction "${id}" not found`,
              at(i, field),
            );
          }
        }
      });

      const now = Date.now();
      const rows = items.map((f) => this.toRow(projectId, f, users.get(f.interactionId) ?? null, now));
      const created = new Set<string>();
      if (this.sqlite) {
        const w = this.sqliteWrites(this.sqlite);
        for (const r of rows) if (w.insertFeedback.run(...feedbackParams(r)).changes) created.add(r.id);
      }
      for (const part of this.sqlite ? [] : chunk(rows, rowsPerStatement(FEEDBACK_COLUMNS))) {
        const inserted = await trx
          .insertInto('feedback')
          .values(part)
          // A repeated idempotency key: on PostgreSQL the partitioned table's trigger skips the
          // row (feedback_keys, migration 0037); elsewhere the unique index does.
          .onConflict((oc) => oc.doNothing())
          .returning('id')
          .execute();
        for (const r of inserted) created.add(r.id);
      }
      const fresh = rows.filter((r) => created.has(r.id));
      await this.insertCriterionScores(trx, fresh, items, rows, configs);
      await this.updateCurrent(trx, fresh);
      await this.updateRaters(trx, fresh);
      // The dashboard's rollups: events by their hour, current thumbs and stars by their call's
      // (its time read above with the existence check, not by a second query).
      await this.rollups.markStale(
        trx,
        projectId,
        [
          ...fresh.map((r) => r.created_at),
          ...fresh
            .filter((r) => r.kind === 'thumbs' || r.kind === 'stars')
            .map((r) => calls.get(r.interaction_id)!.createdAt),
        ],
        this.sqlite,
      );
      const results = await this.resolveRepeats(trx, projectId, rows, created);
      await alsoInTransaction?.(trx);
      return results;
    });
  }

  /**
   * The project's score configs, read only when an event is checked against a scale (stars,
   * criteria): for thumbs, comments and the like the query was a fifth of a single event's cost.
   */
  private async scalesFor(
    projectId: string,
    items: readonly ParsedFeedback[],
    trx: Kysely<Database>,
  ): Promise<Map<string, ScoreConfig>> {
    if (!items.some((f) => f.kind === 'stars' || f.kind === 'criteria')) return new Map();
    if (!this.sqlite) return this.scoreConfigs.byName(projectId, trx);
    const rows = this.sqliteWrites(this.sqlite).scoreConfigs.all(
      projectId,
    ) as Selectable<ScoreConfigsTable>[];
    return new Map(rows.map((r) => [r.name, this.scoreConfigs.fromRow(r)]));
  }

  /**
   * `interactions.existing` as one prepared statement: the ids go in as one JSON array, so the
   * statement is compiled once however many ids a batch refers to.
   */
  private sqliteExisting(
    sqlite: SqliteDatabase.Database,
    projectId: string,
    ids: readonly string[],
  ): Map<string, ExistingCall> {
    const rows = this.sqliteWrites(sqlite).existingInteractions.all(
      projectId,
      JSON.stringify([...new Set(ids)]),
    ) as { id: string; user_id: string | null; created_at: number }[];
    return new Map(rows.map((r) => [r.id, { userId: r.user_id, createdAt: Number(r.created_at) }]));
  }

  /** History of an interaction's feedback, oldest first, each marked whether it is current. */
  async listForInteraction(projectId: string, interactionId: string): Promise<Feedback[]> {
    return (await this.listForInteractions(projectId, [interactionId])).get(interactionId) ?? [];
  }

  async listForInteractions(
    projectId: string,
    interactionIds: readonly string[],
  ): Promise<Map<string, Feedback[]>> {
    const out = new Map<string, Feedback[]>();
    for (const part of chunk([...new Set(interactionIds)], 1000)) {
      const rows = await this.db
        .selectFrom('feedback as f')
        .leftJoin('feedback_current as c', 'c.feedback_id', 'f.id')
        .selectAll('f')
        .select('c.feedback_id as current_id')
        .where('f.project_id', '=', projectId)
        .where('f.interaction_id', 'in', part)
        .orderBy('f.created_at')
        .orderBy('f.id')
        .execute();
      for (const r of rows) {
        const list = out.get(r.interaction_id) ?? [];
        list.push(this.toFeedback(r, r.current_id !== null));
        out.set(r.interaction_id, list);
      }
    }
    return out;
  }

  /** Current events of the given kinds (e.g. preferences and corrections for pairwise evidence). */
  async currentOfKinds(projectId: string, kinds: readonly string[]): Promise<Feedback[]> {
    const rows = await this.db
      .selectFrom('feedback_current as c')
      .innerJoin('feedback as f', 'f.id', 'c.feedback_id')
      .selectAll('f')
      .where('c.project_id', '=', projectId)
      .where('c.kind', 'in', [...kinds])
      .orderBy('f.created_at')
      .orderBy('f.id')
      .execute();
    return rows.map((r) => this.toFeedback(r, true));
  }

  /** Feedback events of the project, or those received since a time (epoch ms). */
  async count(projectId: string, receivedSince?: number): Promise<number> {
    let q = this.db
      .selectFrom('feedback')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('project_id', '=', projectId);
    if (receivedSince !== undefined) q = q.where('received_at', '>=', receivedSince);
    const row = await q.executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** Feedback events one rater gave in the project (an AI labeller's labels, however many runs wrote them). */
  async countByRater(projectId: string, raterId: string): Promise<number> {
    const row = await this.db
      .selectFrom('feedback')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('project_id', '=', projectId)
      .where('rater_id', '=', raterId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** Explodes criteria events into one row per criterion (see migration 0003). */
  private async insertCriterionScores(
    trx: Kysely<Database>,
    fresh: Insertable<FeedbackTable>[],
    items: readonly ParsedFeedback[],
    rows: Insertable<FeedbackTable>[],
    configs: ReadonlyMap<string, ScoreConfig>,
  ): Promise<void> {
    const freshIds = new Set(fresh.map((r) => r.id));
    const scores = items.flatMap((f, i) => {
      const row = rows[i]!;
      if (f.kind !== 'criteria' || !freshIds.has(row.id)) return [];
      return Object.entries(f.scores).map(([name, score]) => {
        const config = configs.get(name)!;
        const index = typeof score === 'string' ? config.categories!.indexOf(score) : -1;
        return {
          feedback_id: row.id,
          project_id: row.project_id,
          interaction_id: row.interaction_id,
          name,
          value: typeof score === 'number' ? score : index,
          reward: criterionReward(score, config) ?? 0,
          label: typeof score === 'string' ? score : null,
        };
      });
    });
    for (const part of chunk(scores, rowsPerStatement(7)))
      await trx.insertInto('feedback_scores').values(part).execute();
  }

  /** Moves the "current" pointer of each (interaction, rater, kind) to the newest event. */
  private async updateCurrent(trx: Kysely<Database>, rows: Insertable<FeedbackTable>[]): Promise<void> {
    const latest = new Map<string, Insertable<FeedbackTable>>();
    for (const r of rows) {
      const key = `${r.interaction_id}\u0000${r.rater_id}\u0000${r.kind}`;
      const prev = latest.get(key);
      if (!prev || r.created_at > prev.created_at || (r.created_at === prev.created_at && r.id > prev.id))
        latest.set(key, r);
    }
    // Sorted so that concurrent PostgreSQL transactions lock rows in one order and cannot deadlock.
    const values = [...latest.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([, r]) => ({
        project_id: r.project_id,
        interaction_id: r.interaction_id,
        rater_id: r.rater_id,
        kind: r.kind,
        feedback_id: r.id,
        created_at: r.created_at,
        value: r.value ?? null,
        label: r.label ?? null,
      }));
    if (this.sqlite) {
      const upsert = this.sqliteWrites(this.sqlite).upsertCurrent;
      for (const v of values)
        upsert.run(
          v.project_id,
          v.interaction_id,
          v.rater_id,
          v.kind,
          v.feedback_id,
          v.created_at,
          v.value,
          v.label,
        );
      return;
    }
    for (const part of chunk(values, rowsPerStatement(8))) {
      await trx
        .insertInto('feedback_current')
        .values(part)
        .onConflict((oc) =>
          oc
            .columns(['project_id', 'interaction_id', 'rater_id', 'kind'])
            .doUpdateSet({
              feedback_id: (eb) => eb.ref('excluded.feedback_id'),
              created_at: (eb) => eb.ref('excluded.created_at'),
              value: (eb) => eb.ref('excluded.value'),
              label: (eb) => eb.ref('excluded.label'),
            })
            // An event that arrives late but happened earlier (client timestamps) joins the
            // history without displacing a newer one.
            .where(
              sql<boolean>`excluded.created_at > feedback_current.created_at or (excluded.created_at = feedback_current.created_at and excluded.feedback_id > feedback_current.feedback_id)`,
            ),
        )
        .execute();
    }
  }

  private async updateRaters(trx: Kysely<Database>, rows: Insertable<FeedbackTable>[]): Promise<void> {
    const raters = new Map<
      string,
      { source: string; count: number; first: number; last: number; project: string }
    >();
    for (const r of rows) {
      const s = raters.get(r.rater_id);
      if (s) {
        s.count++;
        s.first = Math.min(s.first, r.created_at);
        s.last = Math.max(s.last, r.created_at);
      } else {
        raters.set(r.rater_id, {
          source: r.source,
          count: 1,
          first: r.created_at,
          last: r.created_at,
          project: r.project_id,
        });
      }
    }
    const values = [...raters.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([id, s]) => ({
        project_id: s.project,
        id,
        source: s.source,
        feedback_count: s.count,
        first_seen_at: s.first,
        last_seen_at: s.last,
      }));
    if (this.sqlite) {
      const upsert = this.sqliteWrites(this.sqlite).upsertRater;
      for (const v of values)
        upsert.run(v.project_id, v.id, v.source, v.feedback_count, v.first_seen_at, v.last_seen_at);
      return;
    }
    for (const part of chunk(values, rowsPerStatement(6))) {
      await trx
        .insertInto('raters')
        .values(part)
        .onConflict((oc) =>
          oc.columns(['project_id', 'id']).doUpdateSet({
            feedback_count: sql`raters.feedback_count + excluded.feedback_count`,
            first_seen_at: sql`case when excluded.first_seen_at < raters.first_seen_at then excluded.first_seen_at else raters.first_seen_at end`,
            last_seen_at: sql`case when excluded.last_seen_at > raters.last_seen_at then excluded.last_seen_at else raters.last_seen_at end`,
          }),
        )
        .execute();
    }
  }

  /** Maps rows that were not written (repeated idempotency keys) to the event that was. */
  private async resolveRepeats(
    trx: Kysely<Database>,
    projectId: string,
    rows: Insertable<FeedbackTable>[],
    created: Set<string>,
  ): Promise<WriteResult[]> {
    const repeatedKeys = rows.filter((r) => !created.has(r.id)).map((r) => r.idempotency_key!);
    const byKey = new Map<string, string>();
    for (const part of chunk(repeatedKeys, 1000)) {
      const found = await trx
        .selectFrom('feedback')
        .select(['id', 'idempotency_key'])
        .where('project_id', '=', projectId)
        .where('idempotency_key', 'in', part)
        .execute();
      for (const f of found) byKey.set(f.idempotency_key!, f.id);
    }
    return rows.map((r) =>
      created.has(r.id)
        ? { id: r.id, created: true }
        : { id: byKey.get(r.idempotency_key!)!, created: false },
    );
  }

  private toRow(
    projectId: string,
    f: ParsedFeedback,
    endUser: string | null,
    now: number,
  ): Insertable<FeedbackTable> {
    const fields = feedbackFields(f);
    return {
      id: newId(now),
      project_id: projectId,
      interaction_id: f.interactionId,
      rater_id: f.raterId ?? (f.source === 'user' && endUser ? endUser : `anonymous:${f.source}`),
      source: f.source,
      kind: f.kind,
      value: fields.value,
      label: fields.label,
      text: fields.text,
      data: fields.data === null ? null : encodeJson(fields.data),
      idempotency_key: f.idempotencyKey ?? null,
      metadata: encodeJson(f.metadata ?? {}),
      created_at: f.createdAt ?? now,
      received_at: now,
    };
  }

  private toFeedback(r: Selectable<FeedbackTable>, current: boolean): Feedback {
    return {
      id: r.id,
      projectId: r.project_id,
      interactionId: r.interaction_id,
      raterId: r.rater_id,
      source: r.source as FeedbackSource,
      kind: r.kind as FeedbackKind,
      value: r.value,
      label: r.label,
      text: r.text,
      data: r.data === null ? null : decodeJson(this.dialect, r.data),
      idempotencyKey: r.idempotency_key,
      metadata: decodeJson(this.dialect, r.metadata),
      createdAt: r.created_at,
      receivedAt: r.received_at,
      current,
    };
  }
}

function feedbackParams(r: Insertable<FeedbackTable>): unknown[] {
  return [
    r.id,
    r.project_id,
    r.interaction_id,
    r.rater_id,
    r.source,
    r.kind,
    r.value ?? null,
    r.label ?? null,
    r.text ?? null,
    r.data ?? null,
    r.idempotency_key ?? null,
    r.metadata,
    r.created_at,
    r.received_at,
  ];
}

/**
 * The same statements as the Kysely path below them, as prepared SQLite statements. The insert
 * reports whether it wrote through its change count, not RETURNING: SQLite collects returned
 * rows in a temporary table, which cost a quarter of the insert.
 */
function prepareSqliteWrites(sqlite: SqliteDatabase.Database) {
  return {
    scoreConfigs: sqlite.prepare('select * from score_configs where project_id = ?'),
    existingInteractions: sqlite.prepare(
      `select id, user_id, created_at from interactions where project_id = ? and id in (select value from json_each(?))`,
    ),
    insertFeedback: sqlite.prepare(
      `insert into feedback (id, project_id, interaction_id, rater_id, source, kind, value, label, text, data, idempotency_key, metadata, created_at, received_at)
       values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       on conflict (project_id, idempotency_key) where idempotency_key is not null do nothing`,
    ),
    upsertCurrent: sqlite.prepare(
      `insert into feedback_current (project_id, interaction_id, rater_id, kind, feedback_id, created_at, value, label) values (?, ?, ?, ?, ?, ?, ?, ?)
       on conflict (project_id, interaction_id, rater_id, kind) do update set
         feedback_id = excluded.feedback_id, created_at = excluded.created_at, value = excluded.value, label = excluded.label
       where excluded.created_at > feedback_current.created_at
          or (excluded.created_at = feedback_current.created_at and excluded.feedback_id > feedback_current.feedback_id)`,
    ),
    upsertRater: sqlite.prepare(
      `insert into raters (project_id, id, source, feedback_count, first_seen_at, last_seen_at, flagged) values (?, ?, ?, ?, ?, ?, 0)
       on conflict (project_id, id) do update set
         feedback_count = raters.feedback_count + excluded.feedback_count,
         first_seen_at = case when excluded.first_seen_at < raters.first_seen_at then excluded.first_seen_at else raters.first_seen_at end,
         last_seen_at = case when excluded.last_seen_at > raters.last_seen_at then excluded.last_seen_at else raters.last_seen_at end`,
    ),
  };
}
