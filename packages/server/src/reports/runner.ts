import { Worker } from 'node:worker_threads';
import type { Store } from '@ratchet/store';
import { type ReportName, type ReportValue, reports } from './compute.js';
import type { ReportAnswer, ReportJob } from './worker.js';

// Running from the TypeScript sources (vitest, tsx), the thread needs tsx and the "source"
// export condition to load them; the built server runs the compiled worker as it is.
const fromSource = import.meta.url.endsWith('.ts');

/**
 * Computes reports on one long-lived worker thread with its own store connection, started on
 * first use. A thread that dies fails the reports it was computing and is started again for the
 * next one. An in-memory SQLite database cannot be opened twice, so its reports are computed on
 * the calling thread, as they are when `threaded` is false.
 */
export class ReportRunner {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private closed = false;
  readonly threaded: boolean;

  constructor(
    private readonly store: Store,
    options: { threaded?: boolean } = {},
  ) {
    const inMemory = store.config.dialect === 'sqlite' && store.config.location === ':memory:';
    this.threaded = (options.threaded ?? true) && !inMemory;
  }

  async run<N extends ReportName>(name: N, projectId: string): Promise<ReportValue<N>> {
    if (this.closed) throw new Error('the report runner is closed');
    if (!this.threaded) return (await reports[name](this.store, projectId)) as ReportValue<N>;
    const worker = this.start();
    const id = this.nextId++;
    const answer = new Promise<unknown>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    worker.postMessage({ id, name, projectId } satisfies ReportJob);
    return answer as Promise<ReportValue<N>>;
  }

  /**
   * Starts the thread ahead of its first report (loading its modules and opening its connection
   * take a second or two), e.g. when the dashboard's first page opens.
   */
  warm(): void {
    if (this.threaded && !this.closed) this.start();
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    this.fail(new Error('the server closed while the report was computing'));
    await worker?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const file = fromSource ? './worker-source.mjs' : './worker.js';
    const worker = new Worker(new URL(file, import.meta.url), {
      workerData: {
        // A couple of connections are plenty for one report at a time.
        database: { ...this.store.config, poolSize: 2 },
      },
      ...(fromSource ? { execArgv: ['--conditions=source'] } : {}),
    });
    // A computing report keeps its caller waiting, not the process alive on its own.
    worker.unref();
    worker.on('message', (m: ReportAnswer) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if ('error' in m) p?.reject(new Error(m.error));
      else p?.resolve(m.value);
    });
    const lost = (err: Error) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.fail(err);
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`the report thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  private fail(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
