import { RatchetError } from '@ratchet/core';

interface Bucket {
  tokens: number;
  updated: number;
}

/**
 * A token bucket per API key, in this process. Several servers each enforce it on their own
 * share of traffic, which is the usual trade for not needing a shared counter on every request.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}

  take(key: string, now = performance.now()): void {
    if (this.perSecond <= 0) return;
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = { tokens: this.burst, updated: now };
      this.buckets.set(key, bucket);
    }
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.updated) / 1000) * this.perSecond);
    bucket.updated = now;
    if (bucket.tokens < 1)
      throw new RatchetError(
        'rate_limited',
        `rate limit of ${this.perSecond} requests per second for this key exceeded`,
      );
    bucket.tokens -= 1;
  }
}
