import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

export interface Rater {
  id: string;
  source: string;
  feedbackCount: number;
  firstSeenAt: number;
  lastSeenAt: number;
  bias: number | null;
  scale: number | null;
  reliability: number | null;
  flagged: boolean;
  flagReason: string | null;
}

export class RaterRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async list(projectId: string, opts: { limit?: number; offset?: number } = {}): Promise<Rater[]> {
    const rows = await this.db
      .selectFrom('raters')
      .selectAll()
      .where('project_id', '=', projectId)
      .orderBy('feedback_count', 'desc')
      .orderBy('id')
      .limit(opts.limit ?? 100)
      .offset(opts.offset ?? 0)
      .execute();
    return rows.map((r) => ({
      id: r.id,
      source: r.source,
      feedbackCount: r.feedback_count,
      firstSeenAt: r.first_seen_at,
      lastSeenAt: r.last_seen_at,
      bias: r.bias,
      scale: r.scale,
      reliability: r.reliability,
      flagged: r.flagged === 1,
      flagReason: r.flag_reason,
    }));
  }
}
