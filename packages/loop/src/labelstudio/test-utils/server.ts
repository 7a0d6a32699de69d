import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Starts a real Label Studio server for the connector's test, from the venv that
 * `scripts/labelstudio-venv.sh` makes, on a free loopback port with a throw-away data folder.
 * The venv's seed database is already migrated, which cuts the start from minutes to seconds.
 */
const repoRoot = fileURLToPath(new URL('../../../../../', import.meta.url));
export const labelStudioVenv =
  process.env.RATCHET_LABEL_STUDIO_VENV ?? join(repoRoot, '.cache/labelstudio-venv');
const executable = join(labelStudioVenv, 'bin/label-studio');
const seed = join(labelStudioVenv, 'seed');

export const labelStudioInstalled = () => existsSync(executable);

export interface LabelStudioServer {
  url: string;
  /** The administrator's legacy API token. */
  apiKey: string;
  adminEmail: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/** Kills the server's whole process group: `label-studio` may leave helpers behind. */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Without the migrated seed the server migrates first, which takes minutes on two busy cores. */
export const hasSeed = () => existsSync(join(seed, 'label_studio.sqlite3'));

export async function startLabelStudio(
  timeoutMs = hasSeed() ? 150_000 : 420_000,
): Promise<LabelStudioServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-labelstudio-'));
  if (hasSeed()) copyFileSync(join(seed, 'label_studio.sqlite3'), join(dataDir, 'label_studio.sqlite3'));
  const port = await freePort();
  const apiKey = randomBytes(20).toString('hex');
  const adminEmail = 'admin@ratchet.test';
  const logPath = join(dataDir, 'server.log');
  const logFd = openSync(logPath, 'w');
  const child = spawn(
    executable,
    [
      'start',
      '--no-browser',
      '--internal-host',
      '127.0.0.1',
      '--port',
      String(port),
      '--data-dir',
      dataDir,
      '--username',
      adminEmail,
      '--password',
      randomBytes(12).toString('hex'),
      '--user-token',
      apiKey,
      '--enable-legacy-api-token',
    ],
    {
      cwd: dataDir,
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env: {
        ...process.env,
        LABEL_STUDIO_BASE_DATA_DIR: dataDir,
        SECRET_KEY: randomBytes(32).toString('hex'),
        // Off the network: no version check against the package index, no usage analytics.
        LATEST_VERSION_CHECK: 'false',
        COLLECT_ANALYTICS: 'false',
        SENTRY_DSN: '',
        FRONTEND_SENTRY_DSN: '',
      },
    },
  );
  closeSync(logFd);
  const killOnExit = () => killGroup(child, 'SIGKILL');
  process.once('exit', killOnExit);
  const stop = async () => {
    process.off('exit', killOnExit);
    killGroup(child, 'SIGTERM');
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    rmSync(dataDir, { recursive: true, force: true });
  };

  const log = () => readFileSync(logPath, 'utf8');
  // Label Studio moves to the next port when the one asked for was taken meanwhile; it says so.
  const serverUrl = () =>
    /Starting development server at (http:\/\/[^/\s]+)/.exec(log())?.[1] ?? `http://127.0.0.1:${port}`;
  const tail = () => log().split('\n').slice(-30).join('\n');
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`Label Studio exited with ${child.exitCode}:\n${tail()}`);
      if (Date.now() > deadline)
        throw new Error(`Label Studio did not answer within ${timeoutMs} ms:\n${tail()}`);
      const url = serverUrl();
      // Django answers /health before the start-up user exists; wait until its token works.
      const ok = await fetch(`${url}/api/current-user/whoami`, {
        headers: { Authorization: `Token ${apiKey}` },
        signal: AbortSignal.timeout(5000),
      })
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) return { url, apiKey, adminEmail, stop };
      await new Promise((r) => setTimeout(r, 500));
    }
  } catch (err) {
    await stop();
    throw err;
  }
}
