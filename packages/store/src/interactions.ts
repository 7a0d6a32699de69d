import {
  type Interaction,
  type InteractionFilters,
  type InteractionSource,
  newId,
  type ParsedInteraction,
  promptHash,
  type Usage,
} from '@ratchet/core';
import type SqliteDatabase from 'better-sqlite3';
import { type Insertable, type Kysely, type Selectable, sql } from 'kysely';
import type { DialectName } from './connection.js';
import { DirectTransactions, type TransactionRunner } from './group-commit.js';
import { chunk, decodeJson, encodeJson, rowsPerStatement } from './json.js';
import { keysetPage, type Page } from './paging.js';
import { RollupRepository } from './rollups.js';
import type { Database, InteractionsTable } from './schema.js';
import { type SqliteWriteThread, type ThreadStatement, WriteThreadUnavailable } from './write-thread.js';

export interface WriteResult {
  id: string;
  /** False when the id existed already (an idempotent repeat): nothing was written. */
  created: boolean;
}

const INTERACTION_COLUMNS = 24;

/** An interaction a write refers to: whose it is and when it was made (its rollup hour). */
export interface ExistingCall {
  userId: string | null;
  createdAt: number;
}

export class InteractionRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    /** Write transactions: grouped commits on SQLite, one transaction each on PostgreSQL. */
    private readonly writes: TransactionRunner = new DirectTransactions(db),
    /** The SQLite handle under `db`: the gateway's log is written with prepared statements. */
    private readonly sqlite?: SqliteDatabase.Database,
    private readonly rollups = new RollupRepository(db, dialect),
    /** Relaxed-durability writes: the store's writer thread (SQLite files) and its fallback. */
    private readonly background: {
      thread?: SqliteWriteThread;
      relaxed: <T>(work: (trx: Kysely<Database>) => Promise<T>) => Promise<T>;
    } = { relaxed: (work) => db.transaction().execute(work) },
  ) {}

  /**
   * Prepared on first use (the tables exist once migrations ran). Building a Kysely insert of
   * 24 columns per row cost the gateway more CPU per logged call than serving the call.
   */
  private sqliteStatements?: { insert: SqliteDatabase.Statement; insertTag: SqliteDatabase.Statement };

  private sqliteWrites(sqlite: SqliteDatabase.Database) {
    this.sqliteStatements ??= {
      insert: sqlite.prepare(INSERT_SQL),
      insertTag: sqlite.prepare(INSERT_TAG_SQL),
    };
    return this.sqliteStatements;
  }

  /**
   * Writes interactions in one transaction. A client id seen before (in the store or earlier in
   * the batch) is an idempotent repeat: the first write stands and `created` is false.
   */
  async insert(
    projectId: string,
    items: readonly ParsedInteraction[],
    db: Kysely<Database> = this.db,
  ): Promise<WriteResult[]> {
    const now = Date.now();
    const rows = items.map((item) => this.toRow(projectId, item, now));
    // A repeated id inside one batch: only its first occurrence can be created, and only a
    // created row's tags and hour are written.
    const seen = new Set<string>();
    const first = rows.map((r) => {
      if (seen.has(r.id)) return false;
      seen.add(r.id);
      return true;
    });
    const created = new Set<string>();
    const wrote = (i: number) => first[i]! && created.has(rows[i]!.id);
    // Raw statements join the transaction open on the one SQLite connection (ours, or the
    // caller's on this store); another Kysely instance gets Kysely's queries.
    const sqlite = this.sqlite && (db === this.db || db.isTransaction) ? this.sqlite : undefined;
    const write = async (trx: Kysely<Database>) => {
      // A group commit may run this again after rolling back its first attempt.
      created.clear();
      if (sqlite) {
        const w = this.sqliteWrites(sqlite);
        for (const r of rows) if (w.insert.run(r).changes) created.add(r.id);
        items.forEach((item, i) => {
          if (wrote(i))
            for (const tag of new Set(item.tags ?? [])) w.insertTag.run(projectId, rows[i]!.id, tag);
        });
        await this.markStale(trx, projectId, rows, wrote, sqlite);
        return;
      }
      for (const part of chunk(rows, rowsPerStatement(INTERACTION_COLUMNS))) {
        const inserted = await trx
          .insertInto('interactions')
          .values(part)
          // No conflict target: on PostgreSQL the table is partitioned and a repeated id is
          // skipped by its trigger (migration 0037); on SQLite the primary key is the only one.
          .onConflict((oc) => oc.doNothing())
          .returning('id')
          .execute();
        for (const r of inserted) created.add(r.id);
      }
      const tagRows = items.flatMap((item, i) =>
        wrote(i)
          ? [...new Set(item.tags ?? [])].map((tag) => ({
              project_id: projectId,
              interaction_id: rows[i]!.id,
              tag,
            }))
          : [],
      );
      for (const part of chunk(tagRows, rowsPerStatement(3))) {
        await trx
          .insertInto('interaction_tags')
          .values(part)
          .onConflict((oc) => oc.doNothing())
          .execute();
      }
      await this.markStale(trx, projectId, rows, wrote);
    };
    if (db.isTransaction) await write(db);
    else if (db === this.db) await this.writes.run(write);
    else await db.transaction().execute(write);
    return rows.map((r, i) => ({ id: r.id, created: wrote(i) }));
  }

  /**
   * `insert` at relaxed durability (a commit survives a crash of the process, not a power cut),
   * for the gateway's log, which holds its calls in memory until written anyway. On a SQLite file
   * the statements run on the store's writer thread (write-thread.ts): the event loop encodes the
   * rows and waits, and no call in flight waits for the disk. Elsewhere (PostgreSQL, `:memory:`,
   * a thread that stopped) it is `insert` inside the store's relaxed transaction.
   */
  async insertInBackground(projectId: string, items: readonly ParsedInteraction[]): Promise<WriteResult[]> {
    const thread = this.background.thread;
    if (thread?.alive && this.sqlite) {
      try {
        return await this.insertOnThread(thread, projectId, items);
      } catch (err) {
        // The thread is gone and committed nothing of this batch: the main connection writes it.
        if (!(err instanceof WriteThreadUnavailable)) throw err;
      }
    }
    return this.background.relaxed((trx) => this.insert(projectId, items, trx));
  }

  /** The same rows, tags and stale hours as `insert`'s SQLite path, as one batch on the thread. */
  private async insertOnThread(
    thread: SqliteWriteThread,
    projectId: string,
    items: readonly ParsedInteraction[],
  ): Promise<WriteResult[]> {
    const now = Date.now();
    const rows = items.map((item) => this.toRow(projectId, item, now));
    const statements: ThreadStatement[] = [];
    const insertAt = rows.map((row, i) => {
      const at = statements.length;
      statements.push({ sql: INSERT_SQL, parameters: row });
      // Tags go in only with a new interaction, as in `insert` (a repeated id writes nothing).
      for (const tag of new Set(items[i]!.tags ?? []))
        statements.push({ sql: INSERT_TAG_SQL, parameters: [projectId, row.id, tag], when: [at] });
      return at;
    });
    statements.push(
      ...this.rollups.staleStatements(
        projectId,
        rows.map((r, i) => ({ time: r.created_at, when: insertAt[i]! })),
      ),
    );
    const changes = await thread.run(statements);
    return rows.map((r, i) => ({ id: r.id, created: changes[insertAt[i]!]! > 0 }));
  }

  /** The dashboard's rollups of the hours these new calls fall in are stale (rollups.ts). */
  private markStale(
    trx: Kysely<Database>,
    projectId: string,
    rows: readonly Insertable<InteractionsTable>[],
    wrote: (index: number) => boolean,
    sqlite?: SqliteDatabase.Database,
  ): Promise<void> {
    return this.rollups.markStale(
      trx,
      projectId,
      rows.filter((_, i) => wrote(i)).map((r) => r.created_at),
      sqlite,
    );
  }

  async get(projectId: string, id: string): Promise<Interaction | undefined> {
    const row = await this.db
      .selectFrom('interactions')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && this.toInteraction(row);
  }

  async getMany(projectId: string, ids: readonly string[]): Promise<Interaction[]> {
    const out: Interaction[] = [];
    for (const part of chunk([...new Set(ids)], 1000)) {
      const rows = await this.db
        .selectFrom('interactions')
        .selectAll()
        .where('project_id', '=', projectId)
        .where('id', 'in', part)
        .execute();
      out.push(...rows.map((r) => this.toInteraction(r)));
    }
    return out;
  }

  /** Which of `ids` exist in the project, with their end users (feedback defaults its rater to them). */
  async existing(
    projectId: string,
    ids: readonly string[],
    db: Kysely<Database> = this.db,
  ): Promise<Map<string, string | null>> {
    const found = new Map<string, string | null>();
    for (const [id, call] of await this.existingCalls(projectId, ids, db)) found.set(id, call.userId);
    return found;
  }

  /** Of these ids, the project's interactions that exist, with their end user and time. */
  async existingCalls(
    projectId: string,
    ids: readonly string[],
    db: Kysely<Database> = this.db,
  ): Promise<Map<string, ExistingCall>> {
    const found = new Map<string, ExistingCall>();
    for (const part of chunk([...new Set(ids)], 1000)) {
      const rows = await db
        .selectFrom('interactions')
        .select(['id', 'user_id', 'created_at'])
        .where('project_id', '=', projectId)
        .where('id', 'in', part)
        .execute();
      for (const r of rows) found.set(r.id, { userId: r.user_id, createdAt: Number(r.created_at) });
    }
    return found;
  }

  /** Newest first, with a cursor that stays stable while new interactions arrive. */
  async list(
    projectId: string,
    filters: InteractionFilters = {},
    page: { limit?: number; cursor?: string } = {},
  ): Promise<Page<Interaction>> {
    let q = this.db.selectFrom('interactions as i').selectAll('i').where('i.project_id', '=', projectId);
    if (filters.route !== undefined) q = q.where('i.route', '=', filters.route);
    if (filters.model !== undefined) q = q.where('i.model', '=', filters.model);
    if (filters.variant !== undefined) q = q.where('i.variant', '=', filters.variant);
    if (filters.userId !== undefined) q = q.where('i.user_id', '=', filters.userId);
    if (filters.sessionId !== undefined) q = q.where('i.session_id', '=', filters.sessionId);
    if (filters.source !== undefined) q = q.where('i.source', '=', filters.source);
    if (filters.from !== undefined) q = q.where('i.created_at', '>=', filters.from);
    if (filters.to !== undefined) q = q.where('i.created_at', '<', filters.to);
    if (filters.tag !== undefined) {
      const tag = filters.tag;
      q = q.where(({ exists, selectFrom }) =>
        exists(
          selectFrom('interaction_tags as t')
            .select(sql`1`.as('one'))
            .whereRef('t.project_id', '=', 'i.project_id')
            .whereRef('t.interaction_id', '=', 'i.id')
            .where('t.tag', '=', tag),
        ),
      );
    }
    if (filters.raterId !== undefined || filters.rating !== undefined) {
      const { raterId, rating } = filters;
      q = q.where(({ exists, selectFrom }) => {
        let rated = selectFrom('feedback_current as c')
          .select(sql`1`.as('one'))
          .whereRef('c.project_id', '=', 'i.project_id')
          .whereRef('c.interaction_id', '=', 'i.id');
        if (raterId !== undefined) rated = rated.where('c.rater_id', '=', raterId);
        if (rating === 'up' || rating === 'down')
          rated = rated.where('c.kind', '=', 'thumbs').where('c.label', '=', rating);
        else if (rating !== undefined)
          rated = rated.where('c.kind', '=', 'stars').where('c.value', '=', Number(rating));
        return exists(rated);
      });
    }
    if (filters.hasFeedback !== undefined) {
      const rated = filters.hasFeedback;
      q = q.where(({ exists, not, selectFrom }) => {
        const anyCurrent = exists(
          selectFrom('feedback_current as c')
            .select(sql`1`.as('one'))
            .whereRef('c.project_id', '=', 'i.project_id')
            .whereRef('c.interaction_id', '=', 'i.id'),
        );
        return rated ? anyCurrent : not(anyCurrent);
      });
    }
    return keysetPage(
      q,
      { at: 'i.created_at', id: 'i.id' },
      page,
      (r) => [Number(r.created_at), r.id],
      (r) => this.toInteraction(r),
    );
  }

  async count(projectId: string): Promise<number> {
    const row = await this.db
      .selectFrom('interactions')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('project_id', '=', projectId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  private toRow(projectId: string, item: ParsedInteraction, now: number): InsertableInteraction {
    return {
      project_id: projectId,
      id: item.id ?? newId(now),
      route: item.route ?? null,
      model: item.model,
      variant: item.variant ?? null,
      messages: encodeJson(item.messages),
      output: encodeJson(item.output),
      parameters: encodeJson(item.parameters ?? {}),
      latency_ms: item.latencyMs ?? null,
      input_tokens: item.usage?.inputTokens ?? null,
      output_tokens: item.usage?.outputTokens ?? null,
      total_tokens: item.usage?.totalTokens ?? null,
      session_id: item.sessionId ?? null,
      user_id: item.userId ?? null,
      metadata: encodeJson(item.metadata ?? {}),
      tags: encodeJson(item.tags ?? []),
      status: item.status,
      error: item.error ?? null,
      trace_id: item.traceId ?? null,
      span_id: item.spanId ?? null,
      source: item.source,
      prompt_hash: promptHash(item.messages),
      created_at: item.createdAt ?? now,
      received_at: now,
    };
  }

  toInteraction(r: Selectable<InteractionsTable>): Interaction {
    const usage: Usage = {};
    if (r.input_tokens !== null) usage.inputTokens = r.input_tokens;
    if (r.output_tokens !== null) usage.outputTokens = r.output_tokens;
    if (r.total_tokens !== null) usage.totalTokens = r.total_tokens;
    return {
      id: r.id,
      projectId: r.project_id,
      route: r.route,
      model: r.model,
      variant: r.variant,
      messages: decodeJson(this.dialect, r.messages),
      output: decodeJson(this.dialect, r.output),
      parameters: decodeJson(this.dialect, r.parameters),
      latencyMs: r.latency_ms,
      usage,
      sessionId: r.session_id,
      userId: r.user_id,
      metadata: decodeJson(this.dialect, r.metadata),
      tags: decodeJson(this.dialect, r.tags),
      status: r.status,
      error: r.error,
      traceId: r.trace_id,
      spanId: r.span_id,
      source: r.source as InteractionSource,
      promptHash: r.prompt_hash,
      createdAt: r.created_at,
      receivedAt: r.received_at,
    };
  }
}

type InsertableInteraction = Insertable<InteractionsTable>;

/** Every column `toRow` fills, for the prepared insert's named parameters. */
const ROW_COLUMNS = [
  'project_id',
  'id',
  'route',
  'model',
  'variant',
  'messages',
  'output',
  'parameters',
  'latency_ms',
  'input_tokens',
  'output_tokens',
  'total_tokens',
  'session_id',
  'user_id',
  'metadata',
  'tags',
  'status',
  'error',
  'trace_id',
  'span_id',
  'source',
  'prompt_hash',
  'created_at',
  'received_at',
] as const satisfies readonly (keyof InsertableInteraction)[];

/** The log's SQLite insert: a repeated id writes nothing (the first write stands). */
const INSERT_SQL = `insert into interactions (${ROW_COLUMNS.join(', ')}) values (${ROW_COLUMNS.map((c) => `@${c}`).join(', ')})
   on conflict (project_id, id) do nothing`;
const INSERT_TAG_SQL =
  'insert into interaction_tags (project_id, interaction_id, tag) values (?, ?, ?) on conflict do nothing';
