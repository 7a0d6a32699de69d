/**
 * The production-health view's choices (GET /api/v1/dashboard/health and the Models page's
 * panel): the windows it looks back over and the buckets it sums calls into, each with its
 * length. The server validates a query against these and the dashboard offers exactly these.
 */
const hourMs = 3_600_000;
const dayMs = 24 * hourMs;

export const healthWindows = {
  '24h': dayMs,
  '7d': 7 * dayMs,
  '30d': 30 * dayMs,
  '90d': 90 * dayMs,
} as const;
export type HealthWindowName = keyof typeof healthWindows;
export const healthWindowNames = Object.keys(healthWindows) as [HealthWindowName, ...HealthWindowName[]];

export const healthBuckets = { hour: hourMs, day: dayMs } as const;
export type HealthBucketName = keyof typeof healthBuckets;
export const healthBucketNames = Object.keys(healthBuckets) as [HealthBucketName, ...HealthBucketName[]];

/** Hour buckets cover at most 30 days: a chart of thousands of points per model says no more than one per day does. */
export const hourBucketsMaxWindowMs = healthWindows['30d'];

/** Whether `bucket` may be used over `window` (the server refuses the rest; the dashboard never offers it). */
export function healthBucketFits(window: HealthWindowName, bucket: HealthBucketName): boolean {
  return bucket !== 'hour' || healthWindows[window] <= hourBucketsMaxWindowMs;
}
