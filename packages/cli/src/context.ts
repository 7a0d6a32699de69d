import { Store } from '@ratchet/store';

export interface GlobalOptions {
  databaseUrl?: string;
}

/** Opens the store named by --database-url or RATCHET_DATABASE_URL (default: the embedded SQLite file). */
export async function withStore<T>(opts: GlobalOptions, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await Store.open(opts.databaseUrl ?? process.env.RATCHET_DATABASE_URL);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

export async function projectIdByName(store: Store, name: string): Promise<string> {
  const project = await store.projects.getByName(name);
  if (!project)
    throw new Error(`no project named "${name}" (create one with: ratchet keys create --project ${name})`);
  return project.id;
}
