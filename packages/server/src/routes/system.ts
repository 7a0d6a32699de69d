import type { Store } from '@ratchet/store';
import { sql } from 'kysely';
import type { Metrics } from '../metrics.js';
import { openApiDocument, type RouteTable } from '../routing.js';

export function registerSystemRoutes(
  routes: RouteTable,
  store: Store,
  metrics: Metrics,
  version: string,
  options: { metricsRequireKey: boolean } = { metricsRequireKey: false },
): void {
  routes.add({
    method: 'GET',
    url: '/healthz',
    access: 'none',
    tag: 'system',
    summary: 'Liveness and database reachability.',
    handler: async ({ reply }) => {
      try {
        await sql`select 1`.execute(store.db);
        return { status: 'ok', database: store.dialect, version };
      } catch (err) {
        reply.status(503);
        return {
          status: 'unavailable',
          database: store.dialect,
          error: err instanceof Error ? err.message : String(err),
        };
      }
    },
  });
  routes.add({
    method: 'GET',
    url: '/metrics',
    // Server-wide counters, so any project's read key will do when a key is required.
    access: options.metricsRequireKey ? 'read' : 'none',
    tag: 'system',
    summary: 'Prometheus metrics (with RATCHET_METRICS_REQUIRE_KEY, a key with the read scope).',
    handler: async ({ reply }) => {
      reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    },
  });
  routes.add({
    method: 'GET',
    url: '/openapi.json',
    access: 'none',
    tag: 'system',
    summary: 'This OpenAPI document.',
    handler: async () => openApiDocument(routes, version),
  });
}
