import { type LoopPolicy, loadLoopPolicies, queueObjective } from '@ratchet/loop';
import { buildServer, loadServerConfig, type RatchetServer, type ServerConfigInput } from '@ratchet/server';
import { Store } from '@ratchet/store';
import { runLoopPass } from './loop.js';

export interface ServeOptions extends ServerConfigInput {
  databaseUrl?: string;
  /** Run the loop inside the server: a policy file and the project it improves. */
  loop?: { policyPath: string; project: string; modelsUrl?: string };
}

export interface Running {
  url: string;
  server: RatchetServer;
  store: Store;
  stop(): Promise<void>;
}

/** Starts the server; SIGINT/SIGTERM write buffered interactions and close cleanly. */
export async function startServer(opts: ServeOptions): Promise<Running> {
  const { databaseUrl, loop, ...overrides } = opts;
  const config = loadServerConfig(overrides);
  const store = await Store.open(databaseUrl ?? process.env.RATCHET_DATABASE_URL);
  let server: RatchetServer;
  let policies: LoopPolicy[] = [];
  let loopTimer: LoopTimer | undefined;
  try {
    policies = loop ? loadLoopPolicies(loop.policyPath) : [];
    const queueObjectives = Object.fromEntries(policies.map((p) => [p.route, queueObjective(p)]));
    // A person's approval or rejection through the API wakes the loop instead of waiting a tick.
    server = await buildServer({ store, config, queueObjectives, onLoopReviewed: () => loopTimer?.pass() });
  } catch (err) {
    await store.close();
    throw err;
  }
  const url = await server.listen();
  loopTimer = loop ? await startLoopTimer(store, server, loop, policies) : undefined;
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      loopTimer?.stop();
      await loopTimer?.idle();
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
