import { ClientId, RatchetError } from '@ratchet/core';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import type { RouteTable } from '../routing.js';

/** How much of each payload a page shows. */
const PREVIEW_CHARS = 2000;

const DeadLetter = z.object({
  id: z.string(),
  interactionId: z.string(),
  source: z.string(),
  reason: z.enum(['nul_character', 'lone_surrogate', 'too_deep', 'write_failed']),
  error: z.string(),
  payload: z
    .string()
    .describe('The interaction as it arrived, as JSON text (NUL and lone surrogates escaped)'),
  payloadTruncated: z.boolean(),
  repaired: z.boolean().describe('Whether a repaired copy was stored under interactionId'),
  createdAt: z.number(),
});

const DeadLetterPage = z.object({
  items: z.array(DeadLetter),
  nextCursor: z.string().nullable(),
  countsByReason: z.record(z.string(), z.number()),
});

export function registerDeadLetterRoutes(routes: RouteTable, store: Store): void {
  routes.add({
    method: 'GET',
    url: '/api/v1/dead-letters',
    access: 'read',
    tag: 'capture',
    summary:
      'Gateway interactions that could not be stored as they arrived (the storable rule, or the database refused them), newest first, with counts by reason.',
    query: z.strictObject({
      limit: z.coerce.number().int().min(1).max(100).default(20),
      cursor: z.string().max(500).optional(),
    }),
    response: {
      status: 200,
      schema: DeadLetterPage,
      description: `A page of dead letters; each payload cut to ${PREVIEW_CHARS} characters (GET /api/v1/dead-letters/:id has it whole)`,
    },
    handler: async ({ query, principal }) => {
      const [page, countsByReason] = await Promise.all([
        store.deadLetters.list(principal.projectId, { ...query, payloadChars: PREVIEW_CHARS }),
        store.deadLetters.countByReason(principal.projectId),
      ]);
      return {
        items: page.items.map(({ projectId: _, ...d }) => d),
        nextCursor: page.nextCursor,
        countsByReason,
      };
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/dead-letters/:id',
    access: 'read',
    tag: 'capture',
    summary: 'One dead letter with its whole payload (as stored: up to 1,000,000 characters).',
    params: z.strictObject({ id: ClientId }),
    response: { status: 200, schema: DeadLetter, description: 'The dead letter' },
    handler: async ({ params, principal }) => {
      const found = await store.deadLetters.get(principal.projectId, params.id);
      if (!found)
        throw new RatchetError('not_found', `id: no dead letter "${params.id}" in this project`, 'id');
      const { projectId: _, ...d } = found;
      return d;
    },
  });
}
