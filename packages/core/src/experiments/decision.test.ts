import { describe, expect, it } from 'vitest';
import { decideExperiment, type ExperimentData, ExperimentDecisionConfig } from './decision.js';

const thumbs = (successes: number, trials: number) => ({ kind: 'proportion' as const, successes, trials });
const latency = (n: number, mean: number) => ({ kind: 'mean' as const, n, mean, variance: 200 ** 2 });

function experiment(
  control: [number, number],
  candidate: [number, number],
  extra: Partial<ExperimentData> = {},
): ExperimentData {
  return {
    control: 'production',
    variants: [
      {
        name: 'production',
        weight: 50,
        users: control[1],
        metrics: { thumbs_up: thumbs(...control), latency_ms: latency(control[1], 800) },
      },
      {
        name: 'candidate',
        weight: 50,
        users: candidate[1],
        metrics: { thumbs_up: thumbs(...candidate), latency_ms: latency(candidate[1], 800) },
      },
    ],
    ...extra,
  };
}

const config = { primaryMetric: 'thumbs_up' };

describe('decideExperiment', () => {
  it('ships a clear winner, with the reason', () => {
    const d = decideExperiment(experiment([3000, 5000], [3400, 5000]), config);
    expect(d.decision).toBe('ship');
    expect(d.variant).toBe('candidate');
    expect(d.reasons[0]).toMatch(/^ship: candidate thumbs_up/);
    const c = d.comparisons.find((c) => c.metric === 'thumbs_up')!;
    expect(c.sequentialInterval.lower).toBeGreaterThan(0);
    expect(c.probabilityToBeat).toBeGreaterThan(0.99);
  });

  it('stops for harm when the candidate is clearly worse', () => {
    const d = decideExperiment(experiment([3000, 5000], [2600, 5000]), config);
    expect(d.decision).toBe('stop_for_harm');
    expect(d.variant).toBe('candidate');
    expect(d.reasons[0]).toMatch(/^harm: candidate thumbs_up/);
  });

  it('stops for harm on a guardrail where lower is better, naming it', () => {
    const data = experiment([3000, 5000], [3050, 5000]);
    data.variants[1]!.metrics['latency_ms'] = latency(5000, 900);
    const d = decideExperiment(data, {
      ...config,
      guardrails: [{ metric: 'latency_ms', higherIsBetter: false, margin: 20 }],
    });
    expect(d.decision).toBe('stop_for_harm');
    expect(d.reasons.join('\n')).toMatch(/latency_ms/);
    const g = d.comparisons.find((c) => c.metric === 'latency_ms')!;
    expect(g.difference).toBeCloseTo(100, 10);
    expect(g.sequentialInterval.lower).toBeGreaterThan(20);
  });

  it('keeps running on an inconclusive result and says what is missing', () => {
    const d = decideExperiment(experiment([600, 1000], [615, 1000]), config);
    expect(d.decision).toBe('keep_running');
    expect(d.reasons.join('\n')).toMatch(/does not yet exclude/);
  });

  it('does not ship through a sample ratio mismatch', () => {
    const d = decideExperiment(experiment([3000, 5000], [4000, 6000]), config);
    expect(d.srm.mismatch).toBe(true);
    expect(d.decision).toBe('keep_running');
    expect(d.reasons[0]).toMatch(/sample ratio mismatch/);
  });

  it('waits for the minimum sample', () => {
    const d = decideExperiment(experiment([20, 40], [35, 40]), config);
    expect(d.decision).toBe('keep_running');
    expect(d.comparisons).toHaveLength(0);
    expect(d.reasons.join('\n')).toMatch(/waiting for 100/);
  });

  it('treats a lower-is-better primary metric the right way round', () => {
    // Share of regenerated answers: lower is better, the candidate regenerates less.
    const d = decideExperiment(experiment([1500, 5000], [1100, 5000]), {
      primaryMetric: 'thumbs_up',
      higherIsBetter: false,
    });
    expect(d.decision).toBe('ship');
    expect(d.comparisons[0]!.difference).toBeCloseTo(-0.08, 12);
  });

  it('returns state that makes the next look a running minimum', () => {
    const first = decideExperiment(experiment([600, 1000], [640, 1000]), config);
    const next = decideExperiment(experiment([1200, 2000], [1250, 2000], { previous: first.state }), config);
    const p1 = first.comparisons[0]!.sequentialPValue;
    expect(next.comparisons[0]!.sequentialPValue).toBeLessThanOrEqual(p1);
  });

  it('picks the best of several treatments and splits alpha over them', () => {
    const data = experiment([3000, 5000], [3400, 5000]);
    data.variants.push({
      name: 'other',
      weight: 50,
      users: 5000,
      metrics: { thumbs_up: thumbs(3250, 5000), latency_ms: latency(5000, 800) },
    });
    const d = decideExperiment(data, config);
    expect(d.decision).toBe('ship');
    expect(d.variant).toBe('candidate');
  });

  it('rejects bad configs and data with the field that is wrong', () => {
    const bad = ExperimentDecisionConfig.safeParse({ primaryMetric: 'x', alpha: 2 });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0]!.path).toEqual(['alpha']);
    expect(() => decideExperiment(experiment([1, 2], [1, 2]), { primaryMetric: 'stars' })).toThrow(
      /no data for metric "stars"/,
    );
    expect(() => decideExperiment({ ...experiment([1, 2], [1, 2]), control: 'nope' }, config)).toThrow(
      /control "nope"/,
    );
  });
});
