import { resolve } from 'node:path';
import { betaQuantile, findThemes } from '@ratchet/core';
import { analyzeProject } from '@ratchet/loop';
import type { Experiment, Model, ModelSatisfactionRow, Store } from '@ratchet/store';

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

type Lineage = { id: string; name: string; relation: 'built-on' | 'tested-against' | 'earlier-on-route' };

/** Normalized, so that a stacked model's base folder and its parent's artifact folder compare equal. */
const folder = (p: string | null | undefined) => (p ? resolve(p) : undefined);

/**
 * The model a version is judged against, in order of certainty: the model whose merged weights
 * it was trained on (the loop's stacked rounds: its base model is that model's folder), the
 * control of an experiment it ran in, else the model registered before it on its route.
 */
function previousOf(m: Model, models: Model[], experiments: Experiment[]): Lineage | undefined {
  const base = folder(m.baseModel);
  const parent = models.find((p) => p.id !== m.id && base && folder(p.adapterPath) === base);
  if (parent) return { id: parent.id, name: parent.name, relation: 'built-on' };
  for (const e of experiments) {
    const mine = e.variants.find((v) => v.modelId === m.id || v.model === m.name);
    const control = e.variants.find((v) => v.name === e.control);
    if (!mine || !control || control === mine) continue;
    const other = models.find((p) => p.id === control.modelId || p.name === control.model);
    if (other) return { id: other.id, name: other.name, relation: 'tested-against' };
  }
  if (m.route === null) return undefined;
  // `models` is in registration order (see whatChanged); two models registered in the same
  // millisecond share a createdAt, so the order, not the timestamp, says which came first.
  const earlier = models
    .slice(0, models.indexOf(m))
    .filter((p) => p.route === m.route)
    .at(-1);
  return earlier && { id: earlier.id, name: earlier.name, relation: 'earlier-on-route' };
}

/** The experiment that shipped this model: a `ship` look for its variant, or a stop that kept it. */
function promotedBy(m: Model, experiments: Experiment[]) {
  for (const e of [...experiments].sort((a, b) => b.startedAt - a.startedAt)) {
    const mine = e.variants.find((v) => v.modelId === m.id || v.model === m.name);
    if (!mine || mine.name === e.control) continue;
    const won = [...e.history]
      .reverse()
      .find((h) => h.variant === mine.name && (h.decision === 'ship' || h.decision === 'stopped'));
    if (!won) continue;
    const ship = [...e.history].reverse().find((h) => h.decision === 'ship' && h.variant === mine.name);
    return {
      id: e.id,
      name: e.name,
      metric: e.metric,
      engine: e.engine,
      variant: mine.name,
      against: e.control,
      decidedAt: (ship ?? won).at,
      reasons: (ship ?? won).reasons,
    };
  }
  return null;
}

/**
 * Release notes per registered model: the ratings and corrections its dataset carried (lineage)
 * and how many of them the model before it had not seen, the experiment that promoted it, and
 * how often each complaint theme came up on its answers compared with the model before it.
 */
export async function whatChanged(store: Store, projectId: string) {
  // Registration order: by time, then by id (UUIDv7, ordered within a millisecond).
  const models = (await store.models.list(projectId, {})).sort(
    (x, y) => x.createdAt - y.createdAt || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0),
  );
  const experiments = await store.experiments.list(projectId, {});
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
  const byId = new Map(models.map((m) => [m.id, m]));
  return Promise.all(
    models.map(async (m) => {
      const previous = previousOf(m, models, experiments);
      const before = previous && byId.get(previous.id);
      const dataset = m.datasetId ? await store.datasets.get(projectId, m.datasetId) : undefined;
      const history = await store.audit.list(projectId, { subjectType: 'model', subjectId: m.id });
      const newData =
        dataset && before?.datasetId && before.datasetId !== dataset.id
          ? await store.dashboard.learnedFrom(projectId, dataset.id, before.datasetId)
          : null;
      return {
        model: {
          id: m.id,
          name: m.name,
          route: m.route,
          stage: m.stage,
          createdAt: m.createdAt,
          baseModel: m.baseModel,
        },
        previous: previous ?? null,
        dataset: dataset
          ? { id: dataset.id, name: dataset.name, version: dataset.version, method: dataset.method }
          : null,
        learnedFrom: dataset ? await store.dashboard.learnedFrom(projectId, dataset.id) : null,
        /** Of what it learned from, the part the previous model's dataset did not have. */
        newSincePrevious: newData,
        promotedBy: promotedBy(m, experiments),
        themes: themes.map((t) => ({
          label: t.label,
          rate: themeRate(t, m.name),
          previousRate: before ? themeRate(t, before.name) : null,
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
