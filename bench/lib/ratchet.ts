import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '@ratchet/store';
import { freePort, type Proc, startProc, tsNode, waitUntil } from './procs.js';
import { benchDir } from './results.js';

export interface RatchetKey {
  projectId: string;
  secretKey: string;
  publicKey: string;
}

/** Creates the project and its keys directly in the store (what `ratchet keys create` does). */
export async function createProject(databaseUrl: string, name = 'bench'): Promise<RatchetKey> {
  const store = await Store.open(databaseUrl);
  try {
    const project = await store.projects.getOrCreate(name);
    const secret = await store.projects.createKey(project.id, 'secret', 'bench');
    const pub = await store.projects.createKey(project.id, 'public', 'bench');
    return { projectId: project.id, secretKey: secret.key, publicKey: pub.key };
  } finally {
    await store.close();
  }
}

export interface RunningRatchet {
  url: string;
  proc: Proc;
  command: string;
}

export interface RatchetServeOptions {
  databaseUrl: string;
  dir: string;
  /** Gateway upstream: writes a config with this as the default upstream. */
  upstreamUrl?: string;
  env?: Record<string, string>;
  /** Extra node flags, e.g. --cpu-prof. */
  nodeFlags?: string[];
  /** Another entry point running `main` of a copy of the CLI (a prototype under bench/.work). */
  launcher?: string;
  name?: string;
}

/** Starts `ratchet serve` as its own process and waits until /healthz answers. */
export async function startRatchet(opts: RatchetServeOptions): Promise<RunningRatchet> {
  const port = await freePort();
  // BENCH_RATCHET_NODE_FLAGS: extra node flags for every ratchet the benches start (experiments).
  const extra = (process.env.BENCH_RATCHET_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const args = [
    ...extra,
    ...(opts.nodeFlags ?? []),
    ...tsNode,
    opts.launcher ?? join(benchDir, 'procs/ratchet.ts'),
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
  ];
  if (opts.upstreamUrl) {
    const config = join(opts.dir, `${opts.name ?? 'ratchet'}-gateway.json`);
    writeFileSync(
      config,
      JSON.stringify(
        { upstreams: { local: { baseURL: opts.upstreamUrl } }, defaultUpstream: 'local' },
        null,
        2,
      ),
    );
    args.push('--gateway-config', config);
  }
  const env = { RATCHET_DATABASE_URL: opts.databaseUrl, RATCHET_LOG_LEVEL: 'warn', ...opts.env };
  const proc = startProc({
    name: opts.name ?? 'ratchet',
    command: process.execPath,
    args,
    env,
    logFile: join(opts.dir, `${opts.name ?? 'ratchet'}.log`),
  });
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(proc, async () => (await fetch(`${url}/healthz`)).ok, 60_000, '/healthz');
  const shownEnv = Object.entries(env)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return {
    url,
    proc,
    command: `${shownEnv} node ${args.join(' ').replaceAll(`${benchDir}/`, 'bench/')}`,
  };
}
