import {
  applyRetentionToAll,
  type GuardrailWebhook,
  guardrailWebhookFromEnv,
  type LoopPolicy,
  loadLoopPolicies,
  lookAtOpenWatches,
  queueObjective,
} from '@ratchet/loop';
import {
  buildServer,
  gatewayFacts,
  loadServerConfig,
  type RatchetServer,
  type ServerConfigInput,
} from '@ratchet/server';
import { Store } from '@ratchet/store';
import type { Command } from 'commander';
import { nonNegativeInteger } from '../arguments.js';
import { tuneHeapGrowth } from '../heap-growth.js';
import { runLoopPass } from './loop.js';
import { createFirstOwner } from './users.js';

export interface ServeOptions extends ServerConfigInput {
  databaseUrl?: string;
  /** Run the loop inside the server: a policy file and the project it improves. */
  loop?: { policyPath: string; project: string; modelsUrl?: string };
  /** Seconds between looks at the open promotion watches (default 60; RATCHET_WATCH_LOOK_SECONDS). */
  watchLookSeconds?: number;
  /** Seconds between applications of the projects' retention policies (default 3600; RATCHET_RETENTION_CHECK_SECONDS). */
  retentionCheckSeconds?: number;
  /** Seconds between roll-forwards of the dashboard's rollups (default 10; RATCHET_ROLLUP_SECONDS). */
  rollupSeconds?: number;
}

export interface Running {
  url: string;
  server: RatchetServer;
  store: Store;
  stop(): Promise<void>;
}

/** Starts the server; SIGINT/SIGTERM write buffered interactions and close cleanly. */
export async function startServer(opts: ServeOptions): Promise<Running> {
  const { databaseUrl, loop, watchLookSeconds, retentionCheckSeconds, rollupSeconds, ...overrides } = opts;
  const config = loadServerConfig(overrides);
  // Read before anything starts: half a webhook configuration is an error, not a silent no.
  const webhook = guardrailWebhookFromEnv();
  const store = await Store.open(databaseUrl ?? process.env.RATCHET_DATABASE_URL);
  let server: RatchetServer;
  let policies: LoopPolicy[] = [];
  let loopTimer: LoopTimer | undefined;
  try {
    policies = loop ? loadLoopPolicies(loop.policyPath) : [];
    const queueObjectives = Object.fromEntries(policies.map((p) => [p.route, queueObjective(p)]));
    const queueTerms = Object.fromEntries(policies.map((p) => [p.route, p.annotation]));
    // A person's approval or rejection through the API wakes the loop instead of waiting a tick.
    server = await buildServer({
      store,
      config,
      queueObjectives,
      queueTerms,
      onLoopReviewed: () => loopTimer?.pass(),
    });
  } catch (err) {
    await store.close();
    throw err;
  }
  const url = await server.listen();
  const owner = await createFirstOwner(store);
  if (owner)
    // The only time this password is shown: it is stored as an argon2 hash.
    console.error(
      `first run: created the owner ${owner.email} of project "${owner.project}" with the password ${owner.password}` +
        ' (shown once; sign in at the dashboard, change it with `ratchet users reset-password`)',
    );
  loopTimer = loop ? await startLoopTimer(store, server, loop, policies) : undefined;
  const watchTimer = startWatchTimer(
    store,
    server,
    webhook,
    watchLookSeconds ?? Number(process.env.RATCHET_WATCH_LOOK_SECONDS ?? 60),
  );
  const retentionTimer = startRetentionTimer(
    store,
    server,
    retentionCheckSeconds ?? Number(process.env.RATCHET_RETENTION_CHECK_SECONDS ?? 3600),
  );
  const rollupTimer = startRollupTimer(
    store,
    server,
    rollupSeconds ?? Number(process.env.RATCHET_ROLLUP_SECONDS ?? 10),
  );
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      loopTimer?.stop();
      watchTimer.stop();
      retentionTimer.stop();
      rollupTimer.stop();
      await loopTimer?.idle();
      await watchTimer.idle();
      await retentionTimer.idle();
      await rollupTimer.idle();
      await server.close();
      await store.close();
    })();
    return stopping;
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      server.app.log.info({ signal }, 'shutting down');
      stop().then(
        () => process.exit(0),
        (err) => {
          console.error(err);
          process.exit(1);
        },
      );
    });
  }
  return { url, server, store, stop };
}

interface LoopTimer {
  stop(): void;
  idle(): Promise<void>;
  /** Runs a pass now (after the one under way). */
  pass(): void;
}

/**
 * The loop inside `ratchet serve`: a pass over the policies (continue each route's round, or
 * start one when its trigger fired) every `checkEveryMinutes` of the first policy, one pass at a
 * time. Models are reached through the gateway upstream each policy names unless `modelsUrl` says
 * otherwise.
 */
async function startLoopTimer(
  store: Store,
  server: RatchetServer,
  loop: NonNullable<ServeOptions['loop']>,
  policies: LoopPolicy[],
): Promise<LoopTimer> {
  const project = await store.projects.getByName(loop.project);
  if (!project) throw new Error(`--loop-project: no project named "${loop.project}"`);
  const upstream = server.gatewayConfig?.upstreams[policies[0]!.upstream];
  const modelsUrl = loop.modelsUrl ?? upstream?.baseURL;
  if (!modelsUrl)
    throw new Error(
      `--loop-policy: the gateway has no upstream "${policies[0]!.upstream}" to reach the models; give --loop-models-url`,
    );
  const log = (line: string) => server.app.log.info({ loop: true }, line);
  let running: Promise<void> = Promise.resolve();
  const pass = () => {
    running = running
      .then(() => runLoopPass(store, project.id, { policy: loop.policyPath, modelsUrl }, log))
      .catch((err) => server.app.log.error({ err }, 'loop pass failed'));
  };
  const timer = setInterval(pass, policies[0]!.trigger.checkEveryMinutes * 60_000);
  timer.unref();
  pass();
  return { stop: () => clearInterval(timer), idle: () => running, pass };
}

/**
 * The guardrail inside `ratchet serve`: a look at every open promotion watch every `seconds`, one
 * pass at a time. It runs whether or not the loop does: a model promoted by hand is watched too.
 */
function startWatchTimer(
  store: Store,
  server: RatchetServer,
  webhook: GuardrailWebhook | undefined,
  seconds: number,
): { stop(): void; idle(): Promise<void> } {
  if (!(seconds > 0)) throw new Error(`watch look interval: expected seconds > 0, got ${seconds}`);
  const gateway = server.gatewayConfig ? gatewayFacts(server.gatewayConfig) : undefined;
  let running: Promise<void> = Promise.resolve();
  // Stopping cuts a webhook's retries short, so a receiver that is down cannot hold up shutdown.
  const stopping = new AbortController();
  const pass = () => {
    running = running
      .then(async () => {
        for (const out of await lookAtOpenWatches(store, { webhook, gateway, signal: stopping.signal }))
          if (out.decision !== 'continue')
            server.app.log.info(
              { watch: out.watch.id, route: out.watch.route, reasons: out.reasons },
              `watch ${out.decision}`,
            );
      })
      .catch((err) => server.app.log.error({ err }, 'watch look failed'));
  };
  const timer = setInterval(pass, seconds * 1000);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      stopping.abort();
    },
    idle: () => running,
  };
}

/** `ratchet serve`: the server, optionally with the loop inside it. */
export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('Run the server: capture API, feedback API, OTLP ingest and the OpenAI-compatible gateway')
    .option('--host <host>', 'address to listen on (RATCHET_HOST, default 127.0.0.1)')
    .option('--port <port>', 'port to listen on (RATCHET_PORT, default 4400)', nonNegativeInteger)
    .option('--gateway-config <file>', 'upstreams and routes, YAML or JSON (RATCHET_GATEWAY_CONFIG)')
    .option('--loop-policy <file>', 'run the improvement loop inside the server with these policies')
    .option('--loop-project <name>', 'the project the loop improves (with --loop-policy)')
    .option(
      '--loop-models-url <url>',
      "where the loop reaches the route's models (default: the policy's gateway upstream)",
    )
    .action(
      async (opts: {
        host?: string;
        port?: number;
        gatewayConfig?: string;
        loopPolicy?: string;
        loopProject?: string;
        loopModelsUrl?: string;
      }) => {
        if (opts.loopPolicy && !opts.loopProject) throw new Error('--loop-policy needs --loop-project');
        // The process is a server from here on: fewer, later full collections (see heap-growth.ts).
        tuneHeapGrowth();
        const { url } = await startServer({
          ...program.opts(),
          host: opts.host,
          port: opts.port,
          gatewayConfigPath: opts.gatewayConfig,
          ...(opts.loopPolicy
            ? {
                loop: {
                  policyPath: opts.loopPolicy,
                  project: opts.loopProject!,
                  modelsUrl: opts.loopModelsUrl,
                },
              }
            : {}),
        });
        console.log(`ratchet listening on ${url}`);
      },
    );
}

/**
 * The dashboard's rollups rolled forward every `seconds` for every project with logged hours, so
 * the log of stale hours stays short and a dashboard read finds little left to recompute.
 */
function startRollupTimer(
  store: Store,
  server: RatchetServer,
  seconds: number,
): { stop(): void; idle(): Promise<void> } {
  if (!(seconds > 0)) throw new Error(`rollup interval: expected seconds > 0, got ${seconds}`);
  let running: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    running = running
      .then(async () => {
        for (const projectId of await store.rollups.staleProjects())
          await store.rollups.rollForward(projectId);
      })
      .catch((err) => server.app.log.error({ err }, 'rollup pass failed'));
  }, seconds * 1000);
  timer.unref();
  return { stop: () => clearInterval(timer), idle: () => running };
}

/**
 * Retention inside `ratchet serve`: every project's policy applied every `seconds` (and once at
 * start), one pass at a time. Each batch it deletes is audited by the store as actor `retention`.
 */
function startRetentionTimer(
  store: Store,
  server: RatchetServer,
  seconds: number,
): { stop(): void; idle(): Promise<void> } {
  if (!(seconds > 0)) throw new Error(`retention check interval: expected seconds > 0, got ${seconds}`);
  let running: Promise<void> = Promise.resolve();
  const pass = () => {
    running = running
      .then(async () => {
        // PostgreSQL: the coming months' partitions exist before their first write (none on SQLite).
        const made = await store.partitions.createAhead();
        if (made.length > 0) server.app.log.info({ partitions: made }, 'partitions created ahead');
        for (const r of await applyRetentionToAll(store))
          server.app.log.info(
            {
              project: r.projectId,
              days: r.policy.days,
              counts: r.counts,
              datasets: r.datasets.length,
              partitions: r.partitions,
            },
            'retention deleted interactions',
          );
      })
      .catch((err) => server.app.log.error({ err }, 'retention pass failed'));
  };
  const first = setTimeout(pass, 1000);
  first.unref();
  const timer = setInterval(pass, seconds * 1000);
  timer.unref();
  return {
    stop: () => {
      clearTimeout(first);
      clearInterval(timer);
    },
    idle: () => running,
  };
}
