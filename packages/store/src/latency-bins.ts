/**
 * The latency histogram of the dashboard's rollups. Percentiles of an hour, a day or a month are
 * read from per-hour bin counts instead of raw rows, so the bins fix the resolution: every
 * millisecond up to 20 ms has its own bin, then each bin is 5% wider than the one before (about
 * 430 bins up to 2^31 ms). A percentile is reported as the upper edge of the bin that holds the
 * exact nearest-rank latency, so it is never below it and at most max(1 ms, 5%) above it.
 */
const GROWTH = 1.05;
const LAST_EDGE = 2 ** 31;

/** Upper edges (ms) of the bins, ascending: bin k holds latencies in (edge[k-1], edge[k]]. */
export const LATENCY_BIN_EDGES: readonly number[] = (() => {
  const edges = [0];
  for (let e = 1; e < LAST_EDGE; e = Math.max(e + 1, Math.floor(e * GROWTH))) edges.push(e);
  edges.push(LAST_EDGE);
  return edges;
})();

/** The bin of a latency (ms): the first whose upper edge is at or above it; beyond the last, the last. */
export function latencyBin(ms: number): number {
  let lo = 0;
  let hi = LATENCY_BIN_EDGES.length - 1;
  if (ms >= LATENCY_BIN_EDGES[hi]!) return hi;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (LATENCY_BIN_EDGES[mid]! >= ms) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Bin counts, as stored: `[[bin, count], ...]` in bin order. */
export type LatencyBins = [number, number][];

export function addToBins(into: Map<number, number>, bins: LatencyBins): void {
  for (const [bin, n] of bins) into.set(bin, (into.get(bin) ?? 0) + n);
}

export function binsOf(counts: Map<number, number>): LatencyBins {
  return [...counts.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * Nearest-rank percentile (the ceil(percent·n/100)-th smallest, as the raw query and the watch
 * read them) from bin counts (a map, or `[[bin, count], ...]` in bin order): the upper edge of the bin where the running count reaches that
 * rank. `percent` is a whole number so the rank is integer arithmetic, as in SQL.
 */
export function binPercentile(counts: Map<number, number> | LatencyBins, percent: number): number | null {
  // Stored bins are in bin order already (binsOf wrote them): only counts need sorting.
  const bins = counts instanceof Map ? binsOf(counts) : counts;
  const n = bins.reduce((s, [, c]) => s + c, 0);
  if (n === 0) return null;
  const rank = Math.floor((n * percent + 99) / 100);
  let seen = 0;
  for (const [bin, c] of bins) {
    seen += c;
    if (seen >= rank) return LATENCY_BIN_EDGES[bin]!;
  }
  return LATENCY_BIN_EDGES[bins.at(-1)![0]]!;
}
