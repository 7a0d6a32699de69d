// Smoke test of the dashboard-load bench in its tiny configuration (2,000 interactions, no
// browser): every page's API calls succeed and are timed. The numbers themselves are not checked.
import { describe, expect, it } from 'vitest';
import { dashboardLoad } from './dashboard-load.js';
import type { BenchContext } from './lib/bench.js';
import { runBench } from './registry.js';

const ctx: BenchContext = { tiny: true, profile: false, log: () => {} };

describe('dashboard-load bench (tiny)', () => {
  it("times every page's API calls on a seeded project", async () => {
    const result = await runBench(dashboardLoad, ctx);
    expect(result.bench).toBe('dashboard-load');
    expect(result.metrics.interactions_count).toBe(2000);
    for (const page of ['overview', 'explorer', 'explorer_filtered', 'interaction', 'queue', 'raters']) {
      expect(result.metrics[`api_${page}_ms`]).toBeGreaterThan(0);
    }
    for (const page of ['analysis', 'datasets', 'runs', 'models', 'what_changed'])
      expect(Number.isFinite(result.metrics[`api_${page}_ms`])).toBe(true);
    expect(result.metrics.report_analysis_compute_s).toBeGreaterThan(0);
    // The explorer was opened while the reports computed on the report thread.
    expect(result.metrics.explorer_during_report_compute_p50_ms).toBeGreaterThan(0);
    expect(result.metrics.api_max_100k_ms).toBe(
      Math.max(
        ...Object.entries(result.metrics)
          .filter(([k]) => /^api_.*_ms$/.test(k) && k !== 'api_max_100k_ms')
          .map(([, v]) => v),
      ),
    );
    expect(result.notes).toContain('2000 interactions');
  }, 120_000);
});
