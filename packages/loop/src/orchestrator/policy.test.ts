import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoopPolicy, loadLoopPolicies, queueObjective } from './policy.js';

const dir = mkdtempSync(join(tmpdir(), 'ratchet-policy-'));
const write = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('loop policies', () => {
  it('reads the example file with its defaults filled in', () => {
    const [policy] = loadLoopPolicies(new URL('../../../../examples/loop.yaml', import.meta.url).pathname);
    expect(policy).toMatchObject({
      route: 'support-bot',
      trigger: { minNewFeedback: 200 },
      training: { method: 'kto', lora: { enabled: true, r: 16 } },
      evaluation: { gates: { level: 0.95, winRate: { minDecisive: 5 }, segments: { margin: 0 } } },
      canary: { share: 0.3 },
      experiment: { engine: 'msprt', maxObservationsPerArm: 600 },
      promotion: { auto: true },
    });
  });

  it("gives the annotation queue the objective of the route's dataset method unless the policy sets one", () => {
    const policy = (extra: object) => LoopPolicy.parse({ route: 'r', baseModel: 'm', ...extra });
    expect(queueObjective(policy({ dataset: { method: 'sft' } }))).toBe('positives');
    expect(queueObjective(policy({ dataset: { method: 'kto' } }))).toBe('uncertainty');
    expect(
      queueObjective(policy({ dataset: { method: 'sft' }, activeLearning: { objective: 'uncertainty' } })),
    ).toBe('uncertainty');
    expect(() => policy({ activeLearning: { objective: 'fun' } })).toThrow(/objective/);
  });

  it("imitates production's own answers only on an sft dataset, and names the field otherwise", () => {
    const policy = (dataset: object) => LoopPolicy.parse({ route: 'r', baseModel: 'm', dataset });
    expect(policy({ method: 'sft' }).dataset.productionAnswersOnly).toBe(false);
    expect(policy({ method: 'sft', productionAnswersOnly: true }).dataset.productionAnswersOnly).toBe(true);
    expect(() => policy({ method: 'kto', productionAnswersOnly: true })).toThrow(/productionAnswersOnly/);
  });

  it('takes the effect the canary looks for, and names it when it is not a positive number', () => {
    const policy = (experiment: object) => LoopPolicy.parse({ route: 'r', baseModel: 'm', experiment });
    expect(policy({ expectedEffect: 0.1 }).experiment.expectedEffect).toBe(0.1);
    expect(policy({}).experiment.expectedEffect).toBeUndefined();
    expect(() => policy({ expectedEffect: 0 })).toThrow(/expectedEffect/);
  });

  it('decides the canary on any defined metric, implicit ones too, with guardrails named from the same list', () => {
    const policy = (experiment: object) => LoopPolicy.parse({ route: 'r', baseModel: 'm', experiment });
    const p = policy({ metric: 'regenerate_rate', guardrails: [{ metric: 'thumbs_up_rate' }] });
    expect(p.experiment).toMatchObject({
      metric: 'regenerate_rate',
      guardrails: [{ metric: 'thumbs_up_rate', margin: 0 }],
    });
    expect(policy({}).experiment.guardrails).toEqual([]);
    expect(() => policy({ metric: 'regen_rate' })).toThrow(/experiment\.metric|metric/);
    expect(() => policy({ guardrails: [{ metric: 'latency' }] })).toThrow(/guardrails/);
  });

  it('trains a round with rl only beside a reward model, and never trains the candidate as a reward model', () => {
    const policy = (extra: object) => LoopPolicy.parse({ route: 'r', baseModel: 'm', ...extra });
    expect(
      policy({ training: { method: 'rl', methodConfig: { judge_weight: 0.5 } } }).training,
    ).toMatchObject({
      method: 'rl',
      methodConfig: { judge_weight: 0.5 },
    });
    expect(() => policy({ training: { method: 'rl' }, rewardModel: { enabled: false } })).toThrow(
      /round's reward model is rl's reward/,
    );
    expect(() => policy({ training: { method: 'reward' } })).toThrow(/"method"/);
  });

  it('holds AI labels to a target precision on held-out ratings by default', () => {
    const policy = (aiFeedback: object) => LoopPolicy.parse({ route: 'r', baseModel: 'm', aiFeedback });
    expect(policy({ enabled: true }).aiFeedback).toMatchObject({
      targetPrecision: 0.8,
      alpha: 0.1,
      minConfidence: 0,
      judge: { heldOutLimit: 100 },
      // People's ratings label (by similar rated answers) only when asked.
      ratings: { enabled: false, scorer: 'similar', limit: 2000 },
    });
    expect(policy({ ratings: { enabled: true, scorer: 'words' } }).aiFeedback.ratings).toMatchObject({
      enabled: true,
      scorer: 'words',
    });
    expect(() => policy({ ratings: { limit: 0 } })).toThrow(/ratings/);
    expect(() => policy({ ratings: { scorer: 'vibes' } })).toThrow(/scorer/);
    expect(() => policy({ targetPrecision: 1.5 })).toThrow(/targetPrecision/);
    expect(() => policy({ alpha: 0 })).toThrow(/alpha/);
  });

  it('names the file and field of a bad policy', () => {
    const bad = write('bad.yaml', 'policies:\n  - route: r\n    baseModel: m\n    canary: { share: 0.9 }\n');
    expect(() => loadLoopPolicies(bad)).toThrow(/bad\.yaml.*policies\.0\.canary\.share/s);
    const typo = write('typo.yaml', 'policies:\n  - route: r\n    baseModel: m\n    trainig: {}\n');
    expect(() => loadLoopPolicies(typo)).toThrow(/trainig/);
    const twice = write(
      'twice.json',
      JSON.stringify({
        policies: [
          { route: 'r', baseModel: 'm' },
          { route: 'r', baseModel: 'n' },
        ],
      }),
    );
    expect(() => loadLoopPolicies(twice)).toThrow(/route "r" has two policies/);
    expect(() => loadLoopPolicies(join(dir, 'missing.yaml'))).toThrow(/missing\.yaml/);
  });
});
