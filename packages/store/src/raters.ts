import type { Rater } from '@ratchet/core';
import type { Kysely } from 'kysely';
import { keysetPage, type Page } from './paging.js';
import type { Database } from './schema.js';

export type { Rater } from '@ratchet/core';

export class RaterRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** The first page only (internal callers that want a few recent rows). */
  async list(
    projectId: string,
    filter: { limit?: number; cursor?: string; flagged?: boolean } = {},
  ): Promise<Rater[]> {
    return (await this.page(projectId, filter)).items;
  }

  /** Most feedback first, a page at a time (see paging.ts). */
  async page(
    projectId: string,
    opts: { limit?: number; cursor?: string; flagged?: boolean } = {},
  ): Promise<Page<Rater>> {
    let q = this.db.selectFrom('raters').selectAll().where('project_id', '=', projectId);
    if (opts.flagged !== undefined) q = q.where('flagged', '=', opts.flagged ? 1 : 0);
    return keysetPage(
      q,
      { at: 'feedback_count', id: 'id' },
      { limit: opts.limit ?? 100, cursor: opts.cursor },
      (r) => [Number(r.feedback_count), r.id],
      (r) => ({
        id: r.id,
        source: r.source,
        feedbackCount: r.feedback_count,
        firstSeenAt: r.first_seen_at,
        lastSeenAt: r.last_seen_at,
        bias: r.bias,
        scale: r.scale,
        reliability: r.reliability,
        noiseSd: r.noise_sd,
        consensusCorrelation: r.consensus_corr,
        influence: r.influence,
        flagged: r.flagged === 1,
        flagReason: r.flag_reason,
        calibratedAt: r.calibrated_at,
      }),
    );
  }

  /** The raters the last calibration that saw them flagged, with the reason, by id. */
  async flagged(projectId: string): Promise<Map<string, string | null>> {
    const rows = await this.db
      .selectFrom('raters')
      .select(['id', 'flag_reason'])
      .where('project_id', '=', projectId)
      .where('flagged', '=', 1)
      .execute();
    return new Map(rows.map((r) => [r.id, r.flag_reason]));
  }

  /** Raters whose source is not `user` (annotators, judges, implicit), by id: everyone else is a user. */
  async nonUserSources(projectId: string): Promise<Map<string, string>> {
    const rows = await this.db
      .selectFrom('raters')
      .select(['id', 'source'])
      .where('project_id', '=', projectId)
      .where('source', '!=', 'user')
      .execute();
    return new Map(rows.map((r) => [r.id, r.source]));
  }
}
