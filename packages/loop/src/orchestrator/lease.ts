import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Store } from '@ratchet/store';

/** This process's name as a lease holder: unique per process, readable in the database. */
export const leaseHolder = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

/**
 * How long a round's lease lasts without renewal (RATCHET_LOOP_LEASE_SECONDS, default 60): how
 * long the other servers wait before taking over a round whose server died.
 */
export function leaseTtlMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.RATCHET_LOOP_LEASE_SECONDS;
  const seconds = raw === undefined ? 60 : Number(raw);
  if (!(seconds > 0))
    throw new Error(`RATCHET_LOOP_LEASE_SECONDS: expected seconds > 0, got ${JSON.stringify(raw)}`);
  return seconds * 1000;
}

/**
 * Runs `work` holding the route's round lease, so one server at a time advances the route's
 * round however many share the database; undefined (and `work` not run) when another holds it.
 * A heartbeat renews the lease every third of its life while `work` runs; the lease is given up
 * when `work` ends. A holder that dies leaves its lease to expire, and the next server to ask
 * continues the round from the stage its record reached.
 */
export async function withRoundLease<T>(
  store: Store,
  projectId: string,
  route: string,
  work: () => Promise<T>,
  options: { ttlMs?: number; holder?: string; onLost?: (err?: unknown) => void } = {},
): Promise<{ value: T } | undefined> {
  const ttlMs = options.ttlMs ?? leaseTtlMs();
  const holder = options.holder ?? leaseHolder;
  if (!(await store.leases.acquire(projectId, route, holder, ttlMs))) return undefined;
  const heartbeat = setInterval(() => {
    store.leases.acquire(projectId, route, holder, ttlMs).then(
      (kept) => kept || options.onLost?.(),
      (err) => options.onLost?.(err),
    );
  }, ttlMs / 3);
  heartbeat.unref();
  try {
    return { value: await work() };
  } finally {
    clearInterval(heartbeat);
    await store.leases.release(projectId, route, holder);
  }
}
