import { setFlagsFromString } from 'node:v8';

/** `ratchet serve`'s default: the old generation may grow to 4x what survived the last full GC. */
export const DEFAULT_HEAP_GROWING_PERCENT = 300;

/**
 * RATCHET_HEAP_GROWING_PERCENT: how far V8 lets the old generation grow past what survived the
 * last full (mark-compact) collection before it starts the next, in percent. 0 keeps V8's own
 * choice. Anything else is an error naming the variable, before the server starts.
 */
export function heapGrowingPercent(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.RATCHET_HEAP_GROWING_PERCENT;
  if (raw === undefined || raw === '') return DEFAULT_HEAP_GROWING_PERCENT;
  // Decimal digits only: Number() would also take "0x10", " 7" or "1e2".
  const value = /^\d{1,4}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value <= 1000))
    throw new Error(`RATCHET_HEAP_GROWING_PERCENT must be an integer from 0 to 1000, got "${raw}"`);
  return value;
}

/**
 * Gives the server's heap room between full collections. A gateway's heap is small (about 40 MB
 * live at 1,000 req/s) and V8 sizes the next collection's limit from it, about 1.5x: the calls'
 * medium-lived garbage (the log's buffer, answers in flight) refilled that in about 4.5 s, so a
 * mark-compact ran every 4.5 s, each with main-thread marking steps of up to 13 ms, and each
 * left a burst of 40 to 90 calls slower than 5 ms behind it: most of the p99 at that rate
 * (bench/README.md, gateway-latency). At 4x the limit is about 160 MB and full collections come
 * every minute or so; the cost is that much more resident memory. V8 reads the factor whenever
 * it sets a new limit, so setting it at start-up takes effect from the first full collection.
 */
export function tuneHeapGrowth(env: NodeJS.ProcessEnv = process.env): void {
  const percent = heapGrowingPercent(env);
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}
