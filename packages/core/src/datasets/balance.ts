/**
 * Caps each segment's share of the data so that no group dominates what the model learns
 * (e.g. the most active customers' tastes). Deterministic: keeps each segment's first rows in
 * the given order; rows without a segment are never dropped.
 */
export function balanceBySegment<R extends { segment?: string | undefined }>(
  rows: readonly R[],
  maxShare: number,
): { kept: R[]; dropped: R[] } {
  if (maxShare >= 1) return { kept: [...rows], dropped: [] };
  const counts = new Map<string, number>();
  for (const r of rows) if (r.segment !== undefined) counts.set(r.segment, (counts.get(r.segment) ?? 0) + 1);
  const segments = [...counts.values()];
  if (segments.length < 2) return { kept: [...rows], dropped: [] };
  const unsegmented = rows.length - segments.reduce((a, b) => a + b, 0);
  // Largest cap c such that every segment's share c / total stays <= maxShare, where the total
  // itself shrinks as segments are capped: solve by lowering c until it holds.
  const sorted = [...segments].sort((a, b) => b - a);
  let cap = sorted[0]!;
  const total = (c: number) => unsegmented + segments.reduce((s, n) => s + Math.min(n, c), 0);
  while (cap > 1 && cap / total(cap) > maxShare) cap--;
  const used = new Map<string, number>();
  const kept: R[] = [];
  const dropped: R[] = [];
  for (const r of rows) {
    if (r.segment === undefined) {
      kept.push(r);
      continue;
    }
    const n = used.get(r.segment) ?? 0;
    if (n < cap) {
      used.set(r.segment, n + 1);
      kept.push(r);
    } else dropped.push(r);
  }
  return { kept, dropped };
}
