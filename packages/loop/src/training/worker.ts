import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

/** One line of `ratchet-worker train` stdout (see worker/README.md, "Progress lines"). */
export type WorkerEvent =
  | { type: 'job'; method: string; rows: number }
  | { type: 'start'; step: number; total: number }
  | {
      type: 'progress';
      step: number;
      total: number;
      loss?: number | null;
      learning_rate?: number | null;
      epoch?: number | null;
      grad_norm?: number | null;
      eta_s?: number | null;
      elapsed_s?: number | null;
      metrics?: Record<string, number | null>;
    }
  | { type: 'checkpoint'; step: number; path: string }
  | ({ type: 'metrics'; split: string; step?: number } & Record<string, unknown>)
  | { type: 'artifacts'; adapter_path?: string; model_path?: string; manifest: Record<string, unknown> }
  | { type: 'error'; message: string; kind?: string }
  | { type: string; [key: string]: unknown };

/**
 * The worker executable: `RATCHET_WORKER_BIN`, else the project venv's `ratchet-worker` found
 * from the working directory upwards, else `ratchet-worker` on PATH.
 */
export function workerCommand(env: NodeJS.ProcessEnv = process.env, from = process.cwd()): string {
  if (env.RATCHET_WORKER_BIN) return env.RATCHET_WORKER_BIN;
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const candidate = join(dir, '.venv', 'bin', 'ratchet-worker');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return 'ratchet-worker';
  }
}

/**
 * How a training run's worker starts: `ratchet-worker train --spec FILE` for one process; for
 * `processes` > 1, `accelerate launch` of the same module, one process per rank (rank 0 alone
 * writes events and the artifact). With `RATCHET_ACCELERATE_CONFIG` (e.g. worker/configs/fsdp.yaml
 * on GPUs) that file chooses the distribution; without it the ranks are DDP over gloo on CPU.
 * `accelerate` is the one beside the worker executable (same venv), else `RATCHET_ACCELERATE_BIN`,
 * else on PATH.
 */
export function trainLaunch(
  worker: string,
  specPath: string,
  processes: number,
  env: NodeJS.ProcessEnv = process.env,
): { command: string; args: string[]; env: Record<string, string> } {
  if (processes <= 1) return { command: worker, args: ['train', '--spec', specPath], env: {} };
  const beside = join(dirname(worker), 'accelerate');
  const accelerate = env.RATCHET_ACCELERATE_BIN ?? (existsSync(beside) ? beside : 'accelerate');
  const config = env.RATCHET_ACCELERATE_CONFIG;
  const how = config
    ? ['--config_file', config]
    : ['--multi_gpu', '--num_machines', '1', '--mixed_precision', 'no', '--dynamo_backend', 'no'];
  return {
    command: accelerate,
    args: [
      'launch',
      ...how,
      '--num_processes',
      String(processes),
      '-m',
      'ratchet_worker',
      'train',
      '--spec',
      specPath,
    ],
    // The torchrun launcher with ACCELERATE_USE_CPU: each rank is a CPU process, gloo between them.
    env: config ? {} : { ACCELERATE_USE_CPU: 'true' },
  };
}

export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The `error` event's message, or the end of stderr when the worker died without one. */
  error: string | undefined;
}

/**
 * A running `ratchet-worker train`: events as they arrive, stderr to a log file, and a clean stop
 * (SIGTERM, then SIGKILL if it does not exit). Not detached: if this process is killed, the
 * worker goes with its process group rather than training on unowned.
 */
export class TrainWorker {
  private readonly child: ChildProcess;
  private readonly done: Promise<WorkerExit>;
  private stderrTail = '';
  private errorMessage: string | undefined;

  constructor(
    command: string,
    specPath: string,
    logPath: string,
    onEvent: (event: WorkerEvent) => void,
    env: NodeJS.ProcessEnv = process.env,
    /** Ranks to launch (see trainLaunch). */
    processes = 1,
  ) {
    const launch = trainLaunch(command, specPath, processes, env);
    this.child = spawn(launch.command, launch.args, {
      env: { ...env, ...launch.env, PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = createWriteStream(logPath, { flags: 'a' });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      log.write(chunk);
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-4000);
    });
    const lines = createInterface({ input: this.child.stdout!, crlfDelay: Number.POSITIVE_INFINITY });
    lines.on('line', (line) => {
      if (!line.trim()) return;
      let event: WorkerEvent;
      try {
        event = JSON.parse(line);
      } catch {
        log.write(`[stdout, not JSON] ${line}\n`);
        return;
      }
      if (event.type === 'error') this.errorMessage = String(event.message);
      onEvent(event);
    });
    const linesClosed = new Promise<void>((res) => lines.once('close', () => res()));
    this.done = new Promise<WorkerExit>((res) => {
      this.child.once('error', (err) => {
        this.errorMessage = `cannot start the worker (${command}): ${err.message}`;
        res({ code: null, signal: null, error: this.errorMessage });
      });
      this.child.once('close', async (code, signal) => {
        await linesClosed;
        await new Promise<void>((r) => log.end(() => r()));
        const tail = this.stderrTail.trim().split('\n').slice(-5).join('\n');
        res({ code, signal, error: this.errorMessage ?? (code === 0 ? undefined : tail || undefined) });
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  exited(): Promise<WorkerExit> {
    return this.done;
  }

  /** SIGTERM, and SIGKILL after `graceMs` if the worker is still there. */
  stop(graceMs = 10_000): void {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    timer.unref();
    void this.done.then(() => clearTimeout(timer));
  }
}
