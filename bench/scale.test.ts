import { describe, expect, it } from 'vitest';
import type { BenchContext } from './lib/bench.js';
import { assertWellFormed } from './lib/results.js';
import { runBench } from './registry.js';
import { scaleBench } from './scale.js';

const ctx: BenchContext = { tiny: true, profile: false, log: () => {} };

/**
 * bench/scale.ts in its tiny configuration (2,000 interactions, 4,000 ratings): the COPY load
 * writes every row, the rollup rebuild makes the dashboard count all of them, every dashboard
 * API call answers (a failed call throws); child processes calibrate every rating and build KTO
 * and DPO rows, and after 40 new ratings the recalibration continues from the calibration's
 * snapshot and lands within 0.01 of a full refit, with the same raters flagged. Needs PostgreSQL: skipped without
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
      expect(result.metrics.calibrated_ratings_count).toBe(4_000);
      expect(result.metrics.calibrate_build_2k_s).toBeGreaterThan(0);
      expect(result.metrics.calibrate_build_2k_peak_mib).toBeGreaterThan(50);
      expect(result.metrics.kto_rows_count).toBeGreaterThan(0);
      expect(result.metrics.dpo_rows_count).toBeGreaterThan(0);
      expect(result.metrics.new_ratings_count).toBe(40);
      expect(result.metrics.recalibrate_from_snapshot_count).toBe(1);
      expect(result.metrics.recalibrate_speedup_1pct).toBeGreaterThan(0);
      expect(result.metrics.recalibrate_max_reward_diff).toBeLessThan(0.01);
      expect(result.metrics.recalibrate_flag_differences_count).toBe(0);
      // The notes say which server settings the timings ran with.
      expect(result.notes).toMatch(/PostgreSQL \d+(\.\d+)? \([^)]*max_wal_size [^,]+,[^)]*shared_buffers /);
    },
    // Four child processes (each starts node and tsx) on top of the load: minutes on a busy machine.
    300_000,
  );
});
