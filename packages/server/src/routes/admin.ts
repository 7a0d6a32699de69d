import { ApiKeyScopes, ScoreConfigInput } from '@ratchet/core';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import type { RouteTable } from '../routing.js';

const KeyCreate = z.strictObject({
  scopes: ApiKeyScopes,
  name: z.string().min(1).max(200).optional(),
});

export function registerAdminRoutes(routes: RouteTable, store: Store): void {
  routes.add({
    method: 'GET',
    url: '/api/v1/score-configs',
    access: 'read',
    tag: 'admin',
    summary: "The project's rating scales and criteria.",
    handler: async ({ principal }) => ({ items: await store.scoreConfigs.list(principal.projectId) }),
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/score-configs',
    access: 'admin',
    tag: 'admin',
    summary: 'Add or replace a rating scale (stars) or criterion.',
    body: ScoreConfigInput,
    response: { status: 201, description: 'Stored' },
    handler: async ({ body, principal }) => store.scoreConfigs.upsert(principal.projectId, body),
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/raters',
    access: 'read',
    tag: 'admin',
    summary:
      'Raters with their feedback counts and calibration state, most feedback first; `nextCursor` gives the next page.',
    query: z.strictObject({
      limit: z.coerce.number().int().min(1).max(1000).default(1000),
      cursor: z.string().max(500).optional(),
    }),
    handler: async ({ principal, query }) => store.raters.page(principal.projectId, query),
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/project',
    access: ['read', 'ingest', 'admin'],
    tag: 'admin',
    summary:
      'The project a key belongs to, the kind of key and its scopes (for a signed-in person, also who they are and their role).',
    handler: async ({ principal }) => {
      const project = await store.projects.get(principal.projectId);
      const person = principal.user ? { user: principal.user } : {};
      return { project, keyKind: principal.kind, scopes: principal.scopes, ...person };
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/keys',
    access: 'admin',
    tag: 'admin',
    summary: "The project's keys: id, prefix, scopes, name, created and revoked (never the key).",
    handler: async ({ principal }) => ({ items: await store.projects.listKeys(principal.projectId) }),
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/keys',
    access: 'admin',
    tag: 'admin',
    summary: 'Create a key with scopes (ingest, public, read, admin); the answer holds the key, shown once.',
    body: KeyCreate,
    response: { status: 201, description: 'Created' },
    handler: async ({ body, principal }) =>
      store.projects.createKey(principal.projectId, body.scopes, body.name, principal.actor),
  });
  routes.add({
    method: 'DELETE',
    url: '/api/v1/keys/:id',
    access: 'admin',
    tag: 'admin',
    summary: 'Revoke a key; every server on the database refuses it from the next request.',
    params: z.strictObject({ id: z.string().min(1).max(100) }),
    handler: async ({ params, principal }) => {
      await store.projects.revokeKey(principal.projectId, params.id, principal.actor);
      return { id: params.id, revoked: true };
    },
  });
}
