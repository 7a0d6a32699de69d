import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { repoDir } from './results.js';

/** node flags that run our TypeScript sources directly (as `make bench` and the tests do). */
export const tsNode = ['--conditions=source', '--import', 'tsx'];

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface Proc {
  name: string;
  child: ChildProcess;
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<number | string>;
  /** Everything written to stdout/stderr so far (capped), for error messages. */
  output(): string;
  /** SIGTERM (graceful: our server flushes its log), then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Also append the process's output to this file. */
  logFile?: string;
}

/** Children still running: if the bench itself dies or is interrupted, they go with it. */
const live = new Set<ChildProcess>();
let cleanupInstalled = false;
function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  const killAll = () => {
    for (const c of live) {
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  process.once('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => {
      killAll();
      process.exit(130);
    });
}

/** Starts a child process in its own process group, capturing its output. */
export function startProc(opts: StartOptions): Proc {
  installCleanup();
  const child = spawn(opts.command, opts.args, {
    cwd: opts.cwd ?? repoDir,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  if (opts.logFile) mkdirSync(dirname(opts.logFile), { recursive: true });
  const log = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
  const capture = (chunk: Buffer) => {
    out = (out + chunk.toString('utf8')).slice(-20_000);
    log?.write(chunk);
  };
  live.add(child);
  child.stdout!.on('data', capture);
  child.stderr!.on('data', capture);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      log?.end();
      resolve(code ?? signal ?? 'unknown');
    });
    child.once('error', (err) => {
      capture(Buffer.from(String(err)));
      resolve('spawn-error');
    });
  });
  let stopping: Promise<void> | undefined;
  return {
    name: opts.name,
    child,
    exited,
    output: () => out,
    stop(graceMs = 10_000) {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const signalGroup = (sig: NodeJS.Signals) => {
          try {
            // The whole group: uvicorn workers, npm wrappers and the like go with their parent.
            process.kill(-child.pid!, sig);
          } catch {
            try {
              child.kill(sig);
            } catch {
              // already gone
            }
          }
        };
        signalGroup('SIGTERM');
        const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
        signalGroup('SIGKILL');
      })();
      return stopping;
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it resolves true, failing with the process's output if it exits or times out. */
export async function waitUntil(
  proc: Proc,
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${proc.name} exited before ${what}:\n${proc.output()}`);
    try {
      if (await check()) return;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  throw new Error(`${proc.name}: timed out after ${timeoutMs} ms waiting for ${what}:\n${proc.output()}`);
}

/** Resolves with the first stdout line that parses as JSON (our helper processes announce themselves so). */
export function firstJsonLine<T>(proc: Proc, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${proc.name}: no JSON line within ${timeoutMs} ms:\n${proc.output()}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line.startsWith('{')) {
          try {
            const value = JSON.parse(line) as T;
            cleanup();
            resolve(value);
            return;
          } catch {
            // not our line
          }
        }
        nl = buf.indexOf('\n');
      }
    };
    const onExit = () => {
      cleanup();
      reject(new Error(`${proc.name} exited before printing its JSON line:\n${proc.output()}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      proc.child.stdout!.off('data', onData);
      proc.child.off('exit', onExit);
    };
    proc.child.stdout!.on('data', onData);
    proc.child.once('exit', onExit);
  });
}

/** Runs a helper process to completion and returns its JSON result line. */
export async function runJson<T>(opts: StartOptions, timeoutMs: number): Promise<T> {
  const proc = startProc(opts);
  try {
    const result = await firstJsonLine<T>(proc, timeoutMs);
    await proc.exited;
    return result;
  } finally {
    await proc.stop(1000);
  }
}

const CLOCK_TICKS_PER_S = 100;

/**
 * CPU time (user + system, ms) used so far by the live processes of a process group (our children
 * are started detached, so a child's pid is its group id and its workers share it). Linux only;
 * NaN elsewhere. Resolution is one clock tick (10 ms), fine over thousands of requests.
 */
export function groupCpuMs(pgid: number): number {
  let dirs: string[];
  try {
    dirs = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return Number.NaN;
  }
  let ticks = 0;
  for (const d of dirs) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue;
    }
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(rest[2]) !== pgid) continue; // field 5: pgrp
    ticks += Number(rest[11]) + Number(rest[12]); // fields 14, 15: utime, stime
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}
