import {
  ActiveLearningObjective,
  agreementByPerson,
  ClientId,
  FeedbackInput,
  type ParsedFeedback,
  parseInput,
  RatchetError,
  ratingRoles,
  type TeamAgreement,
} from '@ratchet/core';
import { AnnotationQueueTerms, selectForAnnotation } from '@ratchet/loop';
import { type AnnotatorRating, comparedKinds, type Principal, type Store } from '@ratchet/store';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { principalOf } from '../middleware/auth.js';
import type { RouteTable } from '../routing.js';
import { personRaterId } from './accounts.js';

/** A person's name on the team as an admin key may give it; not one of the callers' own ids. */
const AnnotatorName = z
  .string()
  .min(1)
  .max(200)
  .refine(
    (s) => !/^(api|user|key):/.test(s),
    'must not start with "api:", "user:" or "key:" (the ids of keys and accounts)',
  );

/**
 * Who is annotating: the one place the queue learns a person's identity, so that each person is
 * one rater in calibration and agreement. A signed-in person is themselves (`personRaterId`,
 * the rater id of all their ratings); a key stands for one person (`api:<keyId>`), and a key with the admin
 * scope may name the person it acts for (a team on a shared key). No one else may name anyone.
 */
export function annotatorOf(
  request: FastifyRequest,
  principal: Principal,
  named: string | undefined,
): string {
  const caller = principalOf(request);
  if (named === undefined) return caller?.kind === 'user' ? personRaterId(caller.userId) : principal.actor;
  if (caller?.kind === 'user' || !principal.scopes.includes('admin'))
    throw new RatchetError(
      'forbidden',
      'annotator: only a key with the admin scope may name the annotator; a person annotates as themselves',
      'annotator',
    );
  return named;
}

/** What a claim's items are drawn from when nobody else's item is waiting: the policy's next ones. */
const CANDIDATES_PER_CLAIM = 100;

/** Fields of a feedback item the queue sets itself: the annotator cannot choose them. */
const setByTheQueue = ['interactionId', 'raterId', 'source', 'feedbackToken', 'createdAt'] as const;

const ItemRef = {
  interactionId: ClientId,
  annotator: AnnotatorName.optional(),
};

const ClaimBody = z.strictObject({
  route: z.string().min(1).max(200).optional(),
  policy: z.string().min(1).max(100).optional(),
  objective: ActiveLearningObjective.optional(),
  annotator: AnnotatorName.optional(),
});

const SubmitBody = z.strictObject({
  ...ItemRef,
  /** Feedback items as POST /feedback takes them, without what the queue sets (see setByTheQueue). */
  items: z.array(z.record(z.string(), z.unknown())).min(1).max(20),
});

const Decision = z.discriminatedUnion('kind', [
  z.strictObject({
    interactionId: ClientId,
    kind: z.literal('thumbs'),
    value: z.enum(['up', 'down']),
    note: z.string().min(1).max(2000).optional(),
    annotator: AnnotatorName.optional(),
  }),
  z.strictObject({
    interactionId: ClientId,
    kind: z.literal('stars'),
    value: z.number().finite(),
    note: z.string().min(1).max(2000).optional(),
    annotator: AnnotatorName.optional(),
  }),
]);

/** The annotator's feedback items, each tied to the claimed item and to them as its rater. */
function queueItems(
  raw: Record<string, unknown>[],
  interactionId: string,
  annotator: string,
): ParsedFeedback[] {
  return raw.map((item, i) => {
    const set = setByTheQueue.find((field) => field in item);
    if (set)
      throw new RatchetError(
        'invalid_request',
        `items.${i}.${set}: set by the queue, leave it out`,
        `items.${i}.${set}`,
      );
    return parseInput(
      FeedbackInput,
      { ...item, interactionId, raterId: annotator, source: 'annotator' },
      `items.${i}`,
    );
  });
}

/** Agreement per kind the queue compares, each annotator one rater. */
function teamAgreement(ratings: readonly AnnotatorRating[]): Record<string, TeamAgreement> {
  return Object.fromEntries(
    comparedKinds.map((kind) => [
      kind,
      agreementByPerson(
        ratings
          .filter((r) => r.kind === kind)
          .map((r) => ({ unitId: r.interactionId, raterId: r.annotatorId, value: r.value })),
        // Stars are ordered: a 4 against a 5 is a smaller disagreement than a 1 against a 5.
        kind === 'stars' ? { level: 'ordinal', weights: 'quadratic' } : { level: 'nominal' },
      ),
    ]),
  );
}

/**
 * The annotation team's queue: claim the next item (locked to the annotator, offered to
 * `overlap` annotators in turn), submit ratings on it as that annotator, skip or release it;
 * per-annotator progress and agreement; disagreements and their adjudication.
 */
export function registerAnnotationRoutes(
  routes: RouteTable,
  store: Store,
  options: {
    queueObjectives?: Record<string, ActiveLearningObjective>;
    /** Per route, from its loop policy's `annotation`; other routes get the defaults. */
    queueTerms?: Record<string, AnnotationQueueTerms>;
  } = {},
): void {
  const defaults = AnnotationQueueTerms.parse({});
  const termsFor = (route: string | null | undefined) => {
    const t = (route ? options.queueTerms?.[route] : undefined) ?? defaults;
    return { overlap: t.overlap, lockMs: Math.round(t.lockMinutes * 60_000) };
  };
  /** The item's own route decides its terms, whatever the client says. */
  const itemTerms = async (projectId: string, interactionId: string) => {
    const [item] = await store.interactions.getMany(projectId, [interactionId]);
    if (!item)
      throw new RatchetError(
        'not_found',
        `interactionId: interaction "${interactionId}" not found`,
        'interactionId',
      );
    return termsFor(item.route);
  };

  routes.add({
    method: 'POST',
    url: '/api/v1/annotation/claim',
    access: 'admin',
    // People by role: annotators work the queue, as themselves.
    roles: ratingRoles,
    tag: 'annotation',
    summary:
      "Locks the annotator's next item: one another annotator started first (until it has the route's overlap), else the queue policy's next. An annotator holds one item at a time; asking again renews it. null when nothing is left.",
    body: ClaimBody,
    handler: async ({ request, principal, body }) => {
      const annotator = annotatorOf(request, principal, body.annotator);
      const { projectId } = principal;
      const route = body.route ? { route: body.route } : {};
      const started = await store.annotation.openItems(projectId, annotator, { limit: 20, ...route });
      let claim = await store.annotation.claim(projectId, annotator, started, termsFor);
      let policy: string | null = null;
      if (!claim) {
        const objective = body.objective ?? (body.route ? options.queueObjectives?.[body.route] : undefined);
        const chosen = await selectForAnnotation(
          store,
          {
            projectId,
            limit: CANDIDATES_PER_CLAIM,
            raterId: annotator,
            ...route,
            ...(objective ? { objective } : {}),
          },
          body.policy,
        );
        policy = chosen.policy;
        const ids = chosen.items.map((c) => c.interactionId);
        claim = await store.annotation.claim(projectId, annotator, ids, termsFor);
      }
      const pairWith = claim ? await store.dashboard.siblingAnswer(projectId, claim.interactionId) : null;
      return {
        annotator,
        policy,
        item: claim ? { ...claim, pairWith: pairWith ?? null } : null,
      };
    },
  });

  routes.add({
    method: 'POST',
    url: '/api/v1/annotation/submit',
    access: 'admin',
    // People by role: annotators work the queue, as themselves.
    roles: ratingRoles,
    tag: 'annotation',
    summary:
      "Saves the annotator's feedback on the item they hold (rater: the annotator, source: annotator) and unlocks it, in one transaction; 409 when they no longer hold it.",
    body: SubmitBody,
    handler: async ({ request, principal, body }) => {
      const annotator = annotatorOf(request, principal, body.annotator);
      const items = queueItems(body.items, body.interactionId, annotator);
      const terms = await itemTerms(principal.projectId, body.interactionId);
      const written = await store.annotation.submit(
        principal.projectId,
        annotator,
        body.interactionId,
        items,
        terms.overlap,
      );
      return { annotator, interactionId: body.interactionId, items: written };
    },
  });

  routes.add({
    method: 'POST',
    url: '/api/v1/annotation/skip',
    access: 'admin',
    // People by role: annotators work the queue, as themselves.
    roles: ratingRoles,
    tag: 'annotation',
    summary: 'Passes on the item the annotator holds: it is not offered to them again; others may rate it.',
    body: z.strictObject(ItemRef),
    handler: async ({ request, principal, body }) => {
      const annotator = annotatorOf(request, principal, body.annotator);
      const terms = await itemTerms(principal.projectId, body.interactionId);
      await store.annotation.skip(principal.projectId, annotator, body.interactionId, terms.overlap);
      return { annotator, interactionId: body.interactionId, skipped: true };
    },
  });

  routes.add({
    method: 'POST',
    url: '/api/v1/annotation/release',
    access: 'admin',
    // People by role: annotators work the queue, as themselves.
    roles: ratingRoles,
    tag: 'annotation',
    summary: "Unlocks the annotator's item unrated (they stopped): anyone may claim it again.",
    body: z.strictObject(ItemRef),
    handler: async ({ request, principal, body }) => {
      const annotator = annotatorOf(request, principal, body.annotator);
      const released = await store.annotation.release(principal.projectId, annotator, body.interactionId);
      return { annotator, interactionId: body.interactionId, released };
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/annotation/progress',
    access: 'read',
    tag: 'annotation',
    summary:
      "Per annotator: items submitted and skipped, the item held now, and agreement with the other annotators on the same items (thumbs; stars). The team's pairwise agreement and Krippendorff's alpha per kind.",
    handler: async ({ principal }) => {
      const [progress, ratings] = await Promise.all([
        store.annotation.progress(principal.projectId),
        store.annotation.ratings(principal.projectId),
      ]);
      const agreement = teamAgreement(ratings);
      return {
        annotators: progress.map((p) => ({
          ...p,
          agreement: Object.fromEntries(
            Object.entries(agreement).map(([kind, team]) => [
              kind,
              team.people.find((person) => person.raterId === p.annotatorId) ?? null,
            ]),
          ),
        })),
        agreement,
      };
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/annotation/disagreements',
    access: 'read',
    tag: 'annotation',
    summary:
      "Items whose annotators gave different thumbs or stars, with each annotator's label and the adjudicated one if recorded (`open=true`: only those without).",
    query: z.strictObject({ open: z.enum(['true', 'false']).default('false') }),
    handler: async ({ principal, query }) => {
      const all = await store.annotation.disagreements(principal.projectId);
      return { items: query.open === 'true' ? all.filter((d) => d.adjudication === null) : all };
    },
  });

  routes.add({
    method: 'POST',
    url: '/api/v1/annotation/adjudications',
    access: 'admin',
    tag: 'annotation',
    summary:
      'Records the final label of an item its annotators disagree on (replacing an earlier decision), audited with who decided; 409 when they do not disagree.',
    body: Decision,
    handler: async ({ request, principal, body }) => {
      const { annotator, ...decision } = body;
      return store.annotation.adjudicate(
        principal.projectId,
        decision,
        annotatorOf(request, principal, annotator),
      );
    },
  });
}
