import { newId, type ScalarFeedbackKind, scalarFeedbackKinds } from '@ratchet/core';
import type SqliteDatabase from 'better-sqlite3';
import { type Kysely, sql } from 'kysely';
import type { DialectName } from './connection.js';
import { chunk, decodeJson, encodeJson, rowsPerStatement } from './json.js';
import type { Database, InteractionRewardsTable } from './schema.js';
import { insertManySqlite } from './sqlite-bulk.js';

/** A current feedback event of a kind that carries a scalar reward, as calibration reads it. */
export interface ScalarRatingRow {
  /** Read for criteria events only (their scores are looked up by it): null for the millions of others. */
  feedbackId: string | null;
  interactionId: string;
  raterId: string;
  kind: ScalarFeedbackKind;
  value: number | null;
  label: string | null;
  data: Record<string, unknown> | null;
}

export interface RaterCalibrationRow {
  raterId: string;
  bias: number;
  scale: number;
  noiseSd: number;
  reliability: number;
  consensusCorrelation: number | null;
  influence: number;
  flagged: boolean;
  reason: string | null;
}

export interface ItemRewardRow {
  interactionId: string;
  n: number;
  rawMean: number;
  reward: number;
  sd: number;
  lower: number;
  upper: number;
}

/** Item rewards as columns (index k is one interaction): a million rows without an object each. */
export interface ItemRewardColumns {
  interactionIds: readonly string[];
  n: ArrayLike<number>;
  rawMean: ArrayLike<number>;
  reward: ArrayLike<number>;
  sd: ArrayLike<number>;
  lower: ArrayLike<number>;
  upper: ArrayLike<number>;
}

/** Row k of rows or columns. */
function itemAt(items: readonly ItemRewardRow[] | ItemRewardColumns, k: number): ItemRewardRow {
  if (Array.isArray(items)) return items[k]!;
  const c = items as ItemRewardColumns;
  return {
    interactionId: c.interactionIds[k]!,
    n: c.n[k]!,
    rawMean: c.rawMean[k]!,
    reward: c.reward[k]!,
    sd: c.sd[k]!,
    lower: c.lower[k]!,
    upper: c.upper[k]!,
  };
}

export interface CalibrationRun {
  id: string;
  projectId: string;
  options: unknown;
  stats: Record<string, unknown>;
  createdAt: number;
}

const PAGE = 20_000;
/**
 * Raw SQLite pages are smaller: a page's row arrays live until the next page, and 20,000 of them
 * outgrew V8's young generation, so every page was copied and promoted (2.6 s of 5.6 s CPU for 3M
 * ratings; 2,000 rows per page: 3.0 s in all).
 */
const SQLITE_PAGE = 2_000;

/** The kinds with a scalar reward as an SQL list (names from core's registry, never input). */
const SCALAR_KINDS = `(${scalarFeedbackKinds.map((k) => `'${k}'`).join(', ')})`;

type CurrentRow = [string | null, string, string, ScalarRatingRow['kind'], number | null, string | null];

export class CalibrationRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly sqlite?: SqliteDatabase.Database,
  ) {}

  /**
   * The current scalar ratings of a project, page by page in primary-key order of
   * feedback_current (an index walk, no sort), so millions of rows never sit in memory at once.
   * Values and labels are read from feedback_current itself; only criteria events, whose scores
   * live in the event's data, go back to `feedback`.
   */
  async *currentScalarRatings(projectId: string): AsyncGenerator<ScalarRatingRow[]> {
    let after: [string, string, string] | undefined;
    for (;;) {
      const rows = this.sqlite
        ? this.pageSqlite(this.sqlite, projectId, after)
        : await this.pageKysely(projectId, after);
      if (rows.length === 0) return;
      const criteria = rows.filter((r) => r[3] === 'criteria').map((r) => r[0]!);
      const data = new Map<string, Record<string, unknown> | null>();
      for (const part of chunk(criteria, 1000)) {
        const found = await this.db
          .selectFrom('feedback')
          .select(['id', 'data'])
          .where('id', 'in', part)
          .execute();
        for (const f of found) data.set(f.id, f.data === null ? null : decodeJson(this.dialect, f.data));
      }
      yield rows.map(([feedbackId, interactionId, raterId, kind, value, label]) => ({
        feedbackId,
        interactionId,
        raterId,
        kind,
        value,
        label,
        data: feedbackId === null ? null : (data.get(feedbackId) ?? null),
      }));
      if (rows.length < (this.sqlite ? SQLITE_PAGE : PAGE)) return;
      const last = rows[rows.length - 1]!;
      after = [last[1], last[2], last[3]];
    }
  }

  /** Raw prepared statements on SQLite: no query object per row, and each page a complete statement. */
  private pageSqlite(
    sqlite: SqliteDatabase.Database,
    projectId: string,
    after: [string, string, string] | undefined,
  ): CurrentRow[] {
    const select = `select case when kind = 'criteria' then feedback_id end, interaction_id, rater_id, kind, value, label from feedback_current
      where project_id = ? and kind in ${SCALAR_KINDS}`;
    const order = `order by interaction_id, rater_id, kind limit ${SQLITE_PAGE}`;
    if (!after) return sqlite.prepare(`${select} ${order}`).raw(true).all(projectId) as CurrentRow[];
    return sqlite
      .prepare(`${select} and (interaction_id, rater_id, kind) > (?, ?, ?) ${order}`)
      .raw(true)
      .all(projectId, ...after) as CurrentRow[];
  }

  private async pageKysely(
    projectId: string,
    after: [string, string, string] | undefined,
  ): Promise<CurrentRow[]> {
    let q = this.db
      .selectFrom('feedback_current as c')
      .select(['c.feedback_id', 'c.interaction_id', 'c.rater_id', 'c.kind', 'c.value', 'c.label'])
      .where('c.project_id', '=', projectId)
      .where('c.kind', 'in', scalarFeedbackKinds);
    if (after) {
      const [i, r, k] = after;
      q = q.where(sql<boolean>`(c.interaction_id, c.rater_id, c.kind) > (${i}, ${r}, ${k})`);
    }
    const rows = await q
      .orderBy('c.interaction_id')
      .orderBy('c.rater_id')
      .orderBy('c.kind')
      .limit(PAGE)
      .execute();
    return rows.map((r) => [
      r.kind === 'criteria' ? r.feedback_id : null,
      r.interaction_id,
      r.rater_id,
      r.kind as ScalarRatingRow['kind'],
      r.value,
      r.label,
    ]);
  }

  /**
   * The current scalar ratings the store received after `since` (epoch ms), whole (value, label,
   * criteria data): what an incremental recalibration refits, or with a snapshot of the previous
   * run, all it reads. By receipt, not the event's own time, so a late event with an old timestamp
   * still counts as new.
   *
   * Bounded by an id floor: a feedback id is core's newId(now) made with the same `now` as its
   * received_at (FeedbackRepository.toRow), a UUIDv7 whose time is never earlier than that (its
   * counter only moves it on), so every event received after `since` has an id at or above the
   * floor of `since`'s millisecond. The scan is then a range of the primary key (`feedback` is
   * partitioned by the event's own time, so one range per month, each from the floor up) plus a
   * lookup of each event's current row: what arrived since, not the whole history, which a
   * filter on received_at alone (no index) read at 10M calls (30 s). The floor sits a minute
   * early, so a writer whose clock ran a little behind still falls inside; received_at decides.
   */
  async ratedSince(projectId: string, since: number): Promise<ScalarRatingRow[]> {
    const floor = idFloor(since - RATED_SINCE_SLACK_MS);
    const rows = await this.db
      .selectFrom('feedback as f')
      .innerJoin('feedback_current as c', 'c.feedback_id', 'f.id')
      .select(['c.feedback_id', 'c.interaction_id', 'c.rater_id', 'c.kind', 'c.value', 'c.label', 'f.data'])
      .where('f.id', '>=', floor)
      .where('f.project_id', '=', projectId)
      .where('f.received_at', '>', since)
      .where('c.project_id', '=', projectId)
      .where('c.kind', 'in', scalarFeedbackKinds)
      .execute();
    return rows.map((r) => ({
      feedbackId: r.kind === 'criteria' ? r.feedback_id : null,
      interactionId: r.interaction_id,
      raterId: r.rater_id,
      kind: r.kind as ScalarRatingRow['kind'],
      value: r.value,
      label: r.label,
      data: r.kind === 'criteria' && r.data !== null ? decodeJson(this.dialect, r.data) : null,
    }));
  }

  /** How many current scalar ratings the project has (what currentScalarRatings would yield). */
  async currentScalarRatingCount(projectId: string): Promise<number> {
    const row = await this.db
      .selectFrom('feedback_current')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('project_id', '=', projectId)
      .where('kind', 'in', scalarFeedbackKinds)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * The project's stored item rewards, page by page in interaction order: what an incremental
   * recalibration without a kept snapshot compares its fit with, to rewrite only what moved.
   */
  async *storedRewards(projectId: string): AsyncGenerator<ItemRewardRow[]> {
    let after: string | undefined;
    for (;;) {
      let q = this.db
        .selectFrom('current_rewards')
        .select(['interaction_id', 'n', 'raw_mean', 'reward', 'sd', 'lower', 'upper'])
        .where('project_id', '=', projectId);
      if (after !== undefined) q = q.where('interaction_id', '>', after);
      const rows = await q.orderBy('interaction_id').limit(PAGE).execute();
      if (rows.length === 0) return;
      yield rows.map(toRewardRow);
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.interaction_id;
    }
  }

  /** Each calibrated rater's stored parameters and verdict: where an incremental recalibration starts. */
  async raterParameters(projectId: string): Promise<Map<string, RaterCalibrationRow>> {
    const rows = await this.db
      .selectFrom('raters')
      .select([
        'id',
        'bias',
        'scale',
        'noise_sd',
        'reliability',
        'consensus_corr',
        'influence',
        'flagged',
        'flag_reason',
      ])
      .where('project_id', '=', projectId)
      .where('calibrated_at', 'is not', null)
      .execute();
    const out = new Map<string, RaterCalibrationRow>();
    for (const r of rows) {
      if (r.bias === null || r.scale === null || r.noise_sd === null) continue;
      out.set(r.id, {
        raterId: r.id,
        bias: r.bias,
        scale: r.scale,
        noiseSd: r.noise_sd,
        reliability: r.reliability ?? Number.NaN,
        consensusCorrelation: r.consensus_corr,
        influence: r.influence ?? 1,
        flagged: Number(r.flagged) === 1,
        reason: r.flag_reason,
      });
    }
    return out;
  }

  async countCurrentScalarRatings(projectId: string): Promise<number> {
    const row = await this.db
      .selectFrom('feedback_current')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('project_id', '=', projectId)
      .where('kind', 'in', scalarFeedbackKinds)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * Stores a calibration in one transaction: the run, every rater's state, and the calibrated
   * rewards. A full run (no `onlyItems`) rewrites every reward row and drops the project's changes.
   * An incremental run writes only `onlyItems`. With `hasChange` (what the caller recorded of the
   * store), their values are stored as changes (interaction_reward_changes, which current_rewards
   * reads first), so that a few percent of rewards scattered over the table do not rewrite nearly
   * every page of it (migration 0040); without it, they are rewritten in place as rows and their
   * changes dropped.
   */
  async save(
    projectId: string,
    options: unknown,
    stats: Record<string, unknown>,
    raters: readonly RaterCalibrationRow[],
    itemsInput: readonly ItemRewardRow[] | ItemRewardColumns,
    /** Incremental: write only these items' rewards (indices into items) and keep the others'. */
    onlyItems?: readonly number[],
    /** The run's id, when the caller needs it before the save (a file naming the run, written meanwhile). */
    runId: string = newId(),
    /**
     * Incremental: whether the store may hold a change for a written item already (it is then
     * replaced). Items without one are inserted without a conflict check (half the server's work of
     * an upsert), so a wrong record fails the save on the duplicate key rather than losing a write.
     */
    hasChange?: (k: number) => boolean,
  ): Promise<CalibrationRun> {
    // Which written items add a change and which replace one.
    const split = onlyItems && hasChange ? splitByChange(onlyItems, hasChange) : undefined;
    const run: CalibrationRun = { id: runId, projectId, options, stats, createdAt: Date.now() };
    const num = (x: number) => (Number.isFinite(x) ? x : null);
    await this.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('calibration_runs')
        .values({
          id: run.id,
          project_id: projectId,
          options: encodeJson(options),
          stats: encodeJson(stats),
          created_at: run.createdAt,
        })
        .execute();
      const raterRows = raters.map((r) => ({
        project_id: projectId,
        id: r.raterId,
        source: 'user',
        feedback_count: 0,
        first_seen_at: run.createdAt,
        last_seen_at: run.createdAt,
        bias: num(r.bias),
        scale: num(r.scale),
        reliability: num(r.reliability),
        noise_sd: num(r.noiseSd),
        consensus_corr: r.consensusCorrelation === null ? null : num(r.consensusCorrelation),
        influence: num(r.influence),
        flagged: r.flagged ? 1 : 0,
        flag_reason: r.reason,
        calibrated_at: run.createdAt,
      }));
      if (this.sqlite) {
        for (const part of chunk(raterRows, rowsPerStatement(15))) {
          // Raters exist already (feedback created them); only the calibration columns change.
          await trx
            .insertInto('raters')
            .values(part)
            .onConflict((oc) =>
              oc.columns(['project_id', 'id']).doUpdateSet((eb) => ({
                bias: eb.ref('excluded.bias'),
                scale: eb.ref('excluded.scale'),
                reliability: eb.ref('excluded.reliability'),
                noise_sd: eb.ref('excluded.noise_sd'),
                consensus_corr: eb.ref('excluded.consensus_corr'),
                influence: eb.ref('excluded.influence'),
                flagged: eb.ref('excluded.flagged'),
                flag_reason: eb.ref('excluded.flag_reason'),
                calibrated_at: eb.ref('excluded.calibrated_at'),
              })),
            )
            .execute();
        }
      } else await upsertRatersPostgres(trx, projectId, run.createdAt, raters);
      const write = { projectId, calibrationId: run.id, items: itemsInput };
      if (!onlyItems)
        await trx.deleteFrom('interaction_reward_changes').where('project_id', '=', projectId).execute();
      else if (!split) await dropChanges(trx, projectId, itemsInput, onlyItems);
      // [table, items (all when undefined), whether a row may be there already]
      const writes: [RewardTable, readonly number[] | undefined, boolean][] = split
        ? [
            ['interaction_reward_changes', split.added, false],
            ['interaction_reward_changes', split.replaced, true],
          ]
        : [['interaction_rewards', onlyItems, true]];
      for (const [table, items, replace] of writes) {
        if (items?.length === 0) continue;
        // SQLite: inside the transaction Kysely began on this same connection; prepared
        // multi-row statements take seconds for a million rows, query objects tens of seconds.
        if (this.sqlite) insertRewardsSqlite(this.sqlite, table, write, items, replace);
        else await insertRewardsPostgres(trx, table, write, items, replace);
      }
      // A full run rewrote every item it calibrated in place; the rows left from an earlier run
      // are items no longer rated (their ratings deleted).
      if (!onlyItems)
        await trx
          .deleteFrom('interaction_rewards')
          .where('project_id', '=', projectId)
          .where('calibration_id', '<>', run.id)
          .execute();
    });
    return run;
  }

  async latestRun(projectId: string): Promise<CalibrationRun | undefined> {
    const row = await this.db
      .selectFrom('calibration_runs')
      .selectAll()
      .where('project_id', '=', projectId)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .executeTakeFirst();
    return (
      row && {
        id: row.id,
        projectId: row.project_id,
        options: decodeJson(this.dialect, row.options),
        stats: decodeJson(this.dialect, row.stats),
        createdAt: row.created_at,
      }
    );
  }

  async rewardOf(projectId: string, interactionId: string): Promise<ItemRewardRow | undefined> {
    const r = await this.db
      .selectFrom('current_rewards')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('interaction_id', '=', interactionId)
      .executeTakeFirst();
    return r && toRewardRow(r);
  }
}

/** A stored reward as callers read it. */
function toRewardRow(r: Omit<InteractionRewardsTable, 'project_id' | 'calibration_id'>): ItemRewardRow {
  return {
    interactionId: r.interaction_id,
    n: r.n,
    rawMean: r.raw_mean,
    reward: r.reward,
    sd: r.sd,
    lower: r.lower,
    upper: r.upper,
  };
}

/** How far before `since` ratedSince's id floor sits (see there). */
const RATED_SINCE_SLACK_MS = 60_000;

/**
 * The smallest id core's newId could make at or after epoch ms `t`: its 48-bit time as the first
 * 12 hex digits with their dash ("0190f3a2-1b2c"). A prefix sorts before every id that extends
 * it, and ids compare as bytes in both databases' text order (SQLite's binary collation, and on
 * PostgreSQL the hex digits and dashes at fixed places order the same in any collation).
 */
export function idFloor(t: number): string {
  const hex = Math.max(0, Math.floor(t)).toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}`;
}

/**
 * Every rater's calibration on PostgreSQL in one statement, columns as arrays unnested by the
 * server (as the rewards): Kysely's multi-row VALUES compiled 15 parameters a rater, a tenth of
 * an incremental run's time at 10,000 raters. Raters exist already (feedback made them); only
 * the calibration columns change.
 */
async function upsertRatersPostgres(
  trx: Kysely<Database>,
  projectId: string,
  at: number,
  raters: readonly RaterCalibrationRow[],
): Promise<void> {
  const num = (x: number) => (Number.isFinite(x) ? x : null);
  for (const part of chunk([...raters], REWARDS_PER_STATEMENT)) {
    await sql`insert into raters (project_id, id, source, feedback_count, first_seen_at, last_seen_at, bias, scale,
        reliability, noise_sd, consensus_corr, influence, flagged, flag_reason, calibrated_at)
      select ${projectId}, u.id, 'user', 0, ${at}, ${at}, u.bias, u.scale, u.reliability, u.noise_sd, u.consensus_corr,
        u.influence, u.flagged, u.flag_reason, ${at}
      from unnest(${part.map((r) => r.raterId)}::text[], ${part.map((r) => num(r.bias))}::float8[],
        ${part.map((r) => num(r.scale))}::float8[], ${part.map((r) => num(r.reliability))}::float8[],
        ${part.map((r) => num(r.noiseSd))}::float8[],
        ${part.map((r) => (r.consensusCorrelation === null ? null : num(r.consensusCorrelation)))}::float8[],
        ${part.map((r) => num(r.influence))}::float8[], ${part.map((r) => (r.flagged ? 1 : 0))}::int[],
        ${part.map((r) => r.reason)}::text[])
        as u(id, bias, scale, reliability, noise_sd, consensus_corr, influence, flagged, flag_reason)
      on conflict (project_id, id) do update set bias = excluded.bias, scale = excluded.scale,
        reliability = excluded.reliability, noise_sd = excluded.noise_sd, consensus_corr = excluded.consensus_corr,
        influence = excluded.influence, flagged = excluded.flagged, flag_reason = excluded.flag_reason,
        calibrated_at = excluded.calibrated_at`.execute(trx);
  }
}

/** Rewards per PostgreSQL statement: each column goes as one array parameter. */
const REWARDS_PER_STATEMENT = 10_000;

/**
 * A PostgreSQL array literal of numbers, made by one join: the driver's own conversion of a JS
 * array escapes and quotes element by element (1.8 s of CPU for the 820,000 rewards of a full
 * save at 1M calls). A JS number's text is its shortest exact form, which float8 reads back as the
 * same double; NaN and the infinities read as themselves.
 */
function numberArray(values: readonly number[]): string {
  return `{${values.join(',')}}`;
}

/** A PostgreSQL array literal of text, each element quoted (so "NULL" stays a string). */
function textArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/[\\"]/g, '\\$&')}"`).join(',')}}`;
}

/** `items` that have no change yet, and those that may have one. */
function splitByChange(items: readonly number[], hasChange: (k: number) => boolean) {
  const out = { added: [] as number[], replaced: [] as number[] };
  for (const k of items) (hasChange(k) ? out.replaced : out.added).push(k);
  return out;
}

/** Where a save writes rewards: the rows, or the changes beside them. */
type RewardTable = 'interaction_rewards' | 'interaction_reward_changes';

/** A save's rewards: the project, the run writing them, and every item's values (rows or columns). */
interface RewardWrite {
  projectId: string;
  calibrationId: string;
  items: readonly ItemRewardRow[] | ItemRewardColumns;
}

/** The number of items to write: `only`'s, or all of them. */
function countOf(items: RewardWrite['items'], only: readonly number[] | undefined): number {
  if (only) return only.length;
  return Array.isArray(items) ? items.length : (items as ItemRewardColumns).interactionIds.length;
}

/** The columns a save writes, in the order both writers give them. */
const REWARD_COLUMNS = 'project_id, interaction_id, calibration_id, n, raw_mean, reward, sd, lower, upper';

const UPSERT_REWARD = `on conflict (project_id, interaction_id) do update set calibration_id = excluded.calibration_id,
  n = excluded.n, raw_mean = excluded.raw_mean, reward = excluded.reward, sd = excluded.sd,
  lower = excluded.lower, upper = excluded.upper`;

/** Rewards into `table` on SQLite; `replace`: replacing what is there for the same items. */
function insertRewardsSqlite(
  sqlite: SqliteDatabase.Database,
  table: RewardTable,
  { projectId, calibrationId, items }: RewardWrite,
  /** The rows to write (indices into items); all of them when undefined. */
  only: readonly number[] | undefined,
  replace: boolean,
): void {
  insertManySqlite(
    sqlite,
    `${table} (${REWARD_COLUMNS})`,
    9,
    countOf(items, only),
    (params, j) => {
      const i = itemAt(items, only ? only[j]! : j);
      params.push(
        projectId,
        i.interactionId,
        calibrationId,
        i.n,
        i.rawMean,
        i.reward,
        i.sd,
        i.lower,
        i.upper,
      );
    },
    replace ? UPSERT_REWARD : '',
  );
}

/** Drops the changes of the items at `indices`: they are about to be rewritten in place. */
async function dropChanges(
  trx: Kysely<Database>,
  projectId: string,
  items: RewardWrite['items'],
  indices: readonly number[],
): Promise<void> {
  const ids = indices.map((k) => itemAt(items, k).interactionId);
  for (const part of chunk(ids, 1000))
    await trx
      .deleteFrom('interaction_reward_changes')
      .where('project_id', '=', projectId)
      .where('interaction_id', 'in', part)
      .execute();
}

/**
 * Writes item rewards on PostgreSQL as column arrays unnested by the server, 10,000 rows a
 * statement, read from the columns as it goes: multi-row VALUES made a row object per item (ten
 * million at 10M calls, twice over) and nine parameters per row for Kysely to compile. Each
 * statement's arrays are made while the server runs the one before. `replace`: an upsert, which
 * updates rows in place (deleting the project's rewards and inserting them again checked every new
 * row's foreign key and wrote every index entry again: 83 s of a 110 s full refit at 1M calls);
 * otherwise a plain insert, which does half the server's work of an upsert (821,318 changes into
 * an empty table at 10M calls: 1.1 s against 2.5 s).
 */
async function insertRewardsPostgres(
  trx: Kysely<Database>,
  table: RewardTable,
  { projectId, calibrationId, items }: RewardWrite,
  /** The rows to write (indices into items); all of them when undefined. */
  only: readonly number[] | undefined,
  replace: boolean,
): Promise<void> {
  const count = countOf(items, only);
  const rows = Array.isArray(items) ? (items as readonly ItemRewardRow[]) : null;
  const c = items as ItemRewardColumns;
  let running: Promise<unknown> | undefined;
  for (let from = 0; from < count; from += REWARDS_PER_STATEMENT) {
    const to = Math.min(count, from + REWARDS_PER_STATEMENT);
    const ids: string[] = [];
    const n: number[] = [];
    const rawMean: number[] = [];
    const reward: number[] = [];
    const sd: number[] = [];
    const lower: number[] = [];
    const upper: number[] = [];
    for (let j = from; j < to; j++) {
      const k = only ? only[j]! : j;
      if (rows) {
        const i = rows[k]!;
        ids.push(i.interactionId);
        n.push(i.n);
        rawMean.push(i.rawMean);
        reward.push(i.reward);
        sd.push(i.sd);
        lower.push(i.lower);
        upper.push(i.upper);
      } else {
        ids.push(c.interactionIds[k]!);
        n.push(c.n[k]!);
        rawMean.push(c.rawMean[k]!);
        reward.push(c.reward[k]!);
        sd.push(c.sd[k]!);
        lower.push(c.lower[k]!);
        upper.push(c.upper[k]!);
      }
    }
    const statement = sql`insert into ${sql.table(table)} (${sql.raw(REWARD_COLUMNS)})
      select ${projectId}, u.interaction_id, ${calibrationId}, u.n, u.raw_mean, u.reward, u.sd, u.lower, u.upper
      from unnest(${textArray(ids)}::text[], ${numberArray(n)}::int[], ${numberArray(rawMean)}::float8[],
        ${numberArray(reward)}::float8[], ${numberArray(sd)}::float8[], ${numberArray(lower)}::float8[],
        ${numberArray(upper)}::float8[])
        as u(interaction_id, n, raw_mean, reward, sd, lower, upper)
      ${sql.raw(replace ? UPSERT_REWARD : '')}`;
    await running;
    running = statement.execute(trx);
  }
  await running;
}
