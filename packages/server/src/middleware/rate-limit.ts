import { RatchetError } from '@ratchet/core';

interface Bucket {
  tokens: number;
  updated: number;
}

/** A per-key request counter every server on one database shares (the store's rate windows). */
export interface SharedCounter {
  hit(key: string, windowStart: number): Promise<number>;
  prune(before: number): Promise<void>;
}

/**
 * A token bucket per key (an API key, or an end user of the public feedback API), in this
 * process. With a shared counter (PostgreSQL, where several servers share the database), `admit`
 * also counts the key across all of them in fixed windows of `burst / perSecond` seconds that
 * allow `burst` requests each: the same average rate, held however many servers take the traffic.
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
    private readonly shared?: SharedCounter,
  ) {}

  private prunedAt = 0;

  /** `take`, then (with a shared counter) the key's count across every server. */
  async admit(key: string, now = Date.now()): Promise<void> {
    this.take(key);
    if (!this.shared || this.perSecond <= 0) return;
    const windowMs = Math.max(1, Math.round((this.burst / this.perSecond) * 1000));
    const windowStart = Math.floor(now / windowMs) * windowMs;
    // Ended windows count nothing; one process dropping them a minute apart keeps the table small.
    if (now - this.prunedAt > 60_000) {
      this.prunedAt = now;
      void this.shared.prune(windowStart - windowMs).catch(() => {});
    }
    if ((await this.shared.hit(key, windowStart)) > this.burst) throw this.exceeded();
  }

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
    if (bucket.tokens < 1) throw this.exceeded();
    bucket.tokens -= 1;
  }

  private exceeded(): RatchetError {
    return new RatchetError(
      'rate_limited',
      `rate limit of ${this.perSecond} requests per second for ${this.subject} exceeded`,
    );
  }

  private evictOldest(): void {
    const oldest = this.buckets.keys().next();
    if (!oldest.done) this.buckets.delete(oldest.value);
  }
}
