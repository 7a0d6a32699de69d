import { type ChildProcess, spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { workerCommand } from '../training/worker.js';

/**
 * A model the local worker serves: the base itself (no adapter), the base with a LoRA adapter, or
 * a full model folder (a merged adapter) in `adapterPath`.
 */
export interface ServedModel {
  /** The name callers put in `model` (the registry's model name). */
  name: string;
  adapterPath: string | null;
}

export interface LocalModelServerOptions {
  /** The base model folder every adapter sits on. */
  baseModel: string;
  /** The name the base answers to (models without an adapter answer too, under their own names). */
  baseName: string;
  host?: string;
  /** Fixed, so the gateway's upstream URL stays valid if the worker has to be started again. */
  port: number;
  workerCommand?: string;
  env?: NodeJS.ProcessEnv;
  /** Worker stderr lines (logs), for the caller's log. */
  onLog?: (line: string) => void;
  readyTimeoutMs?: number;
}

/** What the worker says it serves (GET /v1/models): name and folder. */
interface WorkerModel {
  id: string;
  path: string;
}

/**
 * The embedded default's model server: `ratchet-worker serve` for one base model and the adapters
 * and merged models the registry currently routes to. The worker loads and unloads models while
 * it answers (POST /v1/models/load|unload), so changing what is served never stops production
 * calls; the process restarts only if it has died. Callers with their own serving (vLLM, Ollama)
 * point the gateway at it instead and never use this.
 */
export class LocalModelServer {
  private child: ChildProcess | undefined;
  /** ensure() calls run one after another: each reads what the worker serves, then changes it. */
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly o: LocalModelServerOptions) {}

  get baseUrl(): string {
    return `http://${this.o.host ?? '127.0.0.1'}:${this.o.port}/v1`;
  }

  /**
   * Serves exactly these models plus the base (under `baseName`): what is missing is loaded, what
   * is no longer asked for is unloaded, and a model whose folder changed is reloaded, all while
   * the worker keeps answering. A model without an adapter is the base answering to another
   * name. Models are loaded before any is unloaded, so a call routed to one that stays never
   * fails.
   */
  ensure(models: readonly ServedModel[]): Promise<void> {
    const next = this.queue.then(() => this.reconcile(models));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async reconcile(models: readonly ServedModel[]): Promise<void> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) await this.start();
    const wanted = new Map<string, string>();
    for (const m of models) {
      if (m.name === this.o.baseName && !m.adapterPath) continue;
      wanted.set(m.name, realFolder(m.adapterPath ?? this.o.baseModel));
    }
    const served = new Map(
      (await this.served()).filter((m) => m.id !== this.o.baseName).map((m) => [m.id, m.path] as const),
    );
    const changed = [...wanted].filter(([name, path]) => served.has(name) && served.get(name) !== path);
    for (const [name, path] of wanted) if (!served.has(name)) await this.call('load', { name, path });
    for (const name of served.keys()) if (!wanted.has(name)) await this.call('unload', { name });
    for (const [name, path] of changed) {
      await this.call('unload', { name });
      await this.call('load', { name, path });
    }
  }

  private async served(): Promise<WorkerModel[]> {
    const res = await fetch(`${this.baseUrl}/models`);
    if (!res.ok) throw new Error(`model server: GET /v1/models answered ${res.status}`);
    return ((await res.json()) as { data: WorkerModel[] }).data;
  }

  private async call(action: 'load' | 'unload', body: { name: string; path?: string }): Promise<void> {
    const res = await fetch(`${this.baseUrl}/models/${action}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (res.ok) return;
    const why = ((await res.json().catch(() => ({}))) as { error?: { message?: string } }).error?.message;
    throw new Error(`model server could not ${action} ${body.name}: ${why ?? `status ${res.status}`}`);
  }

  private async start(): Promise<void> {
    const args = [
      'serve',
      '--base',
      this.o.baseModel,
      '--base-name',
      this.o.baseName,
      '--host',
      this.o.host ?? '127.0.0.1',
      '--port',
      String(this.o.port),
    ];
    const child = spawn(this.o.workerCommand ?? workerCommand(this.o.env), args, {
      env: { ...process.env, ...this.o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    createInterface({ input: child.stderr! }).on('line', (line) => this.o.onLog?.(line));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`model server did not start within ${this.o.readyTimeoutMs ?? 120_000} ms`)),
        this.o.readyTimeoutMs ?? 120_000,
      );
      const fail = (why: string) => {
        clearTimeout(timer);
        reject(new Error(`model server failed to start: ${why}`));
      };
      child.once('error', (err) => fail(err.message));
      child.once('exit', (code, signal) => fail(`exited with ${signal ?? code}`));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          if ((JSON.parse(line) as { type?: string }).type === 'ready') {
            clearTimeout(timer);
            child.removeAllListeners('exit');
            resolve();
          }
        } catch {
          // not a JSON line
        }
      });
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}

/** The folder as the worker names it (symbolic links resolved), so paths compare equal. */
function realFolder(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path); // missing: the worker's load says so, naming the path
  }
}
