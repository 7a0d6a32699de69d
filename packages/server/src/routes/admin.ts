import { ScoreConfigInput } from '@ratchet/core';
import type { Store } from '@ratchet/store';
import type { RouteTable } from '../routing.js';

export function registerAdminRoutes(routes: RouteTable, store: Store): void {
  routes.add({
    method: 'GET',
    url: '/api/v1/score-configs',
    access: 'secret',
    tag: 'admin',
    summary: "The project's rating scales and criteria.",
    handler: async ({ principal }) => ({ items: await store.scoreConfigs.list(principal.projectId) }),
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/score-configs',
    access: 'secret',
    tag: 'admin',
    summary: 'Add or replace a rating scale (stars) or criterion.',
    body: ScoreConfigInput,
    response: { status: 201, description: 'Stored' },
    handler: async ({ body, principal }) => store.scoreConfigs.upsert(principal.projectId, body),
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/raters',
    access: 'secret',
    tag: 'admin',
    summary: 'Raters with their feedback counts and calibration state.',
    handler: async ({ principal }) => ({
      items: await store.raters.list(principal.projectId, { limit: 1000 }),
    }),
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/project',
    access: 'secret',
    tag: 'admin',
    summary: 'The project a key belongs to, and the kind of key.',
    handler: async ({ principal }) => {
      const project = await store.projects.get(principal.projectId);
      return { project, keyKind: principal.kind };
    },
  });
}
