import { calibrateBuild } from './calibrate-build.js';
import { dashboardLoad } from './dashboard-load.js';
import { demoBench, demoRealisticBench } from './demo.js';
import { experimentsBench } from './experiments/experiments.js';
import { feedbackEfficiency } from './feedback-efficiency.js';
import { gatesBench } from './gates.js';
import { gatewayLatency } from './gateway-latency.js';
import { guardrailBench } from './guardrail.js';
import { ingest } from './ingest.js';
import type { Bench, BenchContext } from './lib/bench.js';
import { type BenchResultFile, commit, machine, packagesDirty, round } from './lib/results.js';
import { personalizeBench } from './personalize.js';
import { recalibrateBench } from './recalibrate.js';
import { scaleBench } from './scale.js';
import { serveBench } from './serve.js';
import { trainThroughput } from './train-throughput.js';

/** Every benchmark, in the order `bench/run.ts` runs them. */
export const benches: Bench[] = [
  gatewayLatency,
  ingest,
  calibrateBuild,
  recalibrateBench,
  experimentsBench,
  guardrailBench,
  gatesBench,
  dashboardLoad,
  scaleBench,
  trainThroughput,
  feedbackEfficiency,
  personalizeBench,
  serveBench,
  demoBench,
  demoRealisticBench,
];

/** The metrics each bench shows in the README table. */
export function keyMetrics(): Record<string, string[]> {
  return Object.fromEntries(benches.map((b) => [b.name, b.keyMetrics]));
}

/** Runs one bench and returns its result in the format of ../shared/BENCH.md (not yet written). */
export async function runBench(bench: Bench, ctx: BenchContext): Promise<BenchResultFile> {
  const started = Date.now();
  const date = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  // The commit the run started on (others may commit while a long bench runs).
  const startCommit = commit();
  const outcome = await bench.run(ctx);
  const dirty = packagesDirty() ? ' packages/ had uncommitted changes when this ran.' : '';
  ctx.log(`${bench.name} took ${round((Date.now() - started) / 1000, 1)} s`);
  return {
    bench: bench.name,
    date,
    commit: startCommit,
    machine: machine(),
    metrics: outcome.metrics,
    notes: outcome.notes + dirty,
  };
}
