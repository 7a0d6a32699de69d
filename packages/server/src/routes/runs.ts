import { RatchetError, TrainRequest } from '@ratchet/core';
import { TrainingService } from '@ratchet/loop';
import type { Run, RunStatus, Store } from '@ratchet/store';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { RouteTable } from '../routing.js';

const runStatuses = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const satisfies RunStatus[];
const RunRef = z.strictObject({ id: z.string().min(1).max(100) });

/** A run without its job spec and metric series: what a list shows. */
function summary(run: Run) {
  const { spec: _spec, metrics, ...rest } = run;
  return { ...rest, metricNames: Object.keys(metrics) };
}

/**
 * Training runs over HTTP. On SQLite the server is also the worker: queued runs execute in this
 * process, one at a time, and runs orphaned by a crash resume when it starts. On PostgreSQL it
 * only enqueues (pg-boss); `ratchet worker` processes, possibly on GPU machines, train.
 */
export function registerRunRoutes(
  routes: RouteTable,
  app: FastifyInstance,
  store: Store,
  dataDir: string | undefined,
): void {
  const training = new TrainingService(store, { dataDir, actor: 'server' });
  if (store.dialect === 'sqlite') app.addHook('onReady', async () => training.work());
  app.addHook('onClose', async () => training.stop());

  routes.add({
    method: 'POST',
    url: '/api/v1/runs',
    access: 'admin',
    tag: 'training',
    summary:
      'Train a model on a dataset version (queued; on success the adapter is registered as a candidate model).',
    body: TrainRequest,
    response: { status: 201, description: 'The queued run' },
    handler: async ({ principal, body }) => training.submit(principal.projectId, body),
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/runs',
    access: 'read',
    tag: 'training',
    summary:
      'Training runs, newest first, with their latest progress (filter by status); `nextCursor` gives the next page.',
    query: z.strictObject({
      status: z.enum(runStatuses).optional(),
      limit: z.coerce.number().int().min(1).max(500).default(50),
      cursor: z.string().max(500).optional(),
    }),
    handler: async ({ principal, query }) => {
      const page = await store.runs.page(principal.projectId, query);
      return { items: page.items.map(summary), nextCursor: page.nextCursor };
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/runs/:id',
    access: 'read',
    tag: 'training',
    summary:
      'One run: status, progress (step, total, loss, ETA), metric series ({name: [[step, value], ...]}), artifacts.',
    params: RunRef,
    handler: async ({ principal, params }) => {
      const run = await store.runs.get(params.id, principal.projectId);
      if (!run) throw new RatchetError('not_found', `run "${params.id}" not found`, 'id');
      return run;
    },
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/runs/:id/cancel',
    access: 'admin',
    tag: 'training',
    summary:
      'Cancel a run: a queued run at once, a running one as soon as the process training it sees the request.',
    params: RunRef,
    handler: async ({ principal, params }) =>
      summary(await store.runs.requestCancel(params.id, principal.projectId)),
  });
}
