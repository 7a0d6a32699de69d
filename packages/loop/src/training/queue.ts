import type { Store } from '@ratchet/store';
import { CompiledQuery } from 'kysely';
import PgBoss from 'pg-boss';

/** The pg-boss queue that carries training jobs ({ runId }) to `ratchet worker` processes. */
export const trainingQueueName = 'ratchet-training';

/**
 * Hands queued runs to whoever executes them. The run record is the truth (status, owner,
 * heartbeat); the queue only says "this run is waiting". Handlers run one job at a time: a
 * training job already uses every core.
 */
export interface TrainingQueue {
  readonly kind: 'local' | 'pg-boss';
  enqueue(runId: string): Promise<void>;
  /** Starts taking jobs; `handler` is awaited before the next one is taken. */
  work(handler: (runId: string) => Promise<void>): Promise<void>;
  /** Stops taking jobs and waits for the one in hand. */
  stop(): Promise<void>;
}

export interface QueueOptions {
  /** How often an idle worker looks for jobs. */
  pollMs?: number;
}

/**
 * The embedded queue (SQLite): the runs table itself. A worker polls for queued runs oldest
 * first and claims each with a conditional UPDATE, so several workers on one file never share a
 * run; `enqueue` wakes a worker in this process at once.
 */
export class LocalTrainingQueue implements TrainingQueue {
  readonly kind = 'local' as const;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly store: Store,
    private readonly options: QueueOptions = {},
  ) {}

  async enqueue(_runId: string): Promise<void> {
    this.wake?.();
  }

  async work(handler: (runId: string) => Promise<void>): Promise<void> {
    if (this.loop) throw new Error('this queue already has a worker');
    this.loop = (async () => {
      while (!this.stopped) {
        const [next] = await this.store.runs.queuedIds(1);
        if (next) {
          await handler(next).catch((err) => process.emitWarning(`training job ${next}: ${String(err)}`));
          continue;
        }
        await new Promise<void>((res) => {
          const timer = setTimeout(res, this.options.pollMs ?? 1000);
          this.wake = () => {
            clearTimeout(timer);
            res();
          };
        });
        this.wake = undefined;
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }
}

/**
 * The PostgreSQL queue: pg-boss, in its own schema of the same database, so a `ratchet worker`
 * on another machine (a GPU box) takes jobs that the API or CLI enqueued.
 */
export class PgBossTrainingQueue implements TrainingQueue {
  readonly kind = 'pg-boss' as const;
  private readonly boss: PgBoss;
  private started: Promise<void> | undefined;

  constructor(
    store: Store,
    private readonly options: QueueOptions = {},
  ) {
    // pg-boss runs its SQL through the store's pool: no second set of connections or settings.
    // An empty parameter list keeps pg on the simple protocol, which its multi-statement
    // migrations need.
    const db = {
      executeSql: async (text: string, values: unknown[] = []) =>
        store.db.executeQuery(CompiledQuery.raw(text, values)) as Promise<{ rows: unknown[] }>,
    };
    this.boss = new PgBoss({ db });
    this.boss.on('error', (err) => process.emitWarning(`pg-boss: ${err.message}`));
  }

  private start(): Promise<void> {
    this.started ??= (async () => {
      await this.boss.start();
      await this.boss.createQueue(trainingQueueName, {
        name: trainingQueueName,
        // A crashed worker's run is resumed from its checkpoint by the orphan sweep, not retried
        // from scratch; a job may train for hours.
        retryLimit: 0,
        expireInHours: 23,
      });
    })();
    return this.started;
  }

  async enqueue(runId: string): Promise<void> {
    await this.start();
    await this.boss.send(trainingQueueName, { runId }, { singletonKey: runId });
  }

  async work(handler: (runId: string) => Promise<void>): Promise<void> {
    await this.start();
    await this.boss.work<{ runId: string }>(
      trainingQueueName,
      { batchSize: 1, pollingIntervalSeconds: Math.max(0.5, (this.options.pollMs ?? 1000) / 1000) },
      async ([job]) => {
        if (job) await handler(job.data.runId);
      },
    );
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    await this.started.catch(() => {});
    await this.boss.stop({ graceful: true, close: true, wait: true, timeout: 30_000 });
  }
}

/** pg-boss on PostgreSQL, the runs table on SQLite. */
export function createTrainingQueue(store: Store, options: QueueOptions = {}): TrainingQueue {
  return store.dialect === 'postgres'
    ? new PgBossTrainingQueue(store, options)
    : new LocalTrainingQueue(store, options);
}
