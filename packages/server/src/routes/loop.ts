import { RatchetError } from '@ratchet/core';
import type { LoopRound, Store } from '@ratchet/store';
import { z } from 'zod';
import type { RouteTable } from '../routing.js';

const RoundRef = z.strictObject({ id: z.string().min(1).max(200) });

/**
 * The loop's rounds, and a person's answer to a round awaiting approval (`promotion.auto: false`).
 * Answering only records it: the loop's next pass (in `ratchet serve --loop-policy`, woken at
 * once through `onReviewed`, or `ratchet loop run`) promotes or keeps production.
 */
export function registerLoopRoutes(
  routes: RouteTable,
  store: Store,
  onReviewed: (round: LoopRound) => void = () => {},
): void {
  routes.add({
    method: 'GET',
    url: '/api/v1/loop/rounds',
    access: 'read',
    tag: 'loop',
    summary:
      "The loop's rounds, newest first (filter by route); a round awaiting approval says so in its status.",
    query: z.strictObject({
      route: z.string().min(1).max(200).optional(),
      limit: z.coerce.number().int().min(1).max(500).default(50),
    }),
    handler: async ({ principal, query }) => ({ items: await store.loops.list(principal.projectId, query) }),
  });

  const review =
    (approved: boolean) =>
    async (ctx: {
      principal: { projectId: string; actor: string };
      params: { id: string };
      body: { reason?: string | undefined };
    }) => {
      const round = await store.loops.get(ctx.principal.projectId, ctx.params.id);
      if (!round) throw new RatchetError('not_found', `loop round "${ctx.params.id}" not found`, 'id');
      const answered = await store.loops.review(ctx.principal.projectId, round.id, {
        approved,
        actor: ctx.principal.actor,
        reason: ctx.body.reason,
      });
      onReviewed(answered);
      return answered;
    };
  routes.add({
    method: 'POST',
    url: '/api/v1/loop/rounds/:id/approve',
    access: 'admin',
    tag: 'loop',
    summary: "Approve a round awaiting approval: the loop's next pass promotes its candidate.",
    params: RoundRef,
    body: z.strictObject({ reason: z.string().trim().min(1).max(2000).optional() }),
    handler: review(true),
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/loop/rounds/:id/reject',
    access: 'admin',
    tag: 'loop',
    summary:
      'Reject a round awaiting approval (a reason is required): production stays, the candidate is archived.',
    params: RoundRef,
    body: z.strictObject({ reason: z.string().trim().min(1).max(2000) }),
    handler: review(false),
  });
}
