import { z } from 'zod';
import { RatchetError } from '../errors.js';
import { datasetMethodsFeeding, type TrainingMethod, trainingMethods } from '../methods.js';
import { DatasetRef, MAX_INT32 } from './common.js';

/**
 * Which dataset versions each trainer can read: the row formats must match (`dpo` and `reward`
 * share `{prompt, chosen, rejected}`; `rl` only needs prompts, which every version has).
 */
export const datasetMethodsFor: Readonly<Record<TrainingMethod, readonly string[]>> = Object.fromEntries(
  trainingMethods.map((m) => [m, datasetMethodsFeeding(m)]),
) as Record<string, readonly string[]> as Record<TrainingMethod, readonly string[]>;

/** Settings every trainer shares; unset ones take the worker's (method-aware) defaults. */
export const TrainHyperparameters = z.strictObject({
  learningRate: z.number().positive().max(1).optional(),
  epochs: z.number().positive().max(1000).optional(),
  /** Stops after this many optimizer steps (overrides epochs). */
  maxSteps: z.number().int().positive().max(MAX_INT32).optional(),
  batchSize: z.number().int().positive().max(4096).optional(),
  gradientAccumulationSteps: z.number().int().positive().max(1024).optional(),
  maxLength: z.number().int().positive().max(1_000_000).optional(),
  /** Steps, or a fraction of training below 1. */
  warmupSteps: z.number().nonnegative().max(MAX_INT32).optional(),
  weightDecay: z.number().nonnegative().max(1000).optional(),
  lrSchedulerType: z.string().min(1).optional(),
  maxGradNorm: z.number().positive().max(1e6).optional(),
  loggingSteps: z.number().int().positive().max(MAX_INT32).optional(),
  saveSteps: z.number().int().positive().max(MAX_INT32).optional(),
  saveTotalLimit: z.number().int().positive().max(MAX_INT32).optional(),
  gradientCheckpointing: z.boolean().optional(),
  precision: z.enum(['auto', 'bf16', 'fp16', 'fp32']).optional(),
});
export type TrainHyperparameters = z.output<typeof TrainHyperparameters>;

export const TrainLora = z.strictObject({
  /** false: full fine-tuning. */
  enabled: z.boolean().default(true),
  r: z.number().int().positive().max(1024).default(16),
  alpha: z.number().int().positive().max(4096).default(32),
  dropout: z.number().min(0).max(1).default(0),
  targetModules: z.union([z.literal('all-linear'), z.array(z.string().min(1)).min(1)]).default('all-linear'),
  /**
   * Also fold the adapter into the base weights and register that full model (a policy's rounds
   * can then stack: each trains on top of the last merged model).
   */
  merge: z.boolean().default(false),
});

/** A request to train a model on a dataset version: the input edge of `ratchet train` and the API. */
export const TrainRequest = z.strictObject({
  method: z.enum(trainingMethods),
  /** A local Hugging Face model folder (the tiny policy, or any downloaded model). */
  baseModel: z.string().min(1).max(4096),
  /** Dataset version: id, `name` (latest) or `name@N`. */
  dataset: DatasetRef,
  /** Name of the candidate model registered on success (default `<dataset>-<method>-<run>`). */
  modelName: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[A-Za-z0-9._:@/-]+$/, 'letters, digits and . _ : @ / - only')
    .optional(),
  /** The gateway route the candidate would serve. */
  route: z.string().min(1).max(200).optional(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .default(0),
  hyperparameters: TrainHyperparameters.default({}),
  lora: TrainLora.prefault({}),
  /** The method's own settings (beta, loss_type, ...), passed to the worker, which checks them. */
  methodConfig: z.record(z.string(), z.unknown()).default({}),
  /** Evaluate on the version's test split at each epoch end, when it has one. */
  evaluate: z.boolean().default(true),
  /** rl only: the reward model, a registered model (name or id) or an adapter folder. */
  rewardModel: z.string().min(1).optional(),
  /** Worker processes that train it together (`accelerate launch`; DDP on CPU, FSDP on GPUs). */
  processes: z.number().int().min(1).max(64).default(1),
});
export type TrainRequest = z.output<typeof TrainRequest>;
export type TrainRequestInput = z.input<typeof TrainRequest>;

/** Checks that a dataset version of `datasetMethod` can feed `method`; the error names `dataset`. */
export function checkTrainingDataset(method: TrainingMethod, datasetMethod: string): void {
  if (!datasetMethodsFor[method].includes(datasetMethod)) {
    throw new RatchetError(
      'invalid_request',
      `dataset: a ${datasetMethod} dataset cannot train ${method} (needs ${datasetMethodsFor[method].join(' or ')})`,
      'dataset',
    );
  }
}
