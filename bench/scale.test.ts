import { describe, expect, it } from 'vitest';
import type { BenchContext } from './lib/bench.js';
import { assertWellFormed } from './lib/results.js';
import { runBench } from './registry.js';
import { scaleBench } from './scale.js';

const ctx: BenchContext = { tiny: true, profile: false, log: () => {} };

/**
 * bench/scale.ts in its tiny configuration (2,000 interactions, 4,000 ratings): the COPY load
 * writes every row, the rollup rebuild makes the dashboard count all of them, and every dashboard
 * API call answers (a failed call throws). Needs PostgreSQL: skipped without
 * RATCHET_TEST_POSTGRES_URL, like the store suites' PostgreSQL half.
 */
describe('scale bench (tiny)', () => {
  it.skipIf(!process.env.RATCHET_TEST_POSTGRES_URL)(
    'loads with COPY, rebuilds the rollups and times every dashboard call',
    async () => {
      const result = await runBench(scaleBench, ctx);
      assertWellFormed(result);
      expect(result.metrics.interactions_count).toBe(2_000);
      expect(result.metrics.ratings_count).toBe(4_000);
      expect(result.metrics.overview_interactions_count).toBe(2_000);
      expect(result.metrics.overview_ratings_count).toBe(4_000);
      expect(result.metrics.dashboard_api_ms_max_2k).toBeGreaterThan(0);
      expect(result.metrics).toHaveProperty('api_health_90d_days_ms');
    },
    120_000,
  );
});
