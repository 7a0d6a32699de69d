import type { MetricSeries, Model, Run } from '@ratchet/store';

/** Receives a run's life for an outside tracker (MLflow); failures there never fail the run. */
export interface RunTracker {
  started(run: Run): Promise<void>;
  metrics(run: Run, points: MetricSeries): Promise<void>;
  finished(run: Run, model: Model | undefined): Promise<void>;
}
