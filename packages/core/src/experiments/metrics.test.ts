import { describe, expect, it } from 'vitest';
import { implicitSignals } from '../schemas/feedback.js';
import { decideExperiment, ExperimentDecisionConfig } from './decision.js';
import {
  experimentMetric,
  experimentMetricDefinitions,
  experimentMetricNames,
  implicitSignalMetric,
  metricHigherIsBetter,
  netImplicitMetrics,
} from './metrics.js';

describe('experiment metric definitions', () => {
  it('name one metric per implicit signal, and each implicit metric reads its own signal', () => {
    expect(Object.keys(implicitSignalMetric).sort()).toEqual([...implicitSignals].sort());
    for (const signal of implicitSignals) {
      const d = experimentMetric(implicitSignalMetric[signal]);
      expect(d.outcome).toEqual({ source: 'implicit', signal });
    }
    const single = experimentMetricNames.filter((m) => 'signal' in experimentMetricDefinitions[m].outcome);
    expect(single).toHaveLength(implicitSignals.length);
  });

  it('net every signal once in net_dissatisfaction: regenerated, edited, abandoned against copied', () => {
    expect(netImplicitMetrics).toEqual([
      {
        name: 'net_dissatisfaction',
        dissatisfied: ['regenerated', 'edited', 'abandoned'],
        satisfied: ['copied'],
      },
    ]);
    const { dissatisfied, satisfied } = netImplicitMetrics[0]!;
    expect([...dissatisfied, ...satisfied].sort()).toEqual([...implicitSignals].sort());
    expect(experimentMetric('net_dissatisfaction')).toMatchObject({ higherIsBetter: false, range: 2 });
  });

  it('carry their direction: regenerating, editing and abandoning are worse, copying and ratings better', () => {
    const lower = experimentMetricNames.filter((m) => !experimentMetric(m).higherIsBetter).sort();
    expect(lower).toEqual(['abandon_rate', 'edit_rate', 'net_dissatisfaction', 'regenerate_rate']);
    expect(experimentMetric('copy_rate').higherIsBetter).toBe(true);
    expect(experimentMetric('thumbs_up_rate').higherIsBetter).toBe(true);
  });

  it('give every metric a positive default effect on its own scale', () => {
    for (const m of experimentMetricNames) {
      const e = experimentMetric(m).defaultExpectedEffect;
      expect(e).toBeGreaterThan(0);
      // rates live on 0..1; a default effect above a quarter of that would be no rate's.
      if (m.endsWith('_rate')) expect(e).toBeLessThan(0.25);
    }
  });

  it("take a defined metric's direction from its definition and reject a rule that states the other", () => {
    expect(metricHigherIsBetter('regenerate_rate', undefined, 'higherIsBetter')).toBe(false);
    expect(metricHigherIsBetter('regenerate_rate', false, 'higherIsBetter')).toBe(false);
    expect(() => metricHigherIsBetter('regenerate_rate', true, 'higherIsBetter')).toThrow(
      /higherIsBetter: regenerate_rate is lower is better/,
    );
    // A caller's own metric: the rule says, higher by default.
    expect(metricHigherIsBetter('latency_ms', undefined, 'x')).toBe(true);
    expect(metricHigherIsBetter('latency_ms', false, 'x')).toBe(false);
    const bad = ExperimentDecisionConfig.safeParse({
      primaryMetric: 'thumbs_up_rate',
      guardrails: [{ metric: 'regenerate_rate', higherIsBetter: true }],
    });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0]!.path).toEqual(['guardrails', 0, 'higherIsBetter']);
  });

  it('let the decision ship the arm people regenerate less, and stop the one they regenerate more', () => {
    // Per-user regenerate rates as mean metrics: 2,000 users an arm, sd 0.25.
    const arm = (name: string, mean: number) => ({
      name,
      weight: 1,
      users: 2000,
      metrics: { regenerate_rate: { kind: 'mean' as const, n: 2000, mean, variance: 0.0625 } },
    });
    const rule = { primaryMetric: 'regenerate_rate', expectedEffect: 0.03 };
    const better = decideExperiment({ control: 'a', variants: [arm('a', 0.11), arm('b', 0.07)] }, rule);
    expect(better.decision).toBe('ship');
    expect(better.comparisons[0]).toMatchObject({ higherIsBetter: false, verdict: 'better' });
    expect(better.comparisons[0]!.difference).toBeCloseTo(-0.04, 12);
    const worse = decideExperiment({ control: 'a', variants: [arm('a', 0.07), arm('b', 0.11)] }, rule);
    expect(worse.decision).toBe('stop_for_harm');
    expect(worse.comparisons[0]!.verdict).toBe('worse');
  });

  it("honour a guardrail's defined direction: more regenerations stop an arm whose thumbs look better", () => {
    const arm = (name: string, up: number, regen: number) => ({
      name,
      weight: 1,
      users: 3000,
      metrics: {
        thumbs_up_rate: { kind: 'mean' as const, n: 3000, mean: up, variance: 0.25 },
        regenerate_rate: { kind: 'mean' as const, n: 3000, mean: regen, variance: 0.0625 },
      },
    });
    const d = decideExperiment(
      { control: 'a', variants: [arm('a', 0.5, 0.06), arm('b', 0.52, 0.12)] },
      { primaryMetric: 'thumbs_up_rate', guardrails: [{ metric: 'regenerate_rate' }], expectedEffect: 0.05 },
    );
    expect(d.decision).toBe('stop_for_harm');
    expect(d.reasons[0]).toMatch(/^harm: b regenerate_rate/);
  });
});
