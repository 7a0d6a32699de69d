import { buildServer, loadServerConfig, type RatchetServer, type ServerConfigInput } from '@ratchet/server';
import { Store } from '@ratchet/store';

export interface ServeOptions extends ServerConfigInput {
  databaseUrl?: string;
}

export interface Running {
  url: string;
  server: RatchetServer;
  store: Store;
  stop(): Promise<void>;
}

/** Starts the server; SIGINT/SIGTERM write buffered interactions and close cleanly. */
export async function startServer(opts: ServeOptions): Promise<Running> {
  const { databaseUrl, ...overrides } = opts;
  const config = loadServerConfig(overrides);
  const store = await Store.open(databaseUrl ?? process.env.RATCHET_DATABASE_URL);
  let server: RatchetServer;
  try {
    server = await buildServer({ store, config });
  } catch (err) {
    await store.close();
    throw err;
  }
  const url = await server.listen();
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
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
