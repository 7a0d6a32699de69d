import type { MetricSeries, Model, Run } from '@ratchet/store';
import type { RunTracker } from './tracker.js';

/** MLflow's REST limits per log-batch call. */
const MAX_METRICS_PER_BATCH = 1000;
const MAX_PARAMS_PER_BATCH = 100;
const MAX_PARAM_VALUE = 6000;

export interface MlflowOptions {
  /** The tracking server, e.g. http://127.0.0.1:5000. */
  trackingUri: string;
  /** Experiment runs are logged under (default `ratchet/<project id>`). */
  experimentName?: (run: Run) => string;
  /** Bearer token, for servers behind auth. */
  token?: string;
}

export class MlflowError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'MlflowError';
  }
}

/** Flattens `{a: {b: 1}}` to `[['a.b', '1']]` for MLflow params (strings, bounded length). */
function flattenParams(value: unknown, prefix = ''): [string, string][] {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) =>
      flattenParams(v, prefix ? `${prefix}.${k}` : k),
    );
  }
  if (value === undefined || value === null) return [];
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return [[prefix, text.slice(0, MAX_PARAM_VALUE)]];
}

/**
 * Logs training runs to an MLflow tracking server through its REST API (no Python client): one
 * MLflow run per Ratchet run (tagged `ratchet.run_id`, so a resumed run continues the same one),
 * the job spec as params, every metric point with its step, the final status, and the registered
 * candidate as a version of an MLflow registered model of the same name.
 */
export class MlflowTracker implements RunTracker {
  private readonly base: string;
  private readonly mlflowRunIds = new Map<string, string>();

  constructor(private readonly options: MlflowOptions) {
    this.base = options.trackingUri.replace(/\/+$/, '');
  }

  async started(run: Run): Promise<void> {
    const experimentId = await this.experimentId(
      this.options.experimentName?.(run) ?? `ratchet/${run.projectId}`,
    );
    const existing = await this.findRun(experimentId, run.id);
    if (existing) {
      this.mlflowRunIds.set(run.id, existing);
      await this.call('runs/update', { run_id: existing, status: 'RUNNING' });
      return;
    }
    const created = await this.call<{ run: { info: { run_id: string } } }>('runs/create', {
      experiment_id: experimentId,
      run_name: String(run.request.modelName ?? run.id),
      start_time: run.startedAt ?? Date.now(),
      tags: [
        { key: 'ratchet.run_id', value: run.id },
        { key: 'ratchet.project_id', value: run.projectId },
        { key: 'ratchet.dataset_id', value: run.datasetId ?? '' },
        { key: 'ratchet.dataset_version', value: String(run.request.datasetVersion ?? '') },
        { key: 'ratchet.method', value: run.method },
      ],
    });
    const mlflowRunId = created.run.info.run_id;
    this.mlflowRunIds.set(run.id, mlflowRunId);
    const { metadata: _m, output_dir: _o, dataset: _d, eval_dataset: _e, ...spec } = run.spec;
    const params = flattenParams(spec).map(([key, value]) => ({ key, value }));
    for (let i = 0; i < params.length; i += MAX_PARAMS_PER_BATCH) {
      await this.call('runs/log-batch', {
        run_id: mlflowRunId,
        params: params.slice(i, i + MAX_PARAMS_PER_BATCH),
      });
    }
  }

  async metrics(run: Run, points: MetricSeries): Promise<void> {
    const runId = this.mlflowRunIds.get(run.id);
    if (!runId) return;
    const now = Date.now();
    const metrics = Object.entries(points).flatMap(([key, series]) =>
      series.map(([step, value]) => ({ key, value, step, timestamp: now })),
    );
    for (let i = 0; i < metrics.length; i += MAX_METRICS_PER_BATCH) {
      await this.call('runs/log-batch', {
        run_id: runId,
        metrics: metrics.slice(i, i + MAX_METRICS_PER_BATCH),
      });
    }
  }

  async finished(run: Run, model: Model | undefined): Promise<void> {
    const runId = this.mlflowRunIds.get(run.id);
    if (!runId) return;
    const status = run.status === 'succeeded' ? 'FINISHED' : run.status === 'cancelled' ? 'KILLED' : 'FAILED';
    await this.call('runs/update', { run_id: runId, status, end_time: run.finishedAt ?? Date.now() });
    if (model) await this.registerModel(model, runId);
    this.mlflowRunIds.delete(run.id);
  }

  /** The candidate as a version of the registered model `model.name`, linked to the MLflow run. */
  private async registerModel(model: Model, mlflowRunId: string): Promise<void> {
    try {
      await this.call('registered-models/create', {
        name: model.name,
        tags: [{ key: 'ratchet.project_id', value: model.projectId }],
      });
    } catch (err) {
      if (!(err instanceof MlflowError && err.errorCode === 'RESOURCE_ALREADY_EXISTS')) throw err;
    }
    await this.call('model-versions/create', {
      name: model.name,
      // MLflow accepts a local path only inside the run's artifact folder; the adapter stays
      // where the worker wrote it, so the version points at the run and names the path in a tag.
      source: `runs:/${mlflowRunId}/adapter`,
      run_id: mlflowRunId,
      tags: [
        { key: 'ratchet.model_id', value: model.id },
        { key: 'ratchet.stage', value: model.stage },
        { key: 'ratchet.base_model', value: model.baseModel },
        { key: 'ratchet.adapter_path', value: model.adapterPath ?? '' },
      ],
    });
  }

  private async experimentId(name: string): Promise<string> {
    try {
      const found = await this.call<{ experiment: { experiment_id: string } }>(
        `experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`,
      );
      return found.experiment.experiment_id;
    } catch (err) {
      if (!(err instanceof MlflowError && err.errorCode === 'RESOURCE_DOES_NOT_EXIST')) throw err;
    }
    try {
      return (await this.call<{ experiment_id: string }>('experiments/create', { name })).experiment_id;
    } catch (err) {
      // Another process created it in between.
      if (err instanceof MlflowError && err.errorCode === 'RESOURCE_ALREADY_EXISTS')
        return this.experimentId(name);
      throw err;
    }
  }

  private async findRun(experimentId: string, ratchetRunId: string): Promise<string | undefined> {
    const found = await this.call<{ runs?: { info: { run_id: string } }[] }>('runs/search', {
      experiment_ids: [experimentId],
      filter: `tags.\`ratchet.run_id\` = '${ratchetRunId.replace(/'/g, '')}'`,
      max_results: 1,
    });
    return found.runs?.[0]?.info.run_id;
  }

  /** POST with a body, GET without one; MLflow errors become MlflowError with their code. */
  private async call<T = unknown>(path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.base}/api/2.0/mlflow/${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(this.options.token ? { authorization: `Bearer ${this.options.token}` } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const parsed = text ? JSON.parse(text) : {};
    if (!res.ok)
      throw new MlflowError(
        res.status,
        parsed.error_code,
        `MLflow ${path}: ${res.status} ${parsed.message ?? text}`,
      );
    return parsed as T;
  }
}

/** An MlflowTracker when `RATCHET_MLFLOW_TRACKING_URI` is set (token: `RATCHET_MLFLOW_TOKEN`). */
export function mlflowTrackerFromEnv(env: NodeJS.ProcessEnv = process.env): MlflowTracker | undefined {
  const uri = env.RATCHET_MLFLOW_TRACKING_URI;
  return uri ? new MlflowTracker({ trackingUri: uri, token: env.RATCHET_MLFLOW_TOKEN }) : undefined;
}
