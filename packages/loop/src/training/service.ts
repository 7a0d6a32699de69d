import type { TrainRequestInput } from '@ratchet/core';
import type { Run, Store } from '@ratchet/store';
import { createTrainingQueue, type QueueOptions, type TrainingQueue } from './queue.js';
import {
  type RunOutcome,
  resumeOrphanedRuns,
  runTraining,
  startTrainingRun,
  type TrainingOptions,
} from './runs.js';

export interface TrainingServiceOptions extends TrainingOptions, QueueOptions {
  /** A run whose heartbeat is older than this lost its owner and is resumed (default 60 s). */
  staleMs?: number;
  /** Called after each run this process executed. */
  onOutcome?: (outcome: RunOutcome) => void;
}

/**
 * Training as a service: `submit` records and enqueues a run; `work` makes this process a
 * worker that executes queued runs one at a time and resumes runs orphaned by a crash. The
 * server uses both on SQLite (runs execute in the server process); on PostgreSQL the server only
 * submits and `ratchet worker` processes do the work.
 */
export class TrainingService {
  readonly queue: TrainingQueue;
  private readonly shutdown = new AbortController();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly options: TrainingServiceOptions = {},
  ) {
    this.queue = createTrainingQueue(store, options);
  }

  async submit(projectId: string, input: TrainRequestInput): Promise<Run> {
    const run = await startTrainingRun(this.store, projectId, input, this.options);
    await this.queue.enqueue(run.id);
    return run;
  }

  async work(): Promise<void> {
    const staleMs = this.options.staleMs ?? 60_000;
    const execute = async (runId: string, resumeStale?: number) => {
      const outcome = await runTraining(this.store, runId, {
        ...this.options,
        staleMs: resumeStale,
        shutdown: this.shutdown.signal,
      });
      if (outcome) this.options.onOutcome?.(outcome);
    };
    await this.queue.work((runId) => execute(runId));
    const sweep = () => {
      this.sweeping = this.sweeping
        .then(() =>
          resumeOrphanedRuns(this.store, staleMs, { ...this.options, shutdown: this.shutdown.signal }),
        )
        .then((outcomes) => {
          for (const o of outcomes) this.options.onOutcome?.(o);
        })
        .catch((err) => process.emitWarning(`resuming orphaned runs: ${String(err)}`));
    };
    sweep();
    this.sweepTimer = setInterval(sweep, Math.max(1000, staleMs / 2));
  }

  /** Stops taking jobs; a run in progress is stopped and left to be resumed by the next worker. */
  async stop(): Promise<void> {
    clearInterval(this.sweepTimer);
    this.shutdown.abort();
    await this.queue.stop();
    await this.sweeping;
  }
}
