import {
  type ChatMessage,
  type DatasetVersion,
  newId,
  parseDatasetRef,
  RatchetError,
  scalarFeedbackKinds,
} from '@ratchet/core';
import type SqliteDatabase from 'better-sqlite3';
import { type Kysely, sql } from 'kysely';
import type { DialectName } from './connection.js';
import { decodeJson, encodeJson } from './json.js';
import type { Database } from './schema.js';
import { insertManySqlite } from './sqlite-bulk.js';

export type { DatasetVersion } from '@ratchet/core';

/** A rated interaction with its calibrated reward, as dataset builders need it. */
export interface RatedInteraction {
  interactionId: string;
  promptHash: string;
  /** Read-only: rows with the same prompt may share one array. */
  messages: ChatMessage[];
  output: ChatMessage;
  /** The model that gave the answer (the route's variant model, as the gateway logged it). */
  model: string;
  tags: string[];
  createdAt: number;
  reward: number;
  lower: number;
  upper: number;
  n: number;
  /** The current scalar feedback events behind the reward. */
  feedbackIds: string[];
}

/**
 * A rated interaction with its messages and answer as JSON text: exactly `JSON.stringify` of
 * them, whichever database and however it stored them, so rows written from the text are the
 * rows written from the parsed messages. A dataset build holds a million of these where it could
 * not hold a million parsed conversations.
 */
export interface RatedInteractionText extends Omit<RatedInteraction, 'messages' | 'output'> {
  messagesJson: string;
  outputJson: string;
}

/** A row of the rated-interactions query before its JSON columns are decoded (`M`, `T`: how they came). */
type RatedRow<M, T> = Omit<RatedInteraction, 'messages' | 'output' | 'tags'> & {
  messages: M;
  output: M;
  tags: T;
};

/** The text JSON.stringify writes of a JSON value given as any valid JSON text of it. */
const canonicalJson = (text: string) => JSON.stringify(JSON.parse(text));

/**
 * canonicalJson of jsonb's text, mostly without parsing it. jsonb writes no duplicate keys, its
 * keys in the order JSON.parse then keeps, strings escaped as JSON.stringify escapes them (the
 * same short escapes, other control characters as lower-case \u00xx, everything else as is) and,
 * outside strings, ", " and ": " where JSON.stringify writes no space: dropping those spaces
 * gives JSON.stringify's text. Numbers may be written otherwise (1.0, 1e+21): a text with a
 * number, or anything else unexpected outside its strings, is parsed and written again.
 */
function canonicalJsonb(text: string): string {
  // The pieces are joined once at the end: `+=` of slices made a tree of cons and sliced strings
  // that kept jsonb's whole text alive beside them, about 295 bytes of heap for a 46-character
  // answer that takes 72 flat; a build holds one per rated interaction (millions).
  const pieces: string[] = [];
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      // A string: to its closing quote, past escaped characters.
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 92) i++;
        else if (d === 34) break;
      }
    } else if (c === 32) {
      pieces.push(text.slice(from, i));
      from = i + 1;
    } else if (!jsonbPunctuation[c]) return canonicalJson(text);
  }
  if (from === 0) return text;
  pieces.push(text.slice(from));
  return pieces.join('');
}

/** What jsonb writes outside strings, numbers aside: { } [ ] : , and the letters of true, false, null. */
const jsonbPunctuation = new Uint8Array(128);
for (const ch of '{}[]:,truefalsn') jsonbPunctuation[ch.charCodeAt(0)] = 1;

/** Rows per FETCH from the PostgreSQL cursor: one page the reader holds at a time. */
const CURSOR_FETCH = 1000;
/** Dataset members per PostgreSQL insert (two array parameters, whatever the count). */
const MEMBERS_PER_STATEMENT = 10_000;
/** Raw SQLite pages: small enough that a page's rows die young (1M rows: 4.0 s CPU vs 5.0 s at 5000). */
const SQLITE_PAGE = 1000;
/** The kinds with a scalar reward as an SQL list (names from core's registry, never input). */
const scalarKindsSql = `(${scalarFeedbackKinds.map((k) => `'${k}'`).join(', ')})`;

export class DatasetRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly sqlite?: SqliteDatabase.Database,
  ) {}

  /** Rated interactions page by page, in interaction id order. */
  async *ratedInteractions(projectId: string): AsyncGenerator<RatedInteraction[]> {
    if (this.sqlite) {
      // Answers to one prompt usually sit side by side (sampled together): they share one parsed
      // prompt instead of a million copies of the same messages living through the build.
      let lastMessages = '';
      let parsedMessages: ChatMessage[] = [];
      const messagesOf = (text: string) => {
        if (text !== lastMessages) {
          parsedMessages = JSON.parse(text);
          lastMessages = text;
        }
        return parsedMessages;
      };
      yield* this.ratedInteractionsSqlite(this.sqlite, projectId, (r) => ({
        ...r,
        messages: messagesOf(r.messages),
        output: JSON.parse(r.output),
        tags: r.tags === '[]' ? [] : JSON.parse(r.tags),
      }));
      return;
    }
    yield* this.ratedInteractionsPostgres(projectId, false, (r) => ({
      ...r,
      messages: decodeJson<ChatMessage[]>(this.dialect, r.messages),
      output: decodeJson<ChatMessage>(this.dialect, r.output),
      tags: decodeJson<string[]>(this.dialect, r.tags),
    }));
  }

  /**
   * The same rows in the same order, with the messages and the answer as JSON text
   * (`RatedInteractionText`) rather than parsed. Model names and empty tag lists are shared
   * between rows (a model's name is held once, not once a row; tags are read-only).
   */
  async *ratedInteractionTexts(projectId: string): AsyncGenerator<RatedInteractionText[]> {
    const models = new Map<string, string>();
    const model = (name: string) => {
      const known = models.get(name);
      if (known !== undefined) return known;
      models.set(name, name);
      return name;
    };
    const noTags: string[] = [];
    if (this.sqlite) {
      yield* this.ratedInteractionsSqlite(this.sqlite, projectId, (r) => ({
        interactionId: r.interactionId,
        promptHash: r.promptHash,
        messagesJson: canonicalJson(r.messages),
        outputJson: canonicalJson(r.output),
        model: model(r.model),
        tags: r.tags === '[]' ? noTags : JSON.parse(r.tags),
        createdAt: r.createdAt,
        reward: r.reward,
        lower: r.lower,
        upper: r.upper,
        n: r.n,
        feedbackIds: r.feedbackIds,
      }));
      return;
    }
    // jsonb's text is not JSON.stringify's (spaces after ':' and ',', numbers as written): the
    // driver reads it as a string and canonicalJsonb writes it as JSON.stringify would.
    yield* this.ratedInteractionsPostgres(projectId, true, (r) => {
      const tags = decodeJson<string[]>(this.dialect, r.tags);
      return {
        interactionId: r.interactionId,
        promptHash: r.promptHash,
        messagesJson: canonicalJsonb(r.messages as string),
        outputJson: canonicalJsonb(r.output as string),
        model: model(r.model),
        tags: tags.length === 0 ? noTags : tags,
        createdAt: r.createdAt,
        reward: r.reward,
        lower: r.lower,
        upper: r.upper,
        n: r.n,
        feedbackIds: r.feedbackIds,
      };
    });
  }

  /**
   * One query through a cursor, fetched a page at a time. Keyset pages (where id > last limit n)
   * cost a pass over the whole history each: the planner hashes every month partition of
   * `interactions` (or probes each partition's index per row) for every page, so 10 million calls
   * read in 2,000 pages scanned 20 billion rows. Held open, the one plan merges the rewards' and the
   * partitions' primary keys in id order once. The transaction is read-only and ends when the reader
   * stops, early or not (a for-await that breaks runs the generator's finally). With `texts`, the
   * messages and the answer come as jsonb's text rather than parsed by the driver.
   */
  private async *ratedInteractionsPostgres<R>(
    projectId: string,
    texts: boolean,
    toRow: (r: RatedRow<unknown, unknown>) => R,
  ): AsyncGenerator<R[]> {
    const trx = await this.db.startTransaction().setAccessMode('read only').execute();
    const columns = texts ? sql`i.messages::text, i.output::text` : sql`i.messages, i.output`;
    type Row = {
      id: string;
      prompt_hash: string;
      messages: unknown;
      output: unknown;
      model: string;
      tags: unknown;
      created_at: number | string;
      reward: number;
      lower: number;
      upper: number;
      n: number;
      feedback_ids: string[] | null;
    };
    const fetchPage = () =>
      sql<Row>`fetch ${sql.raw(String(CURSOR_FETCH))} from rated_interactions`.execute(trx);
    let next: ReturnType<typeof fetchPage> | undefined;
    try {
      // The feedback ids grouped from feedback_current's primary key (project, interaction,
      // rater, kind), already in interaction order, merged beside the rewards: a subquery per row
      // probed that index 800,000 times (6.0 s of server time at 1M calls, 3.4 s merged).
      await sql`declare rated_interactions no scroll cursor for
        select i.id, i.prompt_hash, ${columns}, i.model, i.tags, i.created_at, r.reward, r.lower, r.upper, r.n,
          f.feedback_ids
        from current_rewards r
        join interactions i on i.project_id = r.project_id and i.id = r.interaction_id
        left join (
          select c.interaction_id, array_agg(c.feedback_id order by c.rater_id, c.kind) as feedback_ids
          from feedback_current c
          where c.project_id = ${projectId} and c.kind in (${sql.join(scalarFeedbackKinds)})
          group by c.interaction_id
        ) f on f.interaction_id = r.interaction_id
        where r.project_id = ${projectId}
        order by r.interaction_id`.execute(trx);
      next = fetchPage();
      while (next) {
        const { rows }: { rows: Row[] } = await next;
        // The server reads the next page while the reader decodes and uses this one.
        next = rows.length === CURSOR_FETCH ? fetchPage() : undefined;
        if (rows.length === 0) break;
        yield rows.map((r) =>
          toRow({
            interactionId: r.id,
            promptHash: r.prompt_hash,
            messages: r.messages,
            output: r.output,
            model: r.model,
            tags: r.tags,
            createdAt: Number(r.created_at),
            reward: r.reward,
            lower: r.lower,
            upper: r.upper,
            n: r.n,
            feedbackIds: r.feedback_ids ?? [],
          }),
        );
      }
    } finally {
      // A reader that stopped early leaves a fetch in flight on the transaction's connection.
      await next?.catch(() => undefined);
      await trx.rollback().execute();
    }
  }

  /**
   * Raw prepared pages by interaction id; the feedback ids come from a correlated group_concat
   * on feedback_current's primary key (the unary + keeps SQLite's planner off the (project, kind)
   * index, which would scan every rating of the project per row). Each page is a complete statement (no cursor held open).
   */
  private *ratedInteractionsSqlite<R>(
    sqlite: SqliteDatabase.Database,
    projectId: string,
    toRow: (r: RatedRow<string, string>) => R,
  ): Generator<R[]> {
    type Row = [
      string,
      string,
      string,
      string,
      string,
      string,
      number,
      number,
      number,
      number,
      number,
      string | null,
    ];
    const select = `select i.id, i.prompt_hash, i.messages, i.output, i.model, i.tags, i.created_at, r.reward, r.lower, r.upper, r.n,
        (select group_concat(c.feedback_id) from feedback_current c
          where c.project_id = r.project_id and c.interaction_id = r.interaction_id
            and +c.kind in ${scalarKindsSql}) as fids
      from current_rewards r join interactions i on i.project_id = r.project_id and i.id = r.interaction_id
      where r.project_id = ?`;
    const first = sqlite.prepare(`${select} order by r.interaction_id limit ${SQLITE_PAGE}`).raw(true);
    const next = sqlite
      .prepare(`${select} and r.interaction_id > ? order by r.interaction_id limit ${SQLITE_PAGE}`)
      .raw(true);
    let rows = first.all(projectId) as Row[];
    while (rows.length > 0) {
      yield rows.map(
        ([id, promptHash, messages, output, model, tags, createdAt, reward, lower, upper, n, fids]) =>
          toRow({
            interactionId: id,
            promptHash,
            messages,
            output,
            model,
            tags,
            createdAt,
            reward,
            lower,
            upper,
            n,
            feedbackIds: fids ? fids.split(',') : [],
          }),
      );
      if (rows.length < SQLITE_PAGE) return;
      rows = next.all(projectId, rows[rows.length - 1]![0]) as Row[];
    }
  }

  async nextVersion(projectId: string, name: string): Promise<number> {
    const row = await this.db
      .selectFrom('datasets')
      .select((eb) => eb.fn.max('version').as('v'))
      .where('project_id', '=', projectId)
      .where('name', '=', name)
      .executeTakeFirst();
    return Number(row?.v ?? 0) + 1;
  }

  /**
   * Records a version and the interactions it used. The unique (project, name, version) makes
   * two concurrent builds of one name fail rather than overwrite each other. The members come as
   * a list or as a map of interaction id to split: a build's millions of members need no object
   * each.
   */
  async insertVersion(
    v: Omit<DatasetVersion, 'id' | 'createdAt' | 'deletedInteractions' | 'deletedRows' | 'dataDeletedAt'>,
    membership:
      | readonly { interactionId: string; split: 'train' | 'test' }[]
      | ReadonlyMap<string, 'train' | 'test'>,
  ): Promise<DatasetVersion> {
    const ids: string[] = [];
    const splits: ('train' | 'test')[] = [];
    if (membership instanceof Map)
      for (const [id, split] of membership) {
        ids.push(id);
        splits.push(split);
      }
    else
      for (const m of membership as readonly { interactionId: string; split: 'train' | 'test' }[]) {
        ids.push(m.interactionId);
        splits.push(m.split);
      }
    const version: DatasetVersion = {
      ...v,
      id: newId(),
      createdAt: Date.now(),
      deletedInteractions: 0,
      deletedRows: 0,
      dataDeletedAt: null,
    };
    try {
      await this.db.transaction().execute(async (trx) => {
        await trx
          .insertInto('datasets')
          .values({
            id: version.id,
            project_id: v.projectId,
            name: v.name,
            version: v.version,
            method: v.method,
            spec: encodeJson(v.spec),
            content_hash: v.contentHash,
            row_count: v.rowCount,
            manifest: encodeJson(v.manifest),
            path: v.path,
            calibration_id: v.calibrationId,
            created_at: version.createdAt,
          })
          .execute();
        if (this.sqlite) {
          // Inside the transaction Kysely began on this same connection (a million members
          // took seconds through query objects).
          insertManySqlite(
            this.sqlite,
            'dataset_interactions (dataset_id, project_id, interaction_id, split)',
            4,
            ids.length,
            (params, k) => params.push(version.id, v.projectId, ids[k]!, splits[k]!),
            'on conflict do nothing',
          );
          return;
        }
        // Two column arrays per statement, unnested by the server: multi-row VALUES through
        // Kysely took 10 s for 431k members (a row object and four parameters each to compile and
        // bind), most of a 1M-call KTO build.
        for (let from = 0; from < ids.length; from += MEMBERS_PER_STATEMENT) {
          const to = from + MEMBERS_PER_STATEMENT;
          await sql`insert into dataset_interactions (dataset_id, project_id, interaction_id, split)
            select ${version.id}, ${v.projectId}, u.interaction_id, u.split
            from unnest(${ids.slice(from, to)}::text[], ${splits.slice(from, to)}::text[]) as u(interaction_id, split)
            on conflict do nothing`.execute(trx);
        }
      });
    } catch (err) {
      if (/unique|duplicate/i.test(String(err))) {
        throw new RatchetError(
          'conflict',
          `dataset "${v.name}" version ${v.version} exists; versions are immutable`,
          'name',
        );
      }
      throw err;
    }
    return version;
  }

  async list(projectId: string): Promise<DatasetVersion[]> {
    const rows = await this.db
      .selectFrom('datasets')
      .selectAll()
      .where('project_id', '=', projectId)
      .orderBy('created_at', 'desc')
      .execute();
    return rows.map((r) => this.toVersion(r));
  }

  /** By id, or by `name` (latest version) or `name@version`. */
  async get(projectId: string, ref: string): Promise<DatasetVersion | undefined> {
    const { name, version } = parseDatasetRef(ref);
    let q = this.db.selectFrom('datasets').selectAll().where('project_id', '=', projectId);
    q = q.where((eb) => eb.or([eb('id', '=', ref), eb('name', '=', name)]));
    if (version !== undefined) q = q.where('version', '=', version);
    const row = await q.orderBy('version', 'desc').executeTakeFirst();
    return row && this.toVersion(row);
  }

  /** The interactions a dataset version's rows came from, of one split if given. */
  async members(projectId: string, datasetId: string, split?: 'train' | 'test'): Promise<string[]> {
    let q = this.db
      .selectFrom('dataset_interactions')
      .select('interaction_id')
      .where('project_id', '=', projectId)
      .where('dataset_id', '=', datasetId);
    if (split) q = q.where('split', '=', split);
    const rows = await q.orderBy('interaction_id').execute();
    return rows.map((r) => r.interaction_id);
  }

  /** Dataset versions an interaction went into (the dashboard's "dataset membership"). */
  async membershipOf(
    projectId: string,
    interactionId: string,
  ): Promise<{ datasetId: string; name: string; version: number; split: string }[]> {
    const rows = await this.db
      .selectFrom('dataset_interactions as m')
      .innerJoin('datasets as d', 'd.id', 'm.dataset_id')
      .select(['d.id', 'd.name', 'd.version', 'm.split'])
      .where('m.project_id', '=', projectId)
      .where('m.interaction_id', '=', interactionId)
      .orderBy('d.created_at')
      .execute();
    return rows.map((r) => ({ datasetId: r.id, name: r.name, version: r.version, split: r.split }));
  }

  private toVersion(r: {
    id: string;
    project_id: string;
    name: string;
    version: number;
    method: string;
    spec: unknown;
    content_hash: string;
    row_count: number;
    manifest: unknown;
    path: string;
    calibration_id: string | null;
    created_at: number;
    deleted_interactions?: number;
    deleted_rows?: number;
    data_deleted_at?: number | null;
  }): DatasetVersion {
    return {
      id: r.id,
      projectId: r.project_id,
      name: r.name,
      version: r.version,
      method: r.method,
      spec: decodeJson(this.dialect, r.spec),
      contentHash: r.content_hash,
      rowCount: r.row_count,
      manifest: decodeJson(this.dialect, r.manifest),
      path: r.path,
      calibrationId: r.calibration_id,
      createdAt: r.created_at,
      deletedInteractions: Number(r.deleted_interactions ?? 0),
      deletedRows: Number(r.deleted_rows ?? 0),
      dataDeletedAt: r.data_deleted_at == null ? null : Number(r.data_deleted_at),
    };
  }
}
