import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { workerCommand } from '../training/worker.js';

/** A model the local worker serves: the base itself (no adapter) or the base with a LoRA adapter. */
export interface ServedModel {
  /** The name callers put in `model` (the registry's model name). */
  name: string;
  adapterPath: string | null;
}

export interface LocalModelServerOptions {
  /** The base model folder every adapter sits on. */
  baseModel: string;
  /** The name the base answers to when no base-only model is asked for. */
  baseName: string;
  host?: string;
  /** Fixed, so the gateway's upstream URL stays valid across restarts. */
  port: number;
  workerCommand?: string;
  env?: NodeJS.ProcessEnv;
  /** Worker stderr lines (logs), for the caller's log. */
  onLog?: (line: string) => void;
  readyTimeoutMs?: number;
}

/**
 * The embedded default's model server: `ratchet-worker serve` for one base model and the adapters
 * the registry currently routes to. The worker loads adapters at start, so a new set means a
 * restart (a few seconds for a small model); callers with their own serving (vLLM, Ollama) point
 * the gateway at it instead and never use this.
 */
export class LocalModelServer {
  private child: ChildProcess | undefined;
  private serving = new Set<string>();
  private servingBase = '';

  constructor(private readonly o: LocalModelServerOptions) {}

  get baseUrl(): string {
    return `http://${this.o.host ?? '127.0.0.1'}:${this.o.port}/v1`;
  }

  /**
   * Serves these models (plus the base). A running worker that already serves all of them is
   * kept (a round's stages ask for overlapping sets; each restart reloads every model); else the
   * worker restarts with exactly this set.
   */
  async ensure(models: readonly ServedModel[]): Promise<void> {
    // The base answers to the registry name of a model without an adapter, if one is asked for.
    const baseName = models.find((m) => !m.adapterPath)?.name ?? this.o.baseName;
    const adapters = models
      .filter((m) => m.adapterPath && m.name !== baseName)
      .map((m) => `${m.name}=${m.adapterPath}`)
      .sort();
    const running = this.child && this.child.exitCode === null;
    if (running && baseName === this.servingBase && adapters.every((a) => this.serving.has(a))) return;
    await this.stop();
    await this.start(baseName, adapters);
    this.servingBase = baseName;
    this.serving = new Set(adapters);
  }

  private async start(baseName: string, adapters: string[]): Promise<void> {
    const args = [
      'serve',
      '--base',
      this.o.baseModel,
      '--base-name',
      baseName,
      '--host',
      this.o.host ?? '127.0.0.1',
      '--port',
      String(this.o.port),
    ];
    if (adapters.length > 0) args.push('--adapters', adapters.join(','));
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
    this.serving = new Set();
    this.servingBase = '';
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
