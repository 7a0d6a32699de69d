import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  feedbackKindRegistry,
  feedbackKinds,
  pairwiseFeedbackKinds,
  scalarFeedbackKinds,
} from './feedback-kinds.js';
import { datasetMethodsFeeding, rowFormats, trainingMethodRegistry, trainingMethods } from './methods.js';
import { defaultRewardMapping, RewardMapping } from './normalize/reward-mapping.js';
import { registryFiles } from './registry-files.js';
import { checkTrainingDataset, datasetMethodsFor } from './schemas/training.js';

/**
 * Core owns the lists of training methods and feedback kinds; the worker, the Python SDK and the
 * web app read files written from them. These tests fail when a written file is stale or when
 * what Python actually loads disagrees with TypeScript.
 */
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const python = `${repoRoot}.venv/bin/python`;

/** What the Python packages of this checkout load, as JSON. */
function pythonLists(): {
  methods: string[];
  columns: Record<string, string[]>;
  rewardModel: string[];
  feedbackKinds: string[];
} {
  if (!existsSync(python))
    throw new Error(`the cross-check needs the repository venv at ${python} (make install); it is missing`);
  const script = [
    'import json',
    'from ratchet_worker.data import COLUMNS',
    'from ratchet_worker.spec import METHODS',
    'from ratchet_worker.registry import NEEDS_REWARD_MODEL',
    'from ratchet_sdk import FEEDBACK_KINDS',
    'print(json.dumps({"methods": list(METHODS), "columns": {k: list(v) for k, v in COLUMNS.items()},',
    '  "rewardModel": sorted(NEEDS_REWARD_MODEL), "feedbackKinds": list(FEEDBACK_KINDS)}))',
  ].join('\n');
  const run = spawnSync(python, ['-c', script], {
    encoding: 'utf8',
    // This checkout's packages, not whichever the venv has installed editable.
    env: { ...process.env, PYTHONPATH: `${repoRoot}worker:${repoRoot}python-sdk/src` },
  });
  if (run.status !== 0) throw new Error(`python failed: ${run.stderr}`);
  return JSON.parse(run.stdout);
}

describe('the lists other languages read agree with core', () => {
  it('every written file is what scripts/write-registries.ts writes now', () => {
    for (const [path, content] of Object.entries(registryFiles())) {
      const written = readFileSync(`${repoRoot}${path}`, 'utf8');
      expect(written, `${path} is stale: run node --import tsx scripts/write-registries.ts`).toBe(content);
    }
  });

  it("the worker's methods, columns and reward-model methods are core's", () => {
    const py = pythonLists();
    expect(py.methods).toEqual([...trainingMethods]);
    expect(py.columns).toEqual(
      Object.fromEntries(
        trainingMethods.map((m) => [m, [...rowFormats[trainingMethodRegistry[m].format].columns]]),
      ),
    );
    expect(py.rewardModel).toEqual(
      trainingMethods.filter((m) => 'needsRewardModel' in trainingMethodRegistry[m]),
    );
  });

  it("the Python SDK's feedback kinds are core's", () => {
    expect(pythonLists().feedbackKinds).toEqual([...feedbackKinds]);
  });
});

describe('the feedback kind descriptors', () => {
  it('give the reward mapping one evidence weight per kind with a scalar reward', () => {
    expect(scalarFeedbackKinds).toEqual(['thumbs', 'stars', 'criteria', 'implicit']);
    expect(pairwiseFeedbackKinds).toEqual(['correction', 'preference']);
    expect(defaultRewardMapping.evidenceWeight).toEqual({ thumbs: 1, stars: 1, criteria: 1, implicit: 0.5 });
    // A kind without a scalar reward has no weight to set.
    expect(RewardMapping.safeParse({ evidenceWeight: { comment: 1 } }).success).toBe(false);
  });

  it('name every kind for people', () => {
    for (const k of feedbackKinds) expect(feedbackKindRegistry[k].label.length).toBeGreaterThan(3);
  });
});

describe('which dataset trains which method follows the row formats', () => {
  it('is the table the API has always used', () => {
    expect(datasetMethodsFor).toEqual({
      sft: ['sft'],
      kto: ['kto'],
      dpo: ['dpo', 'reward'],
      reward: ['reward', 'dpo'],
      rwsft: ['rwsft'],
      rl: ['sft', 'kto', 'dpo', 'reward', 'rwsft'],
    });
    expect(datasetMethodsFeeding('dpo')).toEqual(['dpo', 'reward']);
  });

  it('a mismatched dataset is a 4xx naming dataset', () => {
    expect(() => checkTrainingDataset('kto', 'dpo')).toThrow(
      /dataset: a dpo dataset cannot train kto \(needs kto\)/,
    );
    expect(() => checkTrainingDataset('rl', 'kto')).not.toThrow();
  });
});
