import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ActiveLearningObjective,
  DatasetRef,
  healthBucketFits,
  healthBucketNames,
  healthBuckets,
  healthWindowNames,
  healthWindows,
  RatchetError,
} from '@ratchet/core';
import { annotationPolicies, selectForAnnotation } from '@ratchet/loop';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import { overview } from '../reports/compute.js';
import type { ReportRunner } from '../reports/runner.js';
import type { RouteTable } from '../routing.js';

const HealthQuery = z
  .strictObject({
    window: z.enum(healthWindowNames).default('7d'),
    bucket: z.enum(healthBucketNames).default('hour'),
    route: z.string().min(1).max(200).optional(),
    model: z.string().min(1).max(200).optional(),
    /** The end of the window (epoch ms, default now): a past window, and a stable one for tests. */
    to: z.coerce.number().int().positive().optional(),
  })
  .superRefine((q, ctx) => {
    if (!healthBucketFits(q.window, q.bucket))
      ctx.addIssue({
        code: 'custom',
        path: ['bucket'],
        message: 'hour buckets cover at most 30 days; use day',
      });
  });

interface Computed<T> {
  version: string;
  value: T;
  computedAt: number;
  tookMs: number;
}

/** What a cached report endpoint answers: the report (maybe a little stale) and how it stands. */
export interface CachedReport<T> {
  report: T | null;
  computedAt: number | null;
  /** False while a newer version is being computed in the background. */
  fresh: boolean;
  computing: boolean;
}

/**
 * Reports that take seconds on a large project (error analysis, what changed) are computed in the
 * background (on the report thread, see reports/runner.ts) and kept per project with the data version they were computed from: a page gets
 * the last report at once and a fresh one is computed when the data changed (one at a time per
 * report). Only the very first request waits, and only `waitMs`; after that it says `computing`.
 * A report is not recomputed until it is twice as old as its computation took, so a page watched
 * under steady traffic costs at most a third of a core in the background.
 */
export class ReportCache {
  private readonly entries = new Map<string, Computed<unknown>>();
  private readonly running = new Map<string, Promise<void>>();

  constructor(
    private readonly onError: (err: unknown) => void,
    private readonly waitMs = 800,
  ) {}

  async get<T>(key: string, version: string, compute: () => Promise<T>): Promise<CachedReport<T>> {
    const entry = this.entries.get(key) as Computed<T> | undefined;
    if (entry?.version === version)
      return { report: entry.value, computedAt: entry.computedAt, fresh: true, computing: false };
    if (entry && Date.now() - entry.computedAt < 2 * entry.tookMs)
      return { report: entry.value, computedAt: entry.computedAt, fresh: false, computing: false };
    let run = this.running.get(key);
    if (!run) {
      const started = Date.now();
      run = compute()
        .then((value) => {
          const computedAt = Date.now();
          this.entries.set(key, { version, value, computedAt, tookMs: computedAt - started });
        })
        .catch(this.onError)
        .finally(() => this.running.delete(key));
      this.running.set(key, run);
    }
    if (!entry) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([run, new Promise((resolve) => (timer = setTimeout(resolve, this.waitMs)))]);
      clearTimeout(timer);
    }
    const now = (this.entries.get(key) as Computed<T> | undefined) ?? entry;
    const fresh = now?.version === version;
    return { report: now?.value ?? null, computedAt: now?.computedAt ?? null, fresh, computing: !fresh };
  }
}

/**
 * The dashboard's read endpoints (aggregates in SQL, see DashboardRepository) and the widget's
 * summary. The slow reports are computed by `runner`, on its worker thread.
 */
export function registerDashboardRoutes(
  routes: RouteTable,
  store: Store,
  runner: ReportRunner,
  options: { queueObjectives?: Record<string, ActiveLearningObjective> } = {},
  reports: ReportCache = new ReportCache((err) => console.error('dashboard report failed:', err)),
): void {
  const cached = async <T>(projectId: string, name: string, compute: () => Promise<T>) =>
    reports.get(`${projectId}:${name}`, await store.dashboard.dataVersion(projectId), compute);

  routes.add({
    method: 'GET',
    url: '/api/v1/dashboard/analysis',
    access: 'read',
    tag: 'dashboard',
    summary:
      'Error analysis (themes, worst prompts, criteria breakdowns, agreement) as of the latest data: computed in the background, served from the last computation while a newer one runs.',
    handler: async ({ principal }) =>
      cached(principal.projectId, 'analysis', () => runner.run('analysis', principal.projectId)),
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/dashboard/overview',
    access: 'read',
    tag: 'dashboard',
    summary:
      'Interactions and feedback per day, satisfaction by model with 95% intervals, criteria by model, production models (a report, like /dashboard/analysis).',
    query: z.strictObject({ days: z.coerce.number().int().min(1).max(366).default(30) }),
    handler: async ({ principal, query }) => {
      // The dashboard opens here: have the report thread ready before its reports are asked for.
      runner.warm();
      return cached(principal.projectId, `overview:${query.days}`, () =>
        overview(store, principal.projectId, query.days),
      );
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/dashboard/health',
    access: 'read',
    tag: 'dashboard',
    summary:
      "Each model version's production health over time, per route: per hour or day of the window, calls, error rate, input and output tokens, latency p50/p95 (nearest rank, answered calls) and the thumbs-up share of the calls' current thumbs; each series names the model's registry stage.",
    query: HealthQuery,
    handler: async ({ principal, query }) => {
      const bucketMs = healthBuckets[query.bucket];
      const to = query.to ?? Date.now();
      // Whole buckets from the first one the window touches (UTC hours or days).
      const from = Math.floor((to - healthWindows[query.window]) / bucketMs) * bucketMs;
      const [series, models] = await Promise.all([
        store.dashboard.modelHealth(principal.projectId, {
          from,
          to,
          bucketMs,
          ...(query.route ? { route: query.route } : {}),
          ...(query.model ? { model: query.model } : {}),
        }),
        store.models.list(principal.projectId),
      ]);
      const registered = new Map(models.map((m) => [m.name, m]));
      return {
        window: query.window,
        bucket: query.bucket,
        bucketMs,
        from,
        to,
        items: series.map((s) => {
          const m = registered.get(s.model);
          return { ...s, modelId: m?.id ?? null, stage: m?.stage ?? null };
        }),
      };
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/dashboard/queue',
    access: 'read',
    tag: 'dashboard',
    summary:
      'The annotation queue: the next interactions to rate under a selection policy, each with another answer to the same prompt when there is one (for a pairwise comparison).',
    query: z.strictObject({
      policy: z.string().min(1).max(100).optional(),
      limit: z.coerce.number().int().min(1).max(100).default(20),
      route: z.string().min(1).max(200).optional(),
      raterId: z.string().min(1).max(200).optional(),
      /** For the active-learning policy: `positives` when the ratings feed an sft dataset. */
      objective: ActiveLearningObjective.optional(),
    }),
    handler: async ({ principal, query }) => {
      const { policy, objective, ...request } = query;
      // A route run by a loop policy asks for what its datasets need unless the request says.
      const asked = objective ?? (request.route ? options.queueObjectives?.[request.route] : undefined);
      const chosen = await selectForAnnotation(
        store,
        { projectId: principal.projectId, ...request, ...(asked ? { objective: asked } : {}) },
        policy,
      );
      const items = await Promise.all(
        chosen.items.map(async (c) => ({
          ...c,
          pairWith: (await store.dashboard.siblingAnswer(principal.projectId, c.interactionId)) ?? null,
        })),
      );
      return {
        policy: chosen.policy,
        /** What active learning was asked to serve (the request's, else the route's loop policy's). */
        objective: asked ?? null,
        policies: annotationPolicies().map((p) => ({ name: p.name, description: p.description })),
        items,
      };
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/dashboard/what-changed',
    access: 'read',
    tag: 'dashboard',
    summary:
      'Per registered model: the dataset and feedback it learned from (lineage), complaint themes against the model before it on the route, its stage history.',
    handler: async ({ principal }) =>
      cached(principal.projectId, 'what-changed', () => runner.run('what-changed', principal.projectId)),
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/dashboard/datasets/:ref/export',
    access: 'read',
    tag: 'dashboard',
    summary: "Download a dataset version's rows (TRL JSON lines) as a file.",
    params: z.strictObject({ ref: DatasetRef }),
    handler: async ({ principal, params, reply }) => {
      const v = await store.datasets.get(principal.projectId, params.ref);
      if (!v) throw new RatchetError('not_found', `dataset "${params.ref}" not found`, 'ref');
      const path = join(v.path, 'rows.jsonl');
      const size = (await stat(path)).size;
      reply
        .header('content-type', 'application/x-ndjson')
        .header('content-length', size)
        .header('content-disposition', `attachment; filename="${v.name}-v${v.version}.jsonl"`);
      return reply.send(createReadStream(path));
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/widget/summary',
    access: ['read', 'public'],
    tag: 'widget',
    summary:
      "For the feedback widget (public key): how many ratings went into the route's current production model. Only this aggregate.",
    query: z.strictObject({ route: z.string().min(1).max(200) }),
    handler: async ({ principal, query }) => {
      const [current] = await store.models.list(principal.projectId, {
        route: query.route,
        stage: 'production',
      });
      const learned = current?.datasetId
        ? await store.dashboard.learnedFrom(principal.projectId, current.datasetId)
        : undefined;
      const ratings = learned ? Object.values(learned.feedbackByKind).reduce((a, b) => a + b, 0) : 0;
      return { route: query.route, ratingsInCurrentModel: ratings, since: current?.updatedAt ?? null };
    },
  });
}
