import { describe, expect, it } from 'vitest';
import { parseGatewayConfig } from './config.js';
import { backoffDelay, CircuitBreakers, RetryBudget } from './failover.js';

describe('retry budget', () => {
  it('allows minPerSecond extra tries per second plus ratio per call over its 10 s window, then refuses until the window rolls', () => {
    let now = 0;
    const budget = new RetryBudget({ ratio: 0.5, minPerSecond: 0.2 }, () => now);
    for (let i = 0; i < 10; i++) budget.call();
    // 0.2/s over 10 s = 2, plus 0.5 of 10 calls = 5: 7 extra tries.
    const granted = Array.from({ length: 10 }, () => budget.spend()).filter(Boolean).length;
    expect(granted).toBe(7);
    now = 10_000;
    expect(budget.spend()).toBe(true);
  });

  it('spends nothing when its ratio and minimum are zero', () => {
    const budget = new RetryBudget({ ratio: 0, minPerSecond: 0 }, () => 0);
    budget.call();
    expect(budget.spend()).toBe(false);
  });
});

describe('backoff with full jitter', () => {
  it('draws each wait uniformly below backoffMs doubled per retry', () => {
    expect(backoffDelay(1, 100, () => 0)).toBe(0);
    expect(backoffDelay(1, 100, () => 0.999)).toBeCloseTo(99.9);
    expect(backoffDelay(3, 100, () => 0.5)).toBe(200);
    const waits = Array.from({ length: 2000 }, () => backoffDelay(2, 100));
    expect(Math.max(...waits)).toBeLessThan(200);
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(0);
    // Spread, not a fixed wait: the clients that failed together do not retry together.
    expect(new Set(waits.map((w) => Math.floor(w / 20))).size).toBe(10);
  });
});

describe('circuit breaker', () => {
  const config = parseGatewayConfig({
    upstreams: { a: { baseURL: 'http://127.0.0.1:1/v1', circuit: { failures: 3, openMs: 1000 } } },
  });

  it('opens after N failures in a row, lets one probe through half-open, reopens on its failure and closes on its success', () => {
    let now = 0;
    const b = new CircuitBreakers(
      (name) => config.upstreams[name]!,
      () => now,
    );
    b.failed('a');
    b.failed('a');
    b.succeeded('a'); // a success resets the count: failures must be in a row
    b.failed('a');
    b.failed('a');
    expect(b.stateOf('a')).toBe('closed');
    b.failed('a');
    expect(b.stateOf('a')).toBe('open');
    expect(b.allow('a')).toBe(false);
    now = 1000;
    expect(b.stateOf('a')).toBe('half-open');
    expect(b.allow('a')).toBe(true);
    expect(b.allow('a')).toBe(false); // one probe at a time
    b.failed('a');
    expect(b.stateOf('a')).toBe('open');
    now = 2500;
    expect(b.allow('a')).toBe(true);
    b.released('a'); // the prober's client left: the next call probes instead
    expect(b.allow('a')).toBe(true);
    b.succeeded('a');
    expect(b.stateOf('a')).toBe('closed');
    expect(b.allow('a')).toBe(true);
  });
});
