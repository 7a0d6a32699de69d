import type { MetricSeries } from '@ratchet/store';
import type { WorkerEvent } from './worker.js';

/** What a run record shows while it trains: the latest progress line, in the API's words. */
export interface RunProgress {
  step: number;
  total: number;
  loss?: number;
  learningRate?: number;
  epoch?: number;
  etaSeconds?: number;
  elapsedSeconds?: number;
  /** The step the worker started from (above 0 when it resumed from a checkpoint). */
  startStep?: number;
  lastCheckpoint?: { step: number; path: string };
  updatedAt: number;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/**
 * Folds the worker's events into a run's progress and metric points. Points accumulate until
 * `takeMetrics`, so the caller writes them in batches (the worker logs every step).
 */
export class RunTelemetry {
  progress: RunProgress = { step: 0, total: 0, updatedAt: Date.now() };
  artifacts: { path: string; manifest: Record<string, unknown> } | undefined;
  trainSummary: Record<string, number> = {};
  private pending: MetricSeries = {};

  apply(event: WorkerEvent): void {
    const now = Date.now();
    if (event.type === 'start') {
      const step = num(event.step) ?? 0;
      this.progress = {
        ...this.progress,
        step,
        total: num(event.total) ?? 0,
        startStep: step,
        updatedAt: now,
      };
    } else if (event.type === 'progress') {
      const e = event as Extract<WorkerEvent, { type: 'progress' }>;
      const step = e.step;
      this.progress = {
        ...this.progress,
        step,
        total: e.total,
        loss: num(e.loss) ?? this.progress.loss,
        learningRate: num(e.learning_rate) ?? this.progress.learningRate,
        epoch: num(e.epoch) ?? this.progress.epoch,
        etaSeconds: num(e.eta_s),
        elapsedSeconds: num(e.elapsed_s),
        updatedAt: now,
      };
      this.point('loss', step, e.loss);
      this.point('learning_rate', step, e.learning_rate);
      this.point('grad_norm', step, e.grad_norm);
      for (const [name, value] of Object.entries(e.metrics ?? {})) this.point(name, step, value);
    } else if (event.type === 'checkpoint') {
      this.progress = {
        ...this.progress,
        lastCheckpoint: { step: num(event.step) ?? 0, path: String(event.path) },
        updatedAt: now,
      };
    } else if (event.type === 'metrics') {
      const { type: _t, split, step, ...values } = event as Record<string, unknown>;
      const at = num(step) ?? num(values.global_step) ?? this.progress.step;
      for (const [key, value] of Object.entries(values)) {
        if (split === 'eval') this.point(`eval/${key.replace(/^eval_/, '')}`, at, value);
        else if (num(value) !== undefined) this.trainSummary[key] = value as number;
      }
    } else if (event.type === 'artifacts') {
      const e = event as Extract<WorkerEvent, { type: 'artifacts' }>;
      const path = e.adapter_path ?? e.model_path ?? String(e.manifest?.artifact_path ?? '');
      this.artifacts = { path, manifest: e.manifest ?? {} };
    }
  }

  /** Metric points since the last call. */
  takeMetrics(): MetricSeries {
    const out = this.pending;
    this.pending = {};
    return out;
  }

  private point(name: string, step: number, value: unknown): void {
    const v = num(value);
    if (v === undefined) return;
    const series = this.pending[name] ?? [];
    series.push([step, v]);
    this.pending[name] = series;
  }
}
