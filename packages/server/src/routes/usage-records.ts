import type { Store } from '@ratchet/store';
import { z } from 'zod';
import type { RouteTable } from '../routing.js';

const UsageRecord = z.object({
  id: z.string(),
  kind: z.enum(['embeddings']),
  route: z.string().optional(),
  variant: z.string().optional(),
  model: z.string().describe('The model the upstream was asked for'),
  upstream: z.string(),
  userId: z.string().optional(),
  inputs: z.number().describe('How many inputs the call embedded'),
  inputTokens: z.number().optional(),
  totalTokens: z.number().optional(),
  latencyMs: z.number(),
  status: z.enum(['ok', 'error', 'aborted']),
  error: z.string().optional(),
  createdAt: z.number(),
});

const UsagePage = z.object({
  items: z.array(UsageRecord),
  nextCursor: z.string().nullable(),
  totals: z.array(
    z.object({ kind: z.string(), model: z.string(), calls: z.number(), inputTokens: z.number() }),
  ),
});

export function registerUsageRecordRoutes(routes: RouteTable, store: Store): void {
  routes.add({
    method: 'GET',
    url: '/api/v1/usage-records',
    access: 'read',
    tag: 'gateway',
    summary:
      'Gateway calls recorded as usage only (embeddings), newest first, with calls and tokens by kind and model. They are not interactions: never rated, queued for annotation or trained on.',
    query: z.strictObject({
      limit: z.coerce.number().int().min(1).max(100).default(20),
      cursor: z.string().max(500).optional(),
      kind: z.enum(['embeddings']).optional(),
    }),
    response: { status: 200, schema: UsagePage, description: 'A page of usage records and the totals' },
    handler: async ({ query, principal }) => {
      const [page, totals] = await Promise.all([
        store.usage.list(principal.projectId, query),
        store.usage.totals(principal.projectId),
      ]);
      return { items: page.items.map(({ projectId: _, ...r }) => r), nextCursor: page.nextCursor, totals };
    },
  });
}
