import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, type Proc, startProc, waitUntil } from './procs.js';
import { repoDir, workDir } from './results.js';

/** Pinned so that results compare across commits; bump deliberately. */
export const PORTKEY_VERSION = '1.15.2';
export const LITELLM_VERSION = '1.106.2';
/**
 * LiteLLM's auth path imports its OpenTelemetry logger on every request; without the OTel SDK
 * (not in the `proxy` extra, but in its `proxy-runtime` extra, pinned there to 1.33.1) that import
 * fails and is retried, recompiling the module on each request (about half its time here). We
 * install the SDK at the version LiteLLM itself pins so that LiteLLM runs as deployed.
 */
const LITELLM_EXTRAS = ['opentelemetry-api==1.33.1', 'opentelemetry-sdk==1.33.1'];

export const portkeyPrefix = join(workDir, 'portkey');
export const portkeyServer = join(portkeyPrefix, 'node_modules/@portkey-ai/gateway/build/start-server.js');
export const litellmVenv = join(workDir, 'litellm-venv');
export const litellmBin = join(litellmVenv, 'bin/litellm');
const uv = join(repoDir, '.venv/bin/uv');

function installedVersion(file: string, pick: (text: string) => string | undefined): string | undefined {
  try {
    return pick(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Installs Portkey's open-source gateway under bench/.work/portkey (once). */
export function ensurePortkey(log: (m: string) => void): void {
  const pkg = join(portkeyPrefix, 'node_modules/@portkey-ai/gateway/package.json');
  const have = installedVersion(pkg, (t) => (JSON.parse(t) as { version?: string }).version);
  if (have === PORTKEY_VERSION && existsSync(portkeyServer)) return;
  log(`installing @portkey-ai/gateway@${PORTKEY_VERSION} into ${portkeyPrefix}`);
  mkdirSync(portkeyPrefix, { recursive: true });
  execFileSync(
    'npm',
    [
      'install',
      '--prefix',
      portkeyPrefix,
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      `@portkey-ai/gateway@${PORTKEY_VERSION}`,
    ],
    { stdio: 'inherit', cwd: workDir },
  );
}

/** Installs the LiteLLM proxy into its own venv under bench/.work/litellm-venv (once). */
export function ensureLiteLLM(log: (m: string) => void): void {
  const python = join(litellmVenv, 'bin/python');
  let have: string | undefined;
  if (existsSync(python)) {
    try {
      have = execFileSync(
        python,
        ['-c', "import importlib.metadata as m, opentelemetry.sdk._logs; print(m.version('litellm'))"],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
      ).trim();
    } catch {
      have = undefined;
    }
  }
  if (have === LITELLM_VERSION && existsSync(litellmBin)) return;
  log(`installing litellm[proxy]==${LITELLM_VERSION} into ${litellmVenv}`);
  if (!existsSync(python)) execFileSync(uv, ['venv', '--quiet', litellmVenv], { stdio: 'inherit' });
  execFileSync(
    uv,
    [
      'pip',
      'install',
      '--quiet',
      '--python',
      python,
      `litellm[proxy]==${LITELLM_VERSION}`,
      ...LITELLM_EXTRAS,
    ],
    { stdio: 'inherit' },
  );
}

export interface RunningGateway {
  name: string;
  /** Chat completions URL. */
  url: string;
  headers: Record<string, string>;
  proc: Proc;
  /** How it was started, for the notes and the README. */
  command: string;
}

/**
 * Portkey's gateway (Node, Hono): headless, NODE_ENV=production (no console UI routes), provider
 * `openai` with the local upstream as custom host, passed per request in x-portkey-* headers.
 */
export async function startPortkey(upstreamUrl: string, dir: string): Promise<RunningGateway> {
  const port = await freePort();
  const args = [portkeyServer, `--port=${port}`, '--headless'];
  const proc = startProc({
    name: 'portkey',
    command: process.execPath,
    args,
    env: { NODE_ENV: 'production' },
    logFile: join(dir, 'portkey.log'),
  });
  const base = `http://127.0.0.1:${port}`;
  await waitUntil(proc, async () => (await fetch(`${base}/`)).ok, 60_000, 'its HTTP port');
  return {
    name: 'portkey',
    url: `${base}/v1/chat/completions`,
    headers: {
      'content-type': 'application/json',
      authorization: 'Bearer sk-local',
      'x-portkey-provider': 'openai',
      'x-portkey-custom-host': upstreamUrl,
    },
    proc,
    command: `NODE_ENV=production node ${portkeyServer.replace(`${repoDir}/`, '')} --port=${port} --headless`,
  };
}

/**
 * The LiteLLM proxy (Python, FastAPI on uvicorn with uvloop): one worker, one model
 * `openai/bench-model` whose api_base is the local upstream, a master key (it will not start
 * without one), no database, no callbacks; LITELLM_LOG=ERROR so uvicorn writes no access log line
 * per request.
 */
export async function startLiteLLM(upstreamUrl: string, dir: string): Promise<RunningGateway> {
  const port = await freePort();
  const config = join(dir, 'litellm.yaml');
  // LiteLLM refuses to start without one; checking it is part of its normal request path.
  const masterKey = `sk-bench-${randomBytes(16).toString('hex')}`;
  writeFileSync(
    config,
    [
      'model_list:',
      '  - model_name: bench-model',
      '    litellm_params:',
      '      model: openai/bench-model',
      `      api_base: ${upstreamUrl}`,
      '      api_key: sk-local',
      'general_settings:',
      `  master_key: ${masterKey}`,
      'litellm_settings:',
      '  set_verbose: false',
      '  json_logs: false',
      '',
    ].join('\n'),
  );
  const args = ['--config', config, '--host', '127.0.0.1', '--port', String(port), '--num_workers', '1'];
  // PYTHONDONTWRITEBYTECODE is set on this machine; a deployed LiteLLM has its bytecode cached.
  const env = { LITELLM_LOG: 'ERROR', LITELLM_LOCAL_MODEL_COST_MAP: 'True', PYTHONDONTWRITEBYTECODE: '' };
  const proc = startProc({
    name: 'litellm',
    command: litellmBin,
    args,
    env,
    logFile: join(dir, 'litellm.log'),
  });
  const base = `http://127.0.0.1:${port}`;
  await waitUntil(proc, async () => (await fetch(`${base}/health/liveliness`)).ok, 180_000, 'its HTTP port');
  return {
    name: 'litellm',
    url: `${base}/v1/chat/completions`,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${masterKey}` },
    proc,
    command: `LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True litellm --config litellm.yaml --host 127.0.0.1 --port ${port} --num_workers 1`,
  };
}
