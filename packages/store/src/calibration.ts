import { newId, type ScalarFeedbackKind, scalarFeedbackKinds } from '@ratchet/core';
import type SqliteDatabase from 'better-sqlite3';
import { type Kysely, sql } from 'kysely';
import type { DialectName } from './connection.js';
import { chunk, decodeJson, encodeJson, rowsPerStatement } from './json.js';
import type { Database } from './schema.js';
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

/** The rows at `indices` of rows or columns, as rows. */
function selectItems(
  items: readonly ItemRewardRow[] | ItemRewardColumns,
  indices: readonly number[],
): ItemRewardRow[] {
  return indices.map((k) => itemAt(items, k));
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
   * still counts as new. One pass over the project's current ratings (no index on receipt time),
   * far cheaper than a fit.
   */
  async ratedSince(projectId: string, since: number): Promise<ScalarRatingRow[]> {
    const rows = await this.db
      .selectFrom('feedback_current as c')
      .innerJoin('feedback as f', 'f.id', 'c.feedback_id')
      .select(['c.feedback_id', 'c.interaction_id', 'c.rater_id', 'c.kind', 'c.value', 'c.label', 'f.data'])
      .where('c.project_id', '=', projectId)
      .where('c.kind', 'in', scalarFeedbackKinds)
      .where('f.received_at', '>', since)
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
   * reward of every rated interaction (replacing the previous calibration's).
   */
  async save(
    projectId: string,
    options: unknown,
    stats: Record<string, unknown>,
    raters: readonly RaterCalibrationRow[],
    itemsInput: readonly ItemRewardRow[] | ItemRewardColumns,
    /** Incremental: write only these items' rewards (indices into items) and keep the others' rows. */
    onlyItems?: readonly number[],
  ): Promise<CalibrationRun> {
    const items = onlyItems ? selectItems(itemsInput, onlyItems) : itemsInput;
    const count = Array.isArray(items) ? items.length : (items as ItemRewardColumns).interactionIds.length;
    const run: CalibrationRun = { id: newId(), projectId, options, stats, createdAt: Date.now() };
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
      if (this.sqlite && !onlyItems)
        await trx.deleteFrom('interaction_rewards').where('project_id', '=', projectId).execute();
      else if (this.sqlite) {
        const ids = Array.from({ length: count }, (_, k) => itemAt(items, k).interactionId);
        for (const part of chunk(ids, 1000)) {
          await trx
            .deleteFrom('interaction_rewards')
            .where('project_id', '=', projectId)
            .where('interaction_id', 'in', part)
            .execute();
        }
      }
      if (this.sqlite) {
        // Inside the transaction Kysely began on this same connection: prepared multi-row
        // inserts take seconds for a million rows, where query objects took tens of seconds.
        insertManySqlite(
          this.sqlite,
          'interaction_rewards (project_id, interaction_id, calibration_id, n, raw_mean, reward, sd, lower, upper)',
          9,
          count,
          Array.isArray(items)
            ? (params, k) => {
                const i = (items as readonly ItemRewardRow[])[k]!;
                params.push(
                  projectId,
                  i.interactionId,
                  run.id,
                  i.n,
                  i.rawMean,
                  i.reward,
                  i.sd,
                  i.lower,
                  i.upper,
                );
              }
            : (params, k) => {
                const c = items as ItemRewardColumns;
                params.push(
                  projectId,
                  c.interactionIds[k],
                  run.id,
                  c.n[k],
                  c.rawMean[k],
                  c.reward[k],
                  c.sd[k],
                  c.lower[k],
                  c.upper[k],
                );
              },
        );
        return;
      }
      await upsertRewardsPostgres(trx, projectId, run.id, items, count);
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
      .selectFrom('interaction_rewards')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('interaction_id', '=', interactionId)
      .executeTakeFirst();
    return (
      r && {
        interactionId: r.interaction_id,
        n: r.n,
        rawMean: r.raw_mean,
        reward: r.reward,
        sd: r.sd,
        lower: r.lower,
        upper: r.upper,
      }
    );
  }
}

/** Rewards per PostgreSQL statement: each column goes as one array parameter. */
const REWARDS_PER_STATEMENT = 1000;

/**
 * Writes item rewards on PostgreSQL as column arrays unnested by the server, a thousand rows a
 * statement, read from the columns as it goes: multi-row VALUES made a row object per item (ten
 * million at 10M calls, twice over) and nine parameters per row for Kysely to compile. An upsert
 * that updates rows in place: deleting the project's rewards and inserting them again checked
 * every new row's foreign key and wrote every index entry again (83 s of a 110 s full refit at
 * 1M calls), where an update that keeps the key checks nothing.
 */
async function upsertRewardsPostgres(
  trx: Kysely<Database>,
  projectId: string,
  calibrationId: string,
  items: readonly ItemRewardRow[] | ItemRewardColumns,
  count: number,
): Promise<void> {
  for (let from = 0; from < count; from += REWARDS_PER_STATEMENT) {
    const to = Math.min(count, from + REWARDS_PER_STATEMENT);
    const ids: string[] = [];
    const columns = {
      n: [] as number[],
      rawMean: [] as number[],
      reward: [] as number[],
      sd: [] as number[],
      lower: [] as number[],
      upper: [] as number[],
    };
    for (let k = from; k < to; k++) {
      const i = itemAt(items, k);
      ids.push(i.interactionId);
      columns.n.push(i.n);
      columns.rawMean.push(i.rawMean);
      columns.reward.push(i.reward);
      columns.sd.push(i.sd);
      columns.lower.push(i.lower);
      columns.upper.push(i.upper);
    }
    await sql`insert into interaction_rewards (project_id, interaction_id, calibration_id, n, raw_mean, reward, sd, lower, upper)
      select ${projectId}, u.interaction_id, ${calibrationId}, u.n, u.raw_mean, u.reward, u.sd, u.lower, u.upper
      from unnest(${ids}::text[], ${columns.n}::int[], ${columns.rawMean}::float8[], ${columns.reward}::float8[],
        ${columns.sd}::float8[], ${columns.lower}::float8[], ${columns.upper}::float8[])
        as u(interaction_id, n, raw_mean, reward, sd, lower, upper)
      on conflict (project_id, interaction_id) do update set calibration_id = excluded.calibration_id,
        n = excluded.n, raw_mean = excluded.raw_mean, reward = excluded.reward, sd = excluded.sd,
        lower = excluded.lower, upper = excluded.upper`.execute(trx);
  }
}
