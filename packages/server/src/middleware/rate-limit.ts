import { RatchetError } from '@ratchet/core';

interface Bucket {
  tokens: number;
  updated: number;
}

/**
 * A token bucket per key (an API key, or an end user of the public feedback API), in this
 * process. Several servers each enforce it on their own share of traffic, which is the usual
 * trade for not needing a shared counter on every request.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    /** What one bucket belongs to, for the 429's message. */
    private readonly subject = 'this key',
    /** Buckets kept at most; beyond it the least recently used go (end users are unbounded). */
    private readonly maxBuckets = 100_000,
  ) {}

  take(key: string, now = performance.now()): void {
    if (this.perSecond <= 0) return;
    let bucket = this.buckets.get(key);
    if (bucket) this.buckets.delete(key);
    else {
      bucket = { tokens: this.burst, updated: now };
      if (this.buckets.size >= this.maxBuckets) this.evictOldest();
    }
    // Re-inserted on every use, so the map's order is least recently used first.
    this.buckets.set(key, bucket);
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.updated) / 1000) * this.perSecond);
    bucket.updated = now;
    if (bucket.tokens < 1)
      throw new RatchetError(
        'rate_limited',
        `rate limit of ${this.perSecond} requests per second for ${this.subject} exceeded`,
      );
    bucket.tokens -= 1;
  }

  private evictOldest(): void {
    const oldest = this.buckets.keys().next();
    if (!oldest.done) this.buckets.delete(oldest.value);
  }
}
