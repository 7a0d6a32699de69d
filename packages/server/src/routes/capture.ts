import {
  ClientId,
  FeedbackInput,
  InteractionFilters,
  InteractionInput,
  Limit,
  parseInput,
  RatchetError,
  ratingRoles,
} from '@ratchet/core';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import type { CaptureService } from '../capture.js';
import type { RouteTable } from '../routing.js';
import { personRaterId } from './accounts.js';

const MAX_BATCH = 1000;

const WriteResult = z.object({ id: z.string(), created: z.boolean() });
const BatchResult = z.object({ items: z.array(WriteResult) });
/** An interaction's result carries the token its end user's browser rates it with. */
const InteractionResult = WriteResult.extend({
  feedbackToken: z.string().describe('Send with public-key feedback on this interaction'),
});
const InteractionBatchResult = z.object({ items: z.array(InteractionResult) });

/** A body is one item, or `{ "items": [...] }` for a batch that is written all or nothing. */
function oneOrBatch<T extends z.ZodType>(item: T) {
  return z.union([z.strictObject({ items: z.array(item).min(1).max(MAX_BATCH) }), item]);
}

/**
 * Parses a single item or a batch so errors name the exact field: `model` for a single item,
 * `items.3.model` inside a batch. (A plain union would report the first branch's errors.)
 */
/** A signed-in person rates as themselves: each item's rater is their rater id (none names theirs). */
function refuseOthersRatings(items: { raterId?: string }[], userId: string, batch: boolean): void {
  const own = personRaterId(userId);
  items.forEach((item, i) => {
    if (item.raterId !== undefined && item.raterId !== own) {
      const path = batch ? `items.${i}.raterId` : 'raterId';
      throw new RatchetError(
        'forbidden',
        `${path}: a signed-in person rates as ${own}, not "${item.raterId}"`,
        path,
      );
    }
    item.raterId = own;
  });
}

function parseOneOrBatch<T extends z.ZodType>(
  schema: T,
  body: unknown,
): { items: z.output<T>[]; batch: boolean } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new RatchetError(
      'invalid_request',
      'body: must be a JSON object (one item, or { "items": [...] })',
      'body',
    );
  }
  if ('items' in body) {
    const { items } = parseInput(z.strictObject({ items: z.array(schema).min(1).max(MAX_BATCH) }), body);
    return { items, batch: true };
  }
  return { items: [parseInput(schema, body)], batch: false };
}

/**
 * Each written interaction's result with its feedback token, signed for the end user as stored
 * (a repeat keeps the end user it was first logged with, whatever this request says).
 */
async function withFeedbackTokens(
  store: Store,
  capture: CaptureService,
  projectId: string,
  results: readonly { id: string; created: boolean }[],
) {
  const endUsers = await store.interactions.existing(
    projectId,
    results.map((r) => r.id),
  );
  return Promise.all(
    results.map(async (r) => ({
      ...r,
      feedbackToken: await capture.tokens.issue(projectId, r.id, endUsers.get(r.id) ?? null),
    })),
  );
}

export function registerCaptureRoutes(routes: RouteTable, store: Store, capture: CaptureService): void {
  routes.add({
    method: 'POST',
    url: '/api/v1/interactions',
    access: 'ingest',
    tag: 'capture',
    summary:
      'Log one interaction, or a batch as { items: [...] } (all or nothing). A client id makes it idempotent.',
    bodyDoc: oneOrBatch(InteractionInput),
    response: {
      status: 201,
      schema: z.union([InteractionResult, InteractionBatchResult]),
      description: 'Committed',
      also: [{ status: 200, description: 'An idempotent repeat: nothing new written (created=false)' }],
    },
    handler: async ({ request, principal, reply }) => {
      const { items, batch } = parseOneOrBatch(InteractionInput, request.body);
      const written = await capture.writeInteractions(principal.projectId, items);
      const results = await withFeedbackTokens(store, capture, principal.projectId, written);
      reply.status(results.some((r) => r.created) ? 201 : 200);
      return batch ? { items: results } : results[0];
    },
  });

  routes.add({
    method: 'POST',
    url: '/api/v1/feedback',
    access: ['ingest', 'public'],
    // Annotators rate (their own ratings: see below); viewers may not write.
    roles: ratingRoles,
    tag: 'capture',
    summary:
      "Send one feedback event, or a batch as { items: [...] } (all or nothing). A public key needs each item's feedbackToken and rates as the interaction's end user (source user, server time).",
    bodyDoc: oneOrBatch(FeedbackInput),
    response: {
      status: 201,
      schema: z.union([WriteResult, BatchResult]),
      description: 'Committed',
      also: [{ status: 200, description: 'A repeated idempotency key: nothing new written (created=false)' }],
    },
    handler: async ({ request, principal, reply }) => {
      const { items, batch } = parseOneOrBatch(FeedbackInput, request.body);
      if (principal.user) refuseOthersRatings(items, principal.user.id, batch);
      const results = await capture.writeFeedback(
        principal.projectId,
        items,
        batch ? (i) => `items.${i}` : () => '',
        // Without `ingest`, a key reaches this route by `public`: feedback tokens only. A person
        // reaches it by role, rating as themselves.
        principal.user || principal.scopes.includes('ingest') ? 'secret' : 'public',
      );
      reply.status(results.some((r) => r.created) ? 201 : 200);
      return batch ? { items: results } : results[0];
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/interactions',
    access: 'read',
    tag: 'capture',
    summary: 'List interactions, newest first, with filters and cursor pagination.',
    query: InteractionFilters.extend({ limit: Limit.default(50), cursor: z.string().max(500).optional() }),
    handler: async ({ query, principal }) => {
      const { limit, cursor, ...filters } = query;
      return store.interactions.list(principal.projectId, filters, { limit, cursor });
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/interactions/:id',
    access: 'read',
    tag: 'capture',
    summary:
      'One interaction with its feedback history (each event marked current or not), calibrated reward and dataset membership.',
    params: z.strictObject({ id: ClientId }),
    handler: async ({ params, principal }) => {
      const interaction = await store.interactions.get(principal.projectId, params.id);
      if (!interaction) throw new RatchetError('not_found', `interaction "${params.id}" not found`, 'id');
      const [feedback, reward, datasets] = await Promise.all([
        store.feedback.listForInteraction(principal.projectId, params.id),
        store.calibration.rewardOf(principal.projectId, params.id),
        store.datasets.membershipOf(principal.projectId, params.id),
      ]);
      return { ...interaction, feedback, reward: reward ?? null, datasets };
    },
  });
}
