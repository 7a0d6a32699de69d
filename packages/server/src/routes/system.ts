import type { Store } from '@ratchet/store';
import { sql } from 'kysely';
import type { Metrics } from '../metrics.js';
import { openApiDocument, type RouteTable } from '../routing.js';

export function registerSystemRoutes(
  routes: RouteTable,
  store: Store,
  metrics: Metrics,
  version: string,
  options: { metricsRequireKey: boolean; shuttingDown?: () => boolean } = { metricsRequireKey: false },
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
    url: '/readyz',
    access: 'none',
    tag: 'system',
    summary:
      'Readiness for traffic: 503 with the reasons when not ready (shutting down, database unreachable, migrations pending).',
    handler: async ({ reply }) => {
      const reasons = await notReadyBecause(store, options.shuttingDown);
      if (reasons.length === 0) return { status: 'ready', database: store.dialect, version };
      reply.status(503);
      return { status: 'not_ready', database: store.dialect, version, reasons };
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

/**
 * Why a load balancer should send this server nothing now, each reason a sentence: it is
 * draining for shutdown, its database does not answer, or the database lacks migrations this
 * server's code expects (its queries would fail).
 */
async function notReadyBecause(store: Store, shuttingDown?: () => boolean): Promise<string[]> {
  const reasons: string[] = [];
  if (shuttingDown?.()) reasons.push('shutting down: finishing the requests under way');
  try {
    await sql`select 1`.execute(store.db);
  } catch (err) {
    reasons.push(`database unreachable: ${err instanceof Error ? err.message : String(err)}`);
    return reasons;
  }
  const pending = await store.pendingMigrations();
  if (pending.length > 0) reasons.push(`migrations pending: ${pending.join(', ')}`);
  return reasons;
}
