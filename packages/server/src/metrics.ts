import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The server's Prometheus metrics, one registry per server so tests can run several. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'ratchet_' });
  const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
  return {
    registry,
    httpRequests: new Counter({
      name: 'ratchet_http_requests_total',
      help: 'HTTP requests by route and status (499: the client closed the connection before the answer was complete)',
      labelNames: ['route', 'method', 'status'] as const,
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'ratchet_http_request_duration_seconds',
      help: 'Time to respond, by route',
      labelNames: ['route', 'method'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    interactionsWritten: new Counter({
      name: 'ratchet_interactions_written_total',
      help: 'Interactions committed to the store, by source',
      labelNames: ['source'] as const,
      registers: [registry],
    }),
    feedbackWritten: new Counter({
      name: 'ratchet_feedback_written_total',
      help: 'Feedback events committed to the store, by kind',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    upstreamDuration: new Histogram({
      name: 'ratchet_gateway_upstream_duration_seconds',
      help: 'Upstream time to the response head (non-streaming: whole response), by upstream',
      labelNames: ['upstream', 'status'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    logQueueDepth: new Gauge({
      name: 'ratchet_gateway_log_queue_depth',
      help: 'Gateway interactions buffered but not yet written',
      registers: [registry],
    }),
    logWriteFailures: new Counter({
      name: 'ratchet_gateway_log_write_failures_total',
      help: 'Writes of buffered gateway interactions that failed because the database did (retried with backoff)',
      registers: [registry],
    }),
    deadLetters: new Counter({
      name: 'ratchet_gateway_dead_letters_total',
      help: 'Gateway interactions recorded as dead letters, by reason (a storable-rule break, with a repaired copy stored, or write_failed)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    logDropped: new Counter({
      name: 'ratchet_gateway_log_dropped_total',
      help: 'Gateway interactions never written, by reason (buffer_full: the oldest dropped; shutdown: database unreachable at close; unstorable: not even as a dead letter)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    upstreamFailures: new Counter({
      name: 'ratchet_gateway_upstream_failures_total',
      help: 'Tries of an upstream that failed or were skipped, by upstream and reason (connection, timeout, 429, 5xx, circuit_open, budget); failover moved on after each',
      labelNames: ['upstream', 'reason'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
