import { type Kysely, sql } from 'kysely';
import type { DialectName } from './connection.js';
import { decodeJson } from './json.js';
import type { Database } from './schema.js';

export type BreakdownDimension = 'model' | 'route' | 'variant' | 'tag';

export interface CriterionBreakdownRow {
  criterion: string;
  group: string | null;
  n: number;
  /** Mean score mapped to [-1, 1]. */
  meanReward: number;
  /** Mean score on the criterion's own scale. */
  meanValue: number;
}

export interface CriterionPair {
  a: string;
  b: string;
  n: number;
  sumX: number;
  sumY: number;
  sumXX: number;
  sumYY: number;
  sumXY: number;
}

export interface PromptSummary {
  promptHash: string;
  n: number;
  meanReward: number;
  /** One interaction with this prompt, to show its text. */
  exampleId: string;
  prompt: string;
}

export interface FeedbackText {
  feedbackId: string;
  interactionId: string;
  kind: 'comment' | 'correction';
  text: string;
}

export interface CriterionRatingRow {
  unitId: string;
  raterId: string;
  criterion: string;
  value: number | string;
}

/** Aggregations for error analysis, all computed in the database. */
export class AnalysisRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
  ) {}

  /** Current criteria scores by criterion and by model, route, variant or tag. */
  async criteriaBreakdown(projectId: string, by: BreakdownDimension): Promise<CriterionBreakdownRow[]> {
    let q = this.db
      .selectFrom('feedback_scores as s')
      .innerJoin('feedback_current as c', 'c.feedback_id', 's.feedback_id')
      .innerJoin('interactions as i', (j) =>
        j.onRef('i.project_id', '=', 's.project_id').onRef('i.id', '=', 's.interaction_id'),
      )
      .where('s.project_id', '=', projectId);
    const group =
      by === 'tag'
        ? (() => {
            q = q.innerJoin('interaction_tags as t', (j) =>
              j.onRef('t.project_id', '=', 'i.project_id').onRef('t.interaction_id', '=', 'i.id'),
            );
            return sql<string>`t.tag`;
          })()
        : sql<string | null>`${sql.ref(`i.${by}`)}`;
    const rows = await q
      .select((eb) => [
        's.name',
        group.as('grp'),
        eb.fn.countAll<number>().as('n'),
        eb.fn.avg<number>('s.reward').as('mean_reward'),
        eb.fn.avg<number>('s.value').as('mean_value'),
      ])
      .groupBy(['s.name', group])
      .orderBy('s.name')
      .orderBy(group)
      .execute();
    return rows.map((r) => ({
      criterion: r.name,
      group: r.grp,
      n: Number(r.n),
      meanReward: Number(r.mean_reward),
      meanValue: Number(r.mean_value),
    }));
  }

  /**
   * Current ratings for agreement statistics: every criterion score, plus thumbs (as up/down)
   * and stars as criteria of their own. The newest `limit` events, so the rater x unit matrix
   * stays bounded on large projects.
   */
  async ratingsForAgreement(projectId: string, limit = 20_000): Promise<CriterionRatingRow[]> {
    const criteria = await this.db
      .selectFrom('feedback_scores as s')
      .innerJoin('feedback_current as c', 'c.feedback_id', 's.feedback_id')
      .select(['s.interaction_id', 'c.rater_id', 's.name', 's.value', 's.label'])
      .where('s.project_id', '=', projectId)
      .orderBy('c.created_at', 'desc')
      .limit(limit)
      .execute();
    const scalar = await this.db
      .selectFrom('feedback_current as c')
      .innerJoin('feedback as f', 'f.id', 'c.feedback_id')
      .select(['c.interaction_id', 'c.rater_id', 'c.kind', 'f.value', 'f.label'])
      .where('c.project_id', '=', projectId)
      .where('c.kind', 'in', ['thumbs', 'stars'])
      .orderBy('c.created_at', 'desc')
      .limit(limit)
      .execute();
    return [
      ...criteria.map((r) => ({
        unitId: r.interaction_id,
        raterId: r.rater_id,
        criterion: r.name,
        value: r.label ?? r.value,
      })),
      ...scalar.map((r) => ({
        unitId: r.interaction_id,
        raterId: r.rater_id,
        criterion: r.kind === 'stars' ? (r.label ?? 'stars') : 'thumbs',
        value: r.kind === 'thumbs' ? (r.label ?? '') : (r.value ?? 0),
      })),
    ];
  }

  /** Sums for the correlation of every pair of criteria scored in the same event. */
  async criteriaPairs(projectId: string): Promise<CriterionPair[]> {
    const rows = await this.db
      .selectFrom('feedback_scores as a')
      .innerJoin('feedback_scores as b', (j) =>
        j.onRef('b.feedback_id', '=', 'a.feedback_id').onRef('b.name', '>', 'a.name'),
      )
      .innerJoin('feedback_current as c', 'c.feedback_id', 'a.feedback_id')
      .where('a.project_id', '=', projectId)
      .select((eb) => [
        'a.name as a',
        'b.name as b',
        eb.fn.countAll<number>().as('n'),
        eb.fn.sum<number>('a.reward').as('sx'),
        eb.fn.sum<number>('b.reward').as('sy'),
        eb.fn.sum<number>(sql`a.reward * a.reward`).as('sxx'),
        eb.fn.sum<number>(sql`b.reward * b.reward`).as('syy'),
        eb.fn.sum<number>(sql`a.reward * b.reward`).as('sxy'),
      ])
      .groupBy(['a.name', 'b.name'])
      .execute();
    return rows.map((r) => ({
      a: r.a,
      b: r.b,
      n: Number(r.n),
      sumX: Number(r.sx),
      sumY: Number(r.sy),
      sumXX: Number(r.sxx),
      sumYY: Number(r.syy),
      sumXY: Number(r.sxy),
    }));
  }

  /** Prompts with the lowest mean calibrated reward, among those answered at least `minCount` times. */
  async worstPrompts(
    projectId: string,
    opts: { minCount?: number; limit?: number } = {},
  ): Promise<PromptSummary[]> {
    const rows = await this.db
      .selectFrom('current_rewards as r')
      .innerJoin('interactions as i', (j) =>
        j.onRef('i.project_id', '=', 'r.project_id').onRef('i.id', '=', 'r.interaction_id'),
      )
      .where('r.project_id', '=', projectId)
      .select((eb) => [
        'i.prompt_hash',
        eb.fn.countAll<number>().as('n'),
        eb.fn.avg<number>('r.reward').as('mean'),
        eb.fn.min('i.id').as('example'),
      ])
      .groupBy('i.prompt_hash')
      .having((eb) => eb.fn.countAll(), '>=', opts.minCount ?? 1)
      .orderBy('mean')
      .limit(opts.limit ?? 10)
      .execute();
    const examples = await this.db
      .selectFrom('interactions')
      .select(['id', 'messages'])
      .where('project_id', '=', projectId)
      .where('id', 'in', rows.length ? rows.map((r) => String(r.example)) : [''])
      .execute();
    const text = new Map(
      examples.map((e) => {
        const messages = decodeJson<{ role: string; content: unknown }[]>(this.dialect, e.messages);
        const last = [...messages].reverse().find((m) => m.role === 'user') ?? messages.at(-1);
        return [e.id, typeof last?.content === 'string' ? last.content : JSON.stringify(last?.content ?? '')];
      }),
    );
    return rows.map((r) => ({
      promptHash: r.prompt_hash,
      n: Number(r.n),
      meanReward: Number(r.mean),
      exampleId: String(r.example),
      prompt: text.get(String(r.example)) ?? '',
    }));
  }

  /**
   * Comments and corrections on answers that went badly: the interaction's calibrated reward is
   * below 0, or the same rater gave it a thumbs down. Newest first.
   */
  async negativeFeedbackTexts(projectId: string, limit = 5000): Promise<FeedbackText[]> {
    const rows = await this.db
      .selectFrom('feedback_current as c')
      .innerJoin('feedback as f', 'f.id', 'c.feedback_id')
      .leftJoin('current_rewards as r', (j) =>
        j.onRef('r.project_id', '=', 'c.project_id').onRef('r.interaction_id', '=', 'c.interaction_id'),
      )
      .where('c.project_id', '=', projectId)
      .where('c.kind', 'in', ['comment', 'correction'])
      .where((eb) =>
        eb.or([
          eb('r.reward', '<', 0),
          eb.exists(
            eb
              .selectFrom('feedback_current as t')
              .innerJoin('feedback as tf', 'tf.id', 't.feedback_id')
              .select(sql`1`.as('one'))
              .whereRef('t.project_id', '=', 'c.project_id')
              .whereRef('t.interaction_id', '=', 'c.interaction_id')
              .whereRef('t.rater_id', '=', 'c.rater_id')
              .where('t.kind', '=', 'thumbs')
              .where('tf.value', '<', 0),
          ),
        ]),
      )
      .select(['f.id', 'f.interaction_id', 'f.kind', 'f.text'])
      .orderBy('f.created_at', 'desc')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      feedbackId: r.id,
      interactionId: r.interaction_id,
      kind: r.kind as FeedbackText['kind'],
      text: r.text ?? '',
    }));
  }
}
