import { betaQuantile, findThemes } from '@ratchet/core';
import { analyzeProject } from '@ratchet/loop';
import type { Model, ModelSatisfactionRow, Store } from '@ratchet/store';

/**
 * The dashboard's reports: aggregates that take from milliseconds (overview) to seconds (error
 * analysis, what changed) on a large project. Each is a function of the store and the project
 * only, so it can run on a worker thread with its own connection (see runner.ts).
 */
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

export async function overview(store: Store, projectId: string, days: number) {
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
export async function whatChanged(store: Store, projectId: string) {
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

/** Error analysis without each theme's member ids (thousands on a large project; for joins, not the page). */
export async function analysisReport(store: Store, projectId: string) {
  const report = await analyzeProject(store, projectId);
  return { ...report, themes: report.themes.map(({ ids: _ids, ...theme }) => theme) };
}

export const reports = {
  analysis: (store: Store, projectId: string) => analysisReport(store, projectId),
  'what-changed': async (store: Store, projectId: string) => ({ items: await whatChanged(store, projectId) }),
};
export type ReportName = keyof typeof reports;
export type ReportValue<N extends ReportName> = Awaited<ReturnType<(typeof reports)[N]>>;
