import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { betaQuantile, findThemes, RatchetError } from '@ratchet/core';
import { analyzeProject, annotationPolicies, selectForAnnotation } from '@ratchet/loop';
import type { Model, ModelSatisfactionRow, Store } from '@ratchet/store';
import { z } from 'zod';
import type { RouteTable } from '../routing.js';

const DAY_MS = 86_400_000;

/** Thumbs-up share with a 95% interval (Jeffreys prior), and the stars mean with a normal interval. */
function satisfaction(row: ModelSatisfactionRow) {
  const thumbs = row.up + row.down;
  const a = row.up + 0.5;
  const b = row.down + 0.5;
  const starsMean = row.starsN ? row.starsSum / row.starsN : null;
  const starsVar =
    row.starsN > 1 && starsMean !== null
      ? Math.max(0, (row.starsSumSq - row.starsN * starsMean * starsMean) / (row.starsN - 1))
      : null;
  const starsHalf = starsVar === null ? null : 1.96 * Math.sqrt(starsVar / row.starsN);
  return {
    model: row.model,
    thumbs,
    up: row.up,
    down: row.down,
    upShare: thumbs ? row.up / thumbs : null,
    upLower: thumbs ? betaQuantile(0.025, a, b) : null,
    upUpper: thumbs ? betaQuantile(0.975, a, b) : null,
    stars: row.starsN,
    starsMean,
    starsLower: starsMean !== null && starsHalf !== null ? starsMean - starsHalf : null,
    starsUpper: starsMean !== null && starsHalf !== null ? starsMean + starsHalf : null,
  };
}

async function overview(store: Store, projectId: string, days: number) {
  const from = Math.floor(Date.now() / DAY_MS) * DAY_MS - (days - 1) * DAY_MS;
  const [activity, byModel, criteria, production] = await Promise.all([
    store.dashboard.activity(projectId, from, DAY_MS),
    store.dashboard.satisfactionByModel(projectId),
    store.analysis.criteriaBreakdown(projectId, 'model'),
    store.models.list(projectId, { stage: 'production' }),
  ]);
  return { from, bucketMs: DAY_MS, activity, satisfaction: byModel.map(satisfaction), criteria, production };
}

/**
 * Release notes per registered model: the ratings and corrections its dataset carried (lineage),
 * and how often each complaint theme came up on its answers compared with the model it followed
 * on the same route.
 */
async function whatChanged(store: Store, projectId: string) {
  const models = (await store.models.list(projectId, {})).sort((x, y) => x.createdAt - y.createdAt);
  const texts = await store.analysis.negativeFeedbackTexts(projectId, 2000);
  const themes = findThemes(texts.map((t) => ({ id: t.feedbackId, text: t.text })));
  const modelOf = await store.dashboard.feedbackModels(
    projectId,
    themes.flatMap((t) => t.ids),
  );
  const rated = await store.dashboard.ratedInteractionsByModel(projectId);
  const themeRate = (theme: (typeof themes)[number], model: string) => {
    const n = rated.get(model) ?? 0;
    const hits = theme.ids.filter((id) => modelOf.get(id) === model).length;
    return n ? hits / n : null;
  };
  const previousOnRoute = (m: Model, i: number) =>
    models
      .slice(0, i)
      .reverse()
      .find((p) => p.route === m.route);
  return Promise.all(
    models.map(async (m, i) => {
      const previous = previousOnRoute(m, i);
      const dataset = m.datasetId ? await store.datasets.get(projectId, m.datasetId) : undefined;
      const history = await store.audit.list(projectId, { subjectType: 'model', subjectId: m.id });
      return {
        model: { id: m.id, name: m.name, route: m.route, stage: m.stage, createdAt: m.createdAt },
        previous: previous ? { id: previous.id, name: previous.name } : null,
        dataset: dataset
          ? { id: dataset.id, name: dataset.name, version: dataset.version, method: dataset.method }
          : null,
        learnedFrom: dataset ? await store.dashboard.learnedFrom(projectId, dataset.id) : null,
        themes: themes.map((t) => ({
          label: t.label,
          rate: themeRate(t, m.name),
          previousRate: previous ? themeRate(t, previous.name) : null,
        })),
        history,
      };
    }),
  );
}

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
 * background and kept per project with the data version they were computed from: a page gets
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

/** The dashboard's read endpoints (aggregates in SQL, see DashboardRepository) and the widget's summary. */
export function registerDashboardRoutes(
  routes: RouteTable,
  store: Store,
  reports: ReportCache = new ReportCache((err) => console.error('dashboard report failed:', err)),
): void {
  const cached = async <T>(projectId: string, name: string, compute: () => Promise<T>) =>
    reports.get(`${projectId}:${name}`, await store.dashboard.dataVersion(projectId), compute);

  routes.add({
    method: 'GET',
    url: '/api/v1/dashboard/analysis',
    access: 'secret',
    tag: 'dashboard',
    summary:
      'Error analysis (themes, worst prompts, criteria breakdowns, agreement) as of the latest data: computed in the background, served from the last computation while a newer one runs.',
    handler: async ({ principal }) =>
      cached(principal.projectId, 'analysis', async () => {
        const report = await analyzeProject(store, principal.projectId);
        // Each theme's member ids (thousands on a large project) are for joins, not for the page.
        return { ...report, themes: report.themes.map(({ ids: _ids, ...theme }) => theme) };
      }),
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/dashboard/overview',
    access: 'secret',
    tag: 'dashboard',
    summary:
      'Interactions and feedback per day, satisfaction by model with 95% intervals, criteria by model, production models (a report, like /dashboard/analysis).',
    query: z.strictObject({ days: z.coerce.number().int().min(1).max(366).default(30) }),
    handler: async ({ principal, query }) =>
      cached(principal.projectId, `overview:${query.days}`, () =>
        overview(store, principal.projectId, query.days),
      ),
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/dashboard/queue',
    access: 'secret',
    tag: 'dashboard',
    summary:
      'The annotation queue: the next interactions to rate under a selection policy, each with another answer to the same prompt when there is one (for a pairwise comparison).',
    query: z.strictObject({
      policy: z.string().min(1).max(100).optional(),
      limit: z.coerce.number().int().min(1).max(100).default(20),
      route: z.string().min(1).max(200).optional(),
      raterId: z.string().min(1).max(200).optional(),
    }),
    handler: async ({ principal, query }) => {
      const { policy, ...request } = query;
      const chosen = await selectForAnnotation(store, { projectId: principal.projectId, ...request }, policy);
      const items = await Promise.all(
        chosen.items.map(async (c) => ({
          ...c,
          pairWith: (await store.dashboard.siblingAnswer(principal.projectId, c.interactionId)) ?? null,
        })),
      );
      return {
        policy: chosen.policy,
        policies: annotationPolicies().map((p) => ({ name: p.name, description: p.description })),
        items,
      };
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/dashboard/what-changed',
    access: 'secret',
    tag: 'dashboard',
    summary:
      'Per registered model: the dataset and feedback it learned from (lineage), complaint themes against the model before it on the route, its stage history.',
    handler: async ({ principal }) =>
      cached(principal.projectId, 'what-changed', async () => ({
        items: await whatChanged(store, principal.projectId),
      })),
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/dashboard/datasets/:ref/export',
    access: 'secret',
    tag: 'dashboard',
    summary: "Download a dataset version's rows (TRL JSON lines) as a file.",
    params: z.strictObject({ ref: z.string().min(1).max(200) }),
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
    access: 'public',
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
