import { ClientId, RatchetError, RetentionPolicy } from '@ratchet/core';
import { applyRetention, deleteData } from '@ratchet/loop';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import type { RouteTable } from '../routing.js';

/** The same bounds as an interaction's `userId`, so every stored end user can be named. */
const EndUserId = z.string().min(1).max(200);

/**
 * Deleting people's data (an end user's, or interactions) and the project's retention policy.
 * Admin scope: a deletion cannot be undone. Every deletion is audited with counts only.
 */
export function registerPrivacyRoutes(routes: RouteTable, store: Store): void {
  routes.add({
    method: 'DELETE',
    url: '/api/v1/end-users/:userId',
    access: 'admin',
    tag: 'privacy',
    summary:
      "Delete an end user's data: their interactions, feedback about them and by them, their rater row, usage records and dead letters; dataset files lose the rows made of them; the versions and the models trained on them are marked. Audited with counts, never content.",
    params: z.strictObject({ userId: EndUserId }),
    handler: async ({ params, principal }) =>
      deleteData(store, principal.projectId, { kind: 'end_user', userId: params.userId }, principal.actor),
  });
  routes.add({
    method: 'DELETE',
    url: '/api/v1/interactions/:id',
    access: 'admin',
    tag: 'privacy',
    summary:
      'Delete an interaction with its feedback, everywhere it is kept (as for an end user); audited with counts, never content.',
    params: z.strictObject({ id: ClientId }),
    handler: async ({ params, principal }) => {
      // The store names a missing id by its place in a list (ids.0); this route's field is `id`.
      if (!(await store.interactions.get(principal.projectId, params.id)))
        throw new RatchetError('not_found', `id: interaction "${params.id}" not found`, 'id');
      return deleteData(
        store,
        principal.projectId,
        { kind: 'interactions', ids: [params.id] },
        principal.actor,
      );
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/retention',
    access: 'read',
    tag: 'privacy',
    summary: "The project's retention policy (null: interactions are kept).",
    handler: async ({ principal }) => ({
      policy: (await store.projects.retention(principal.projectId)) ?? null,
    }),
  });
  routes.add({
    method: 'PUT',
    url: '/api/v1/retention',
    access: 'admin',
    tag: 'privacy',
    summary:
      'Set the retention policy: interactions older than days are deleted on the server schedule, except (keepProductionTrainingData, default true) those a production model was trained on.',
    body: RetentionPolicy,
    handler: async ({ body, principal }) => {
      await store.projects.setRetention(principal.projectId, body, principal.actor);
      return { policy: body };
    },
  });
  routes.add({
    method: 'DELETE',
    url: '/api/v1/retention',
    access: 'admin',
    tag: 'privacy',
    summary: 'Remove the retention policy: interactions are kept.',
    handler: async ({ principal }) => {
      await store.projects.setRetention(principal.projectId, null, principal.actor);
      return { policy: null };
    },
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/retention/run',
    access: 'admin',
    tag: 'privacy',
    summary:
      'Apply the retention policy now (the server also applies it on its schedule); 409 without a policy.',
    handler: async ({ principal }) => {
      const report = await applyRetention(store, principal.projectId, { actor: principal.actor });
      if (!report)
        throw new RatchetError(
          'conflict',
          'retention: the project has no retention policy (PUT /api/v1/retention)',
          'retention',
        );
      return report;
    },
  });
}
