import { newId } from '@ratchet/core';
import { type Kysely, sql } from 'kysely';
import type { DialectName } from './connection.js';
import { chunk, decodeJson, encodeJson, rowsPerStatement } from './json.js';
import type { Database } from './schema.js';

/** A current feedback event of a kind that carries a scalar reward, as calibration reads it. */
export interface ScalarRatingRow {
  feedbackId: string;
  interactionId: string;
  raterId: string;
  kind: 'thumbs' | 'stars' | 'criteria' | 'implicit';
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

export interface CalibrationRun {
  id: string;
  projectId: string;
  options: unknown;
  stats: Record<string, unknown>;
  createdAt: number;
}

const PAGE = 20_000;

export class CalibrationRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
  ) {}

  /**
   * The current scalar ratings of a project, page by page in primary-key order of
   * feedback_current (an index walk, no sort), so millions of rows never sit in memory at once.
   */
  async *currentScalarRatings(projectId: string): AsyncGenerator<ScalarRatingRow[]> {
    let after: [string, string, string] | undefined;
    for (;;) {
      let q = this.db
        .selectFrom('feedback_current as c')
        .innerJoin('feedback as f', 'f.id', 'c.feedback_id')
        .select(['f.id', 'c.interaction_id', 'c.rater_id', 'c.kind', 'f.value', 'f.label', 'f.data'])
        .where('c.project_id', '=', projectId)
        .where('c.kind', 'in', ['thumbs', 'stars', 'criteria', 'implicit']);
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
      if (rows.length === 0) return;
      yield rows.map((r) => ({
        feedbackId: r.id,
        interactionId: r.interaction_id,
        raterId: r.rater_id,
        kind: r.kind as ScalarRatingRow['kind'],
        value: r.value,
        label: r.label,
        data: r.data === null ? null : decodeJson(this.dialect, r.data),
      }));
      const last = rows[rows.length - 1]!;
      after = [last.interaction_id, last.rater_id, last.kind];
      if (rows.length < PAGE) return;
    }
  }

  async countCurrentScalarRatings(projectId: string): Promise<number> {
    const row = await this.db
      .selectFrom('feedback_current')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('project_id', '=', projectId)
      .where('kind', 'in', ['thumbs', 'stars', 'criteria', 'implicit'])
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
    items: readonly ItemRewardRow[],
  ): Promise<CalibrationRun> {
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
      await trx.deleteFrom('interaction_rewards').where('project_id', '=', projectId).execute();
      const itemRows = items.map((i) => ({
        project_id: projectId,
        interaction_id: i.interactionId,
        calibration_id: run.id,
        n: i.n,
        raw_mean: i.rawMean,
        reward: i.reward,
        sd: i.sd,
        lower: i.lower,
        upper: i.upper,
      }));
      for (const part of chunk(itemRows, rowsPerStatement(9)))
        await trx.insertInto('interaction_rewards').values(part).execute();
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
