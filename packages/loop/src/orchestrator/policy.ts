import { readFileSync } from 'node:fs';
import {
  ActiveLearningObjective,
  activeLearningObjectiveFor,
  CalibrationOptions,
  EvaluationGates,
  evaluationSuites,
  parseInput,
  RatchetError,
  TrainHyperparameters,
  TrainLora,
  trainingMethods,
  watchPolicySchema,
} from '@ratchet/core';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SelfCritiquePolicy } from '../ai-feedback/critique.js';
import { ratingScorers } from '../ai-feedback/label.js';
import { AnnotationQueueTerms } from '../annotation/types.js';
import { calibrationReferences } from '../calibrate.js';
import { datasetMethods } from '../datasets.js';
import { DeployPolicy } from '../deploy/index.js';
import { EndpointSpec } from '../eval/client.js';

import { experimentEngines, experimentMetrics } from '../experiments/experiments.js';

/**
 * How the loop improves one route: when a round starts, what it trains on and how, what a
 * candidate must pass, how much traffic it gets, and what the experiment must show before it is
 * promoted. One policy per route, from a YAML or JSON file; every field has a default that works
 * for the embedded setup.
 */
/** What a round can train its candidate with: every trainer but `reward` (the reward model is trained beside it). */
const loopTrainingMethods = trainingMethods.filter((m) => m !== 'reward') as [
  Exclude<(typeof trainingMethods)[number], 'reward'>,
  ...Exclude<(typeof trainingMethods)[number], 'reward'>[],
];

const LoopPolicyFields = z.strictObject({
  route: z.string().min(1).max(200),
  /** The base model folder every candidate is trained from. */
  baseModel: z.string().min(1),
  /** The gateway upstream that serves the route's models (the local worker by default). */
  upstream: z.string().min(1).default('worker'),
  /**
   * Where the route's models are served, and how a round's candidates get there: the built-in
   * worker (default), any OpenAI-compatible server that already serves them by name, or vLLM
   * with runtime LoRA loading (see `deploy/`). The gateway upstream should point at the same URL.
   */
  deploy: DeployPolicy.prefault({ target: 'worker' }),
  trigger: z
    .strictObject({
      /** A round starts once this many feedback events arrived since the last round started. */
      minNewFeedback: z.number().int().min(1).default(200),
      /** Also start a round on this schedule (hours since the last round started), given any new feedback. */
      everyHours: z.number().positive().optional(),
      /** Check at most this often when running inside `ratchet serve`. */
      checkEveryMinutes: z.number().positive().default(5),
    })
    .prefault({}),
  calibration: z
    .strictObject({
      /**
       * `words`: when most answers have one rating, nobody else rated them, so a rater who rates the
       * opposite of what they think agrees with no one and cannot be told apart: each rated answer
       * also gets a rating from a word model of what the other raters liked (`calibrateProject`'s
       * `reference`), and raters who contradict it are flagged like those who contradict people.
       */
      reference: z.enum(calibrationReferences).default('none'),
      /**
       * Recalibrate before each look at the canary, so the raters its outcomes leave out are
       * flagged on what they said so far, not on the few ratings they had when the round began.
       */
      beforeEachLook: z.boolean().default(false),
      /** The rater model's options (core's CalibrationOptions); omitted: its defaults. */
      options: CalibrationOptions.optional(),
    })
    .prefault({}),
  dataset: z
    .strictObject({
      method: z.enum(datasetMethods).default('kto'),
      /** The builder's options (see the dataset builders). */
      options: z.record(z.string(), z.unknown()).default({}),
      curation: z.union([z.literal(false), z.record(z.string(), z.unknown())]).optional(),
      /** Pair answers across prompts at least this similar (see DatasetBuildSpec). */
      groupSimilarPrompts: z.number().min(0.3).max(1).optional(),
      /**
       * sft only: imitate only the answers the production model gave (and people's corrections),
       * not every liked answer ever logged. For stacked rounds: the candidate starts from
       * production's weights, and a liked answer of an older, worse model (or of a rolled-back
       * candidate) is more often a mediocre one a lenient or adversarial rater liked, so it pulls
       * the candidate back towards the models it replaced.
       */
      productionAnswersOnly: z.boolean().default(false),
    })
    .refine((d) => !d.productionAnswersOnly || d.method === 'sft', {
      message: 'productionAnswersOnly filters the answers sft imitates; the dataset method must be sft',
      path: ['productionAnswersOnly'],
    })
    .prefault({}),
  training: z
    .strictObject({
      /**
       * `rl`: online RL (GRPO by default, `methodConfig.algorithm: rloo` for RLOO) on the dataset's
       * prompts, the round's reward model as the reward (and the demo domain's rule judge beside
       * it with `methodConfig.judge_weight`); needs `rewardModel.enabled`.
       */
      method: z.enum(loopTrainingMethods).default('kto'),
      hyperparameters: TrainHyperparameters.prefault({}),
      lora: TrainLora.prefault({}),
      methodConfig: z.record(z.string(), z.unknown()).default({}),
      seed: z.number().int().default(0),
      /**
       * Stack rounds: each candidate's LoRA is trained on top of the production model and merged
       * into it, so a round refines what the last one learned instead of starting from the base.
       * Costs a full copy of the weights per candidate (fine for small models; off by default).
       */
      stack: z.boolean().default(false),
      /** Worker processes per training run (`accelerate launch`; see `ratchet train --processes`). */
      processes: z.number().int().min(1).max(64).default(1),
    })
    .prefault({}),
  /** A reward model trained each round beside the policy: the evaluation's critic. */
  rewardModel: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Options of its (reward) dataset builder, e.g. `minMargin`. */
      options: z.record(z.string(), z.unknown()).default({}),
      hyperparameters: TrainHyperparameters.prefault({}),
    })
    .prefault({}),
  /**
   * The annotation queue's active learning on this route: what people are asked to rate serves
   * `objective`; by default the one for the dataset method (`positives` for sft, which keeps only
   * liked answers; `uncertainty` otherwise).
   */
  activeLearning: z.strictObject({ objective: ActiveLearningObjective.optional() }).prefault({}),
  /** The route's annotation team: how many annotators rate each item, how long a claim locks it. */
  annotation: AnnotationQueueTerms.prefault({}),
  /**
   * AI feedback: after training, the round's reward model labels unrated answers, then the LLM
   * judge, if there is one, grades what is left; the labels join the next round's calibration at
   * `sourceWeight.judge` of a person's (the mix of human and AI feedback). Each labels only where
   * it has shown it is right: on human-rated answers it never trained on (held out), the scores
   * past its thresholds must be `targetPrecision` right, as a lower bound at confidence 1 - `alpha`;
   * where no threshold shows that, it labels nothing and the round's note says why.
   */
  aiFeedback: z
    .strictObject({
      enabled: z.boolean().default(false),
      limit: z.number().int().positive().default(500),
      targetPrecision: z.number().min(0).max(1).default(0.8),
      alpha: z.number().gt(0).max(0.5).default(0.1),
      /** Also needs this calibrated confidence |2 P(liked) - 1| (isotonic fit on the held-out answers). */
      minConfidence: z.number().min(0).max(1).default(0),
      /**
       * With an LLM judge (`evaluation.judge`), it then grades what is still unrated (what the
       * reward model found too close to call), `samples` verdicts per answer, its share of GOOD
       * verdicts held to the same target on up to `heldOutLimit` held-out answers.
       */
      judge: z
        .strictObject({
          enabled: z.boolean().default(true),
          limit: z.number().int().positive().default(200),
          samples: z.number().int().min(1).max(9).default(3),
          minConfidence: z.number().min(0).max(1).default(0),
          heldOutLimit: z.number().int().positive().default(100),
        })
        .prefault({}),
      /**
       * First, people's own ratings label (labelFromRatings): a word model fitted on the rated
       * answers (`words`) or the ratings of answers with similar text (`similar`), held to the
       * same target, every rated answer checking thresholds chosen without it (cross-fitted). No
       * model to train or serve, so it works from the few dozen ratings a low rating rate
       * leaves; off unless asked.
       */
      ratings: z
        .strictObject({
          enabled: z.boolean().default(false),
          scorer: z.enum(ratingScorers).default('similar'),
          limit: z.number().int().positive().default(2000),
        })
        .prefault({}),
    })
    .prefault({}),
  /**
   * Self-critique: after training, the production model critiques low-rated answers against a
   * rubric and revises them; revisions the round's reward model (and the judge, if any) prefer
   * become corrections from source judge for the next round. Off by default: without a judge, a
   * small model's kept revisions are often no better (see ai-feedback/critique.ts).
   */
  selfCritique: SelfCritiquePolicy.prefault({}),
  evaluation: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** An LLM judge (any OpenAI-compatible endpoint), if there is one. */
      judge: EndpointSpec.optional(),
      maxItems: z.number().int().positive().default(100),
      /**
       * Where the heldout suite's prompts come from: the test split of the training dataset, or
       * (`all-rated`) of a dataset of every rated answer built with the same split, so that an sft
       * or dpo round, whose dataset keeps only some rated answers, is still judged on every kind.
       */
      heldOut: z.enum(['training', 'all-rated']).default('all-rated'),
      suites: z.array(z.enum(evaluationSuites)).min(1).default(['heldout', 'redteam', 'adversarial']),
      gates: EvaluationGates.prefault({}),
      maxTokens: z.number().int().positive().default(96),
    })
    .prefault({}),
  canary: z
    .strictObject({
      /** Share of the route's users sent to the candidate during the experiment. */
      share: z.number().gt(0).max(0.5).default(0.3),
    })
    .prefault({}),
  experiment: z
    .strictObject({
      /** The primary metric (core's metrics.ts: ratings or implicit signals, each with its direction). */
      metric: z.enum(experimentMetrics).default('thumbs_up_rate'),
      /**
       * Guardrail metrics: the candidate is stopped when one of them is worse (its always-valid
       * interval below -margin, in the metric's own direction), and never ships on them.
       */
      guardrails: z
        .array(
          z.strictObject({
            metric: z.enum(experimentMetrics),
            margin: z.number().nonnegative().default(0),
          }),
        )
        .default([]),
      engine: z.enum(experimentEngines).default('msprt'),
      /** Observations are users with an outcome of the metric (the user is the unit). */
      minObservationsPerArm: z.number().int().nonnegative().default(60),
      /**
       * A hard cap: past this many users per arm without a ship decision, the candidate is rolled
       * back. The planned end is the horizon below, which usually comes first.
       */
      maxObservationsPerArm: z.number().int().positive().default(600),
      /**
       * The smallest improvement worth shipping, in metric units; without it, the metric's default
       * (5% of its range). The canary runs until the test decides or until it has had `power` to
       * find this much (the horizon, canary-plan.ts), and only then ends as "no effect".
       */
      minimumEffect: z.number().positive().finite().optional(),
      /** Power of the horizon: the chance the canary ships a candidate better by `minimumEffect`. */
      power: z.number().gt(0).lt(1).default(0.8),
      /**
       * The effect the canary looks for, in metric units (the sequential test's mixture, see
       * ExperimentDecisionConfig.expectedEffect); without it, the offline gate's estimate of the
       * candidate's advantage when it is above the minimum effect, else the minimum effect.
       */
      expectedEffect: z.number().positive().finite().optional(),
      decisionRule: z.record(z.string(), z.unknown()).default({}),
    })
    .prefault({}),
  promotion: z
    .strictObject({
      /**
       * Promote on a ship decision without asking. Otherwise the round waits in
       * `awaiting_approval` (the experiment keeps its split meanwhile) until a person approves or
       * rejects it (`ratchet loop approve|reject`, the dashboard's Loop page, the API).
       */
      auto: z.boolean().default(true),
      /**
       * The watch that follows this loop's promotions (users and hours it lasts, holdback share,
       * alpha, harm thresholds; see core's watchPolicySchema). Without it, the route's watch
       * policy (`ratchet watch policy`, PUT /api/v1/routes/:route/watch-policy), else the defaults.
       */
      watch: watchPolicySchema.optional(),
    })
    .prefault({}),
});
export const LoopPolicy = LoopPolicyFields.superRefine((p, ctx) => {
  // rl's reward is the round's reward model: without one there is nothing to optimize.
  if (p.training.method === 'rl' && !p.rewardModel.enabled)
    ctx.addIssue({
      code: 'custom',
      path: ['rewardModel', 'enabled'],
      message: "must be true with training method rl: the round's reward model is rl's reward",
    });
  // The round's reward model is a SEQ_CLS adapter the worker scores at /v1/score; vLLM's runtime
  // LoRA loading serves generation adapters only, so every round would fail at its first use.
  if (p.deploy.target === 'vllm' && p.rewardModel.enabled)
    ctx.addIssue({
      code: 'custom',
      path: ['rewardModel', 'enabled'],
      message:
        'must be false with deploy target vllm: the reward model is scored by the built-in worker (/v1/score), which vLLM does not serve',
    });
});
export type LoopPolicy = z.output<typeof LoopPolicy>;
export type LoopPolicyInput = z.input<typeof LoopPolicy>;

/** What the route's annotation queue should ask for (see `activeLearning`). */
export function queueObjective(p: LoopPolicy): ActiveLearningObjective {
  return p.activeLearning.objective ?? activeLearningObjectiveFor(p.dataset.method);
}

export const LoopPolicyFile = z.strictObject({ policies: z.array(LoopPolicy).min(1) });

/** Reads loop policies (`policies: [...]`) from a YAML or JSON file; errors name the file and field. */
export function loadLoopPolicies(path: string): LoopPolicy[] {
  let raw: unknown;
  try {
    const text = readFileSync(path, 'utf8');
    raw = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new RatchetError(
      'invalid_request',
      `${path}: ${err instanceof Error ? err.message : String(err)}`,
      'policy',
    );
  }
  const { policies } = parseInput(LoopPolicyFile, raw, path);
  const routes = policies.map((p) => p.route);
  const dup = routes.find((r, i) => routes.indexOf(r) !== i);
  if (dup) throw new RatchetError('invalid_request', `${path}: route "${dup}" has two policies`, 'policies');
  return policies;
}
