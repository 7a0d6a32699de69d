import { type ParsedFeedback, RatchetError } from '@ratchet/core';
import type { Kysely } from 'kysely';
import type { AuditLog } from './audit.js';
import type { DialectName } from './connection.js';
import type { FeedbackRepository } from './feedback.js';
import type { WriteResult } from './interactions.js';
import { decodeJson, encodeJson } from './json.js';
import type { Database } from './schema.js';

/** How the queue hands out items: to `overlap` annotators each, locked for `lockMs` per claim. */
export interface AssignmentTerms {
  overlap: number;
  lockMs: number;
}

/** An item locked for one annotator until `expiresAt`. */
export interface AnnotationClaim {
  interactionId: string;
  expiresAt: number;
  /** Annotators who already submitted it (the claimant will be one more, up to the overlap). */
  submitted: number;
  /** How many annotators its route's queue gives each item. */
  overlap: number;
  /** True when the annotator already held this lock (a reload): it was renewed, not newly taken. */
  resumed: boolean;
}

export interface AnnotatorProgress {
  annotatorId: string;
  submitted: number;
  skipped: number;
  /** The item this annotator holds a live lock on, if any. */
  holding: string | null;
}

/** One annotator's current thumbs or stars on an item they submitted through the queue. */
export interface AnnotatorRating {
  interactionId: string;
  annotatorId: string;
  kind: 'thumbs' | 'stars';
  value: string | number;
}

export interface Adjudication {
  interactionId: string;
  kind: string;
  value: unknown;
  note: string | null;
  decidedBy: string;
  decidedAt: number;
}

/** An item whose annotators gave different labels of one kind, with the final label if recorded. */
export interface Disagreement {
  interactionId: string;
  kind: 'thumbs' | 'stars';
  ratings: { annotatorId: string; value: string | number }[];
  adjudication: Adjudication | null;
}

/** The kinds whose labels the queue compares between annotators (agreement, disagreements). */
export const comparedKinds = ['thumbs', 'stars'] as const;

/**
 * The annotation team's queue. An item is rated by up to `overlap` annotators, one at a time: a
 * claim takes the item's lock row (primary key per item, so two claims at once cannot both get
 * it; the same atomic upsert as the round leases), a lock expires so an abandoned item returns,
 * and submit or skip gives it back in the transaction that records the annotator's part.
 */
export class AnnotationRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly feedback: FeedbackRepository,
    private readonly audit: AuditLog,
  ) {}

  /**
   * Locks the first of `candidates` this annotator may rate: not locked by someone else, not
   * already submitted or skipped by them, and submitted by fewer than its overlap. An item's
   * overlap and lock time are those of its route (`termsFor`, from the route's loop policy), so a
   * claim across routes still gives each item its own. An annotator holds one item at a time: a
   * live lock of theirs is renewed and returned instead.
   */
  async claim(
    projectId: string,
    annotatorId: string,
    candidates: readonly string[],
    termsFor: (route: string | null) => AssignmentTerms,
    now = Date.now(),
  ): Promise<AnnotationClaim | null> {
    const held = await this.db
      .selectFrom('annotation_locks as l')
      .innerJoin('interactions as i', (j) =>
        j.onRef('i.project_id', '=', 'l.project_id').onRef('i.id', '=', 'l.interaction_id'),
      )
      .select(['l.interaction_id', 'i.route'])
      .where('l.project_id', '=', projectId)
      .where('l.annotator_id', '=', annotatorId)
      .where('l.expires_at', '>', now)
      .executeTakeFirst();
    if (held) {
      const terms = termsFor(held.route);
      const expiresAt = now + terms.lockMs;
      await this.db
        .updateTable('annotation_locks')
        .set({ expires_at: expiresAt })
        .where('project_id', '=', projectId)
        .where('interaction_id', '=', held.interaction_id)
        .where('annotator_id', '=', annotatorId)
        .execute();
      return {
        interactionId: held.interaction_id,
        expiresAt,
        submitted: await this.submittedCount(this.db, projectId, held.interaction_id),
        overlap: terms.overlap,
        resumed: true,
      };
    }
    const routes = await this.routesOf(projectId, [...new Set(candidates)]);
    for (const [interactionId, route] of routes) {
      const terms = termsFor(route);
      const expiresAt = now + terms.lockMs;
      const submitted = await this.db
        .transaction()
        .execute((trx) =>
          this.tryLock(trx, projectId, annotatorId, interactionId, terms.overlap, now, expiresAt),
        );
      if (submitted !== null)
        return { interactionId, expiresAt, submitted, overlap: terms.overlap, resumed: false };
    }
    return null;
  }

  /** The route of each of `ids` that is an interaction of the project, in the order given. */
  private async routesOf(projectId: string, ids: readonly string[]): Promise<Map<string, string | null>> {
    if (ids.length === 0) return new Map();
    const rows = await this.db
      .selectFrom('interactions')
      .select(['id', 'route'])
      .where('project_id', '=', projectId)
      .where('id', 'in', ids)
      .execute();
    const route = new Map(rows.map((r) => [r.id, r.route]));
    return new Map(ids.filter((id) => route.has(id)).map((id) => [id, route.get(id) ?? null]));
  }

  /**
   * Takes the item's lock, then checks (holding it, so no one can submit meanwhile) that the
   * annotator may rate it; gives it back when not. Returns how many submitted it, or null.
   */
  private async tryLock(
    trx: Kysely<Database>,
    projectId: string,
    annotatorId: string,
    interactionId: string,
    overlap: number,
    now: number,
    expiresAt: number,
  ): Promise<number | null> {
    const taken = await trx
      .insertInto('annotation_locks')
      .values({
        project_id: projectId,
        interaction_id: interactionId,
        annotator_id: annotatorId,
        claimed_at: now,
        expires_at: expiresAt,
      })
      .onConflict((oc) =>
        oc
          .columns(['project_id', 'interaction_id'])
          .doUpdateSet({
            annotator_id: (eb) => eb.ref('excluded.annotator_id'),
            claimed_at: (eb) => eb.ref('excluded.claimed_at'),
            expires_at: (eb) => eb.ref('excluded.expires_at'),
          })
          .where('annotation_locks.expires_at', '<=', now),
      )
      .executeTakeFirst();
    if (Number(taken.numInsertedOrUpdatedRows ?? 0) === 0) return null;
    const done = await trx
      .selectFrom('annotation_assignments')
      .select(['annotator_id', 'status'])
      .where('project_id', '=', projectId)
      .where('interaction_id', '=', interactionId)
      .execute();
    const submitted = done.filter((d) => d.status === 'submitted').length;
    if (submitted < overlap && !done.some((d) => d.annotator_id === annotatorId)) return submitted;
    await trx
      .deleteFrom('annotation_locks')
      .where('project_id', '=', projectId)
      .where('interaction_id', '=', interactionId)
      .where('annotator_id', '=', annotatorId)
      .execute();
    return null;
  }

  private async submittedCount(db: Kysely<Database>, projectId: string, interactionId: string) {
    const row = await db
      .selectFrom('annotation_assignments')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('project_id', '=', projectId)
      .where('interaction_id', '=', interactionId)
      .where('status', '=', 'submitted')
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * Items other annotators started and fewer than their overlap (as recorded with the
   * submissions) finished, that this annotator has not touched and no one holds: the queue offers
   * these before new ones, so items reach their overlap (and can be compared) before it moves on.
   */
  async openItems(
    projectId: string,
    annotatorId: string,
    options: { limit: number; route?: string },
    now = Date.now(),
  ): Promise<string[]> {
    let q = this.db
      .selectFrom('annotation_assignments as a')
      .innerJoin('interactions as i', (j) =>
        j.onRef('i.project_id', '=', 'a.project_id').onRef('i.id', '=', 'a.interaction_id'),
      )
      .select('a.interaction_id')
      .where('a.project_id', '=', projectId)
      .where('a.status', '=', 'submitted')
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('annotation_assignments as mine')
              .select('mine.annotator_id')
              .where('mine.project_id', '=', projectId)
              .whereRef('mine.interaction_id', '=', 'a.interaction_id')
              .where('mine.annotator_id', '=', annotatorId),
          ),
        ),
      )
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('annotation_locks as l')
              .select('l.annotator_id')
              .where('l.project_id', '=', projectId)
              .whereRef('l.interaction_id', '=', 'a.interaction_id')
              .where('l.expires_at', '>', now),
          ),
        ),
      )
      .groupBy('a.interaction_id')
      .having((eb) => eb(eb.fn.countAll(), '<', eb.fn.max('a.overlap')))
      .orderBy((eb) => eb.fn.min('a.finished_at'))
      .limit(options.limit);
    if (options.route) q = q.where('i.route', '=', options.route);
    return (await q.execute()).map((r) => r.interaction_id);
  }

  /**
   * Writes the annotator's feedback on the item they hold and gives the item back, all in one
   * transaction: without the lock (it expired and someone else took it) nothing is written.
   */
  async submit(
    projectId: string,
    annotatorId: string,
    interactionId: string,
    items: readonly ParsedFeedback[],
    overlap: number,
    now = Date.now(),
  ): Promise<WriteResult[]> {
    return this.feedback.insert(projectId, items, undefined, undefined, (trx) =>
      this.finish(trx, projectId, annotatorId, interactionId, 'submitted', overlap, now),
    );
  }

  /** The annotator passes on the item they hold: they will not get it again; others may. */
  async skip(
    projectId: string,
    annotatorId: string,
    interactionId: string,
    overlap: number,
    now = Date.now(),
  ): Promise<void> {
    await this.db
      .transaction()
      .execute((trx) => this.finish(trx, projectId, annotatorId, interactionId, 'skipped', overlap, now));
  }

  /** Gives the lock back unrated (the annotator stopped): anyone, them included, may claim it. */
  async release(projectId: string, annotatorId: string, interactionId: string): Promise<boolean> {
    const r = await this.db
      .deleteFrom('annotation_locks')
      .where('project_id', '=', projectId)
      .where('interaction_id', '=', interactionId)
      .where('annotator_id', '=', annotatorId)
      .executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  /**
   * Ends the annotator's turn on the item. Their lock row must still be theirs: an expired lock
   * no one took over still counts, but once another annotator claimed the item it is refused.
   */
  private async finish(
    trx: Kysely<Database>,
    projectId: string,
    annotatorId: string,
    interactionId: string,
    status: 'submitted' | 'skipped',
    overlap: number,
    now: number,
  ): Promise<void> {
    const released = await trx
      .deleteFrom('annotation_locks')
      .where('project_id', '=', projectId)
      .where('interaction_id', '=', interactionId)
      .where('annotator_id', '=', annotatorId)
      .executeTakeFirst();
    if (Number(released.numDeletedRows) === 0)
      throw new RatchetError(
        'conflict',
        `interactionId: "${interactionId}" is not locked by ${annotatorId} (claim it first; a lock that expired may have gone to another annotator)`,
        'interactionId',
      );
    await trx
      .insertInto('annotation_assignments')
      .values({
        project_id: projectId,
        interaction_id: interactionId,
        annotator_id: annotatorId,
        status,
        overlap,
        finished_at: now,
      })
      .execute();
  }

  /** Per annotator: how many items they submitted and skipped, and what they hold now. */
  async progress(projectId: string, now = Date.now()): Promise<AnnotatorProgress[]> {
    const [counts, locks] = await Promise.all([
      this.db
        .selectFrom('annotation_assignments')
        .select(['annotator_id', 'status', (eb) => eb.fn.countAll<number>().as('n')])
        .where('project_id', '=', projectId)
        .groupBy(['annotator_id', 'status'])
        .execute(),
      this.db
        .selectFrom('annotation_locks')
        .select(['annotator_id', 'interaction_id'])
        .where('project_id', '=', projectId)
        .where('expires_at', '>', now)
        .execute(),
    ]);
    const byAnnotator = new Map<string, AnnotatorProgress>();
    const entry = (id: string) => {
      let p = byAnnotator.get(id);
      if (!p) {
        p = { annotatorId: id, submitted: 0, skipped: 0, holding: null };
        byAnnotator.set(id, p);
      }
      return p;
    };
    for (const c of counts) entry(c.annotator_id)[c.status] = Number(c.n);
    for (const l of locks) entry(l.annotator_id).holding = l.interaction_id;
    return [...byAnnotator.values()].sort((a, b) => a.annotatorId.localeCompare(b.annotatorId));
  }

  /**
   * The current thumbs and stars each annotator gave on the items they submitted through the
   * queue (their rater id is their annotator id): what agreement and disagreements are made of.
   */
  async ratings(projectId: string): Promise<AnnotatorRating[]> {
    const rows = await this.db
      .selectFrom('annotation_assignments as a')
      .innerJoin('feedback_current as f', (j) =>
        j
          .onRef('f.project_id', '=', 'a.project_id')
          .onRef('f.interaction_id', '=', 'a.interaction_id')
          .onRef('f.rater_id', '=', 'a.annotator_id'),
      )
      .select(['a.interaction_id', 'a.annotator_id', 'f.kind', 'f.value', 'f.label'])
      .where('a.project_id', '=', projectId)
      .where('a.status', '=', 'submitted')
      .where('f.kind', 'in', comparedKinds)
      .orderBy('a.interaction_id')
      .orderBy('a.annotator_id')
      .execute();
    return rows.flatMap((r): AnnotatorRating[] => {
      const kind = r.kind as AnnotatorRating['kind'];
      const value = kind === 'thumbs' ? r.label : r.value === null ? null : Number(r.value);
      return value === null
        ? []
        : [{ interactionId: r.interaction_id, annotatorId: r.annotator_id, kind, value }];
    });
  }

  /** Items where the annotators' labels of one kind differ, oldest item first. */
  async disagreements(projectId: string): Promise<Disagreement[]> {
    const byItem = new Map<string, Disagreement>();
    for (const r of await this.ratings(projectId)) {
      const key = `${r.interactionId}\u0000${r.kind}`;
      const d = byItem.get(key) ?? {
        interactionId: r.interactionId,
        kind: r.kind,
        ratings: [],
        adjudication: null,
      };
      d.ratings.push({ annotatorId: r.annotatorId, value: r.value });
      byItem.set(key, d);
    }
    const split = [...byItem.values()].filter((d) => new Set(d.ratings.map((r) => r.value)).size > 1);
    if (split.length === 0) return [];
    const decided = await this.db
      .selectFrom('annotation_adjudications')
      .selectAll()
      .where('project_id', '=', projectId)
      .execute();
    const decisions = new Map(decided.map((a) => [`${a.interaction_id}\u0000${a.kind}`, a]));
    for (const d of split) {
      const a = decisions.get(`${d.interactionId}\u0000${d.kind}`);
      if (a)
        d.adjudication = {
          interactionId: a.interaction_id,
          kind: a.kind,
          value: decodeJson(this.dialect, a.value),
          note: a.note,
          decidedBy: a.decided_by,
          decidedAt: Number(a.decided_at),
        };
    }
    return split;
  }

  /**
   * Records the final label of an item its annotators disagree on (a later decision replaces an
   * earlier one), audited with who decided, in one transaction. Refused for an item with no
   * disagreement of that kind: there is nothing to adjudicate.
   */
  async adjudicate(
    projectId: string,
    decision: { interactionId: string; kind: 'thumbs' | 'stars'; value: string | number; note?: string },
    actor: string,
    now = Date.now(),
  ): Promise<Adjudication> {
    const open = await this.disagreements(projectId);
    const split = open.find((d) => d.interactionId === decision.interactionId && d.kind === decision.kind);
    if (!split)
      throw new RatchetError(
        'conflict',
        `interactionId: the annotators of "${decision.interactionId}" do not disagree on ${decision.kind}`,
        'interactionId',
      );
    const row = {
      project_id: projectId,
      interaction_id: decision.interactionId,
      kind: decision.kind,
      value: encodeJson(decision.value),
      note: decision.note ?? null,
      decided_by: actor,
      decided_at: now,
    };
    await this.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('annotation_adjudications')
        .values(row)
        .onConflict((oc) =>
          oc.columns(['project_id', 'interaction_id', 'kind']).doUpdateSet({
            value: row.value,
            note: row.note,
            decided_by: actor,
            decided_at: now,
          }),
        )
        .execute();
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'annotation.adjudicated',
          subjectType: 'interaction',
          subjectId: decision.interactionId,
          // The labels, never the item's content.
          details: {
            kind: decision.kind,
            value: decision.value,
            annotators: split.ratings,
            previous: split.adjudication?.value ?? null,
          },
        },
        trx,
      );
    });
    return {
      interactionId: decision.interactionId,
      kind: decision.kind,
      value: decision.value,
      note: row.note,
      decidedBy: actor,
      decidedAt: now,
    };
  }
}
