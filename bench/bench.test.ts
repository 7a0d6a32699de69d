// Smoke test of the benchmarks' machinery: each bench in its tiny configuration (about a second
// of load, SQLite only, no competitors) must produce a well-formed result. The numbers are not
// checked: this only catches a broken bench before someone runs the real one.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DemoRecord } from '../packages/cli/src/demo/loop-demo.js';
import { demoMetrics } from './demo.js';
import type { BenchContext } from './lib/bench.js';
import { runOpenLoop } from './lib/openloop.js';
import { type BenchResultFile, resultsTable, updateReadme, writeResult } from './lib/results.js';
import { percentile } from './lib/stats.js';
import { benches, keyMetrics, runBench } from './registry.js';

const ctx: BenchContext = { tiny: true, profile: false, log: () => {} };

function expectWellFormed(r: BenchResultFile, name: string) {
  expect(r.bench).toBe(name);
  expect(Number.isNaN(Date.parse(r.date))).toBe(false);
  expect(r.commit).toMatch(/^[0-9a-f]{4,40}$|^unknown$/);
  expect(r.machine.cpus).toBeGreaterThan(0);
  expect(r.machine.gpu).toBeNull();
  expect(r.notes.length).toBeGreaterThan(20);
  for (const v of Object.values(r.metrics)) expect(Number.isFinite(v)).toBe(true);
}

describe('bench machinery', () => {
  it('computes nearest-rank percentiles', () => {
    const s = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(s, 50)).toBe(50);
    expect(percentile(s, 99)).toBe(99);
    expect(percentile(s, 100)).toBe(100);
    expect(percentile(Float64Array.of(7), 99)).toBe(7);
  });

  it('writes results in the BENCH.md format and one README line per bench', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ratchet-bench-'));
    try {
      const readme = join(dir, 'README.md');
      writeFileSync(readme, '# Benchmarks\n\nHow to run them.\n');
      const result: BenchResultFile = {
        bench: 'gateway-latency',
        date: '2026-11-24T10:00:00Z',
        commit: '3f2a9c1',
        machine: { cpus: 2, memory_gb: 24, gpu: null },
        metrics: { gateway_added_p50_ms: 0.41, gateway_added_p99_ms: 2.9 },
        notes: 'a | pipe',
      };
      writeResult(result, join(dir, 'results'));
      expect(() => writeResult({ ...result, metrics: { no_unit: 1 } }, join(dir, 'results'))).toThrow(/unit/);
      updateReadme(keyMetrics(), readme, join(dir, 'results'));
      updateReadme(keyMetrics(), readme, join(dir, 'results'));
      const text = readFileSync(readme, 'utf8');
      expect(text).toContain('How to run them.');
      expect(text.match(/\| gateway-latency \|/g)).toHaveLength(1);
      expect(text).toContain('gateway_added_p50_ms=0.41, gateway_added_p99_ms=2.9');
      expect(text).toContain('a \\| pipe');
      expect(resultsTable([result], {})).toContain('gateway_added_p99_ms=2.9');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("sums the demo's records into well-formed metrics (the smallest end, the mean gain, every failed call)", () => {
    const record = (seed: number, start: number, end: number, failedCalls: number) => ({
      record: {
        seed,
        population: 'realistic' as const,
        rounds: [
          { round: 1, experiment: 'ship', outcome: 'succeeded' },
          { round: 2, experiment: 'no_effect', outcome: 'rolled_back' },
        ] as DemoRecord['rounds'],
        trueQualityStart: start,
        trueQualityEnd: end,
        finalModel: 'm',
        calls: 100,
        failedCalls,
        seconds: 60,
        complete: true,
      },
      minutes: 1,
    });
    const m = demoMetrics('realistic', [record(7, 0.3, 0.7, 0), record(8, 0.2, 0.4, 2)]);
    expect(m.realistic_true_quality_end_min).toBe(0.4);
    expect(m.realistic_true_quality_gain).toBe(0.3);
    expect(m.realistic_failed_calls).toBe(2);
    expect(m.realistic_seed8_true_quality_start).toBe(0.2);
    expect(m.realistic_seed8_promoted_count).toBe(1);
    const result: BenchResultFile = {
      bench: 'demo-realistic',
      date: '2026-12-05T10:00:00Z',
      commit: 'abc1234',
      machine: { cpus: 2, memory_gb: 24, gpu: null },
      metrics: m,
      notes: 'n',
    };
    expect(() => writeResult(result, mkdtempSync(join(tmpdir(), 'ratchet-bench-')))).not.toThrow();
  });

  it('sends open-loop load at the fixed rate and reports errors', async () => {
    const r = await runOpenLoop({
      url: 'http://127.0.0.1:9/v1/chat/completions',
      headers: {},
      bodies: ['{}'],
      rate: 100,
      warmupS: 0,
      durationS: 0.1,
    });
    expect(r.sent).toBe(10);
    expect(r.errors).toBe(10);
    expect(r.first_error).toBeTruthy();
  });

  // The server benches start real processes (upstream, `ratchet serve`); run them side by side.
  describe.concurrent('tiny runs', () => {
    it('calibrate-build produces well-formed metrics from a small synthetic project', async () => {
      const result = await runBench(benches.find((b) => b.name === 'calibrate-build')!, ctx);
      expectWellFormed(result, 'calibrate-build');
      expect(result.metrics.ratings_count).toBe(15_000);
      expect(result.metrics.bias_recovery_corr).toBeGreaterThan(0.9);
      expect(result.metrics.calibrated_label_accuracy).toBeGreaterThan(result.metrics.raw_label_accuracy!);
    }, 60_000);
    for (const name of ['gateway-latency', 'ingest']) {
      it(`${name} produces well-formed metrics`, async () => {
        const bench = benches.find((b) => b.name === name)!;
        const result = await runBench(bench, ctx);
        expectWellFormed(result, name);
        if (name === 'gateway-latency') {
          for (const m of [
            'direct_p50_ms',
            'gateway_added_p50_ms',
            'gateway_added_p99_ms',
            'gateway_added_ttft_ms',
          ])
            expect(result.metrics).toHaveProperty(m);
          expect(result.metrics.gateway_logged_ratio).toBe(1);
        } else {
          for (const m of ['ingest_single_sqlite_per_s', 'ingest_batched_sqlite_per_s'])
            expect(result.metrics[m]).toBeGreaterThan(0);
          expect(result.metrics.ingest_sqlite_stored_ratio).toBe(1);
        }
      }, 30_000);
    }
  });

  it('guardrail rolls back every planted drop through the real store, and both paths decide alike', async () => {
    const result = await runBench(benches.find((b) => b.name === 'guardrail')!, ctx);
    expectWellFormed(result, 'guardrail');
    expect(result.metrics.guardrail_drop_rolled_back_rate).toBe(1);
    expect(result.metrics.guardrail_store_pure_agreement_rate).toBe(1);
    expect(result.metrics.guardrail_users_to_rollback_p50).toBeLessThanOrEqual(6000);
  }, 300_000);

  // Not concurrent with the server benches: it trains on the same two cores. One step of dpo
  // (TRL-backed) and of rwsft (ours) on 8 pairs, each beside TRL's trainer, on the test preset
  // (built into bench/.work/models once, about 30 s); then dpo on the 20m size's 256-token rows
  // beside TRL with and without gradient checkpointing, on the same preset.
  it('train-throughput trains ours and TRL on the same rows and reports both', async () => {
    const result = await runBench(benches.find((b) => b.name === 'train-throughput')!, ctx);
    expectWellFormed(result, 'train-throughput');
    for (const m of ['dpo', 'rwsft']) {
      expect(result.metrics[`train_tokens_per_s_cpu_${m}`]).toBeGreaterThan(0);
      expect(result.metrics[`trl_tokens_per_s_cpu_${m}`]).toBeGreaterThan(0);
      expect(result.metrics[`tokens_${m}_count`]).toBeGreaterThan(100);
    }
    // dpo starts from the same model on the same rows: the first steps' losses must agree.
    expect(Math.abs(result.metrics.final_loss_gap_vs_trl_dpo_ratio!)).toBeLessThan(0.05);
    expect(result.metrics.train_speedup_vs_trl).toBeGreaterThan(0);
    // The 20m size's path: dpo against TRL's defaults and TRL without checkpointing. Two steps
    // in different batch orders: the mean loss over the epoch (every row once) must agree.
    expect(result.metrics.train_speedup_vs_trl_20m_min).toBeGreaterThan(0);
    expect(result.metrics.train_speedup_vs_trl_20m_nockpt_min).toBeGreaterThan(0);
    expect(Math.abs(result.metrics.epoch_mean_loss_gap_vs_trl_20m_dpo_ratio!)).toBeLessThan(0.05);
    // Checkpointing recomputes the same forward: TRL's loss is the same with it and without.
    expect(result.metrics.final_loss_gap_vs_trl_20m_nockpt_dpo_ratio).toBeCloseTo(
      result.metrics.final_loss_gap_vs_trl_20m_dpo_ratio!,
      3,
    );
  }, 600_000);

  // Not concurrent with the server benches: the worker generates on the same two cores. Eight
  // calls one at a time and eight at once, 8 tokens each, on the test preset.
  it('serve measures one call at a time and eight at once on the same worker', async () => {
    const result = await runBench(benches.find((b) => b.name === 'serve')!, ctx);
    expectWellFormed(result, 'serve');
    expect(result.metrics.serve_failed_calls_count).toBe(0);
    expect(result.metrics.serve_1_at_once_tokens_per_s).toBeGreaterThan(0);
    expect(result.metrics.serve_8_at_once_tokens_per_s).toBeGreaterThan(0);
    expect(result.metrics.serve_concurrency_speedup).toBeGreaterThan(0);
    expect(result.metrics.serve_mixed_adapters_speedup_ratio).toBeGreaterThan(0);
  }, 600_000);

  // The whole pipeline on the test preset: pool sampled through `ratchet-worker serve`, simulated
  // ratings into SQLite, calibration, a dataset, one kto training, the active-learning queue,
  // and the oracle's measure of base and trained model.
  it('feedback-efficiency rates, calibrates, trains and measures one budget', async () => {
    const result = await runBench(benches.find((b) => b.name === 'feedback-efficiency')!, ctx);
    expectWellFormed(result, 'feedback-efficiency');
    expect(result.metrics.rows_kto_24_count).toBeGreaterThan(0);
    for (const m of ['quality_base_rate', 'quality_kto_24_rate']) {
      expect(result.metrics[m]).toBeGreaterThanOrEqual(0);
      expect(result.metrics[m]).toBeLessThanOrEqual(1);
    }
    // The test preset's answers are almost never liked: active learning may find no positives to
    // train sft on, and then the arm is reported as not trained rather than as the base.
    expect(result.metrics.rows_sft_al_24_count).toBeGreaterThanOrEqual(0);
    if (result.metrics.rows_sft_al_24_count === 0)
      expect(result.metrics.quality_sft_al_24_rate).toBeUndefined();
  }, 600_000);
});
