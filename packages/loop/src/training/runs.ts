import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import {
  checkTrainingDataset,
  newId,
  parseInput,
  RatchetError,
  type TrainingMethodEntry,
  TrainRequest,
  type TrainRequestInput,
  trainingMethodRegistry,
} from '@ratchet/core';
import type { MetricSeries, Model, Run, Store } from '@ratchet/store';
import { exportDataset } from '../exports.js';
import { mlflowTrackerFromEnv } from '../tracking/mlflow.js';
import type { RunTracker } from '../tracking/tracker.js';
import { type RunProgress, RunTelemetry } from './telemetry.js';
import { TrainWorker, type WorkerEvent, workerCommand } from './worker.js';

export type { RunTracker } from '../tracking/tracker.js';

export interface TrainingOptions {
  /** Root of Ratchet's files (RATCHET_DATA_DIR, default .ratchet/data); runs go under `runs/`. */
  dataDir?: string;
  /** The worker executable (default: see workerCommand). */
  workerCommand?: string;
  env?: NodeJS.ProcessEnv;
  /** How often progress and metric points are written to the run record. */
  progressIntervalMs?: number;
  /** How often the owner proves it is alive and checks for a cancel request. */
  heartbeatMs?: number;
  /** Every worker event, as it arrives (the CLI's progress bar). */
  onEvent?: (event: WorkerEvent, progress: RunProgress) => void;
  /** Aborting stops the worker and records the run as cancelled (Ctrl-C in `ratchet train`). */
  signal?: AbortSignal;
  /**
   * Aborting stops the worker but leaves the run `running`: its heartbeat goes stale and the next
   * worker resumes it from its checkpoint (a server or worker shutting down).
   */
  shutdown?: AbortSignal;
  /** Default: MLflow when RATCHET_MLFLOW_TRACKING_URI is set, else none. */
  tracker?: RunTracker;
  /** Who registers the candidate, for the audit log. */
  actor?: string;
}

const dataRoot = (options: TrainingOptions) =>
  resolve(
    options.dataDir ?? options.env?.RATCHET_DATA_DIR ?? process.env.RATCHET_DATA_DIR ?? '.ratchet/data',
  );

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The worker's spec keys for the request's hyperparameters (only the ones that are set). */
function workerHyperparameters(h: TrainRequest['hyperparameters']): Record<string, unknown> {
  const names: Record<keyof TrainRequest['hyperparameters'], string> = {
    learningRate: 'learning_rate',
    epochs: 'num_train_epochs',
    maxSteps: 'max_steps',
    batchSize: 'per_device_train_batch_size',
    gradientAccumulationSteps: 'gradient_accumulation_steps',
    maxLength: 'max_length',
    warmupSteps: 'warmup_steps',
    weightDecay: 'weight_decay',
    lrSchedulerType: 'lr_scheduler_type',
    maxGradNorm: 'max_grad_norm',
    loggingSteps: 'logging_steps',
    saveSteps: 'save_steps',
    saveTotalLimit: 'save_total_limit',
    gradientCheckpointing: 'gradient_checkpointing',
    precision: 'precision',
  };
  return Object.fromEntries(
    Object.entries(h)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [names[k as keyof typeof names], v]),
  );
}

/**
 * The checkpoint a second attempt continues from: the one the first attempt reported as saved,
 * or, when the trainer has since rotated that one away (it keeps the newest few), the newest
 * later checkpoint that finished saving (its trainer_state.json is written last).
 */
export function resumeFrom(saved: { step: number; path: string }): string | false {
  if (isFolder(saved.path)) return saved.path;
  const dir = dirname(saved.path);
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return false;
  }
  const later = names
    .map((name) => ({ name, step: Number(/^checkpoint-(\d+)$/.exec(name)?.[1] ?? Number.NaN) }))
    .filter((c) => c.step > saved.step && existsSync(join(dir, c.name, 'trainer_state.json')))
    .sort((a, b) => b.step - a.step);
  return later[0] ? join(dir, later[0].name) : false;
}

async function resolveRewardModel(
  store: Store,
  projectId: string,
  request: TrainRequest,
): Promise<{ path: string; base: string | null } | null> {
  const method: TrainingMethodEntry = trainingMethodRegistry[request.method];
  if (!method.needsRewardModel) return null;
  if (!request.rewardModel)
    throw new RatchetError(
      'invalid_request',
      `rewardModel: required for method ${request.method}`,
      'rewardModel',
    );
  const registered = await store.models.get(projectId, request.rewardModel);
  if (registered?.adapterPath) return { path: registered.adapterPath, base: registered.baseModel };
  if (isFolder(request.rewardModel)) return { path: resolve(request.rewardModel), base: null };
  throw new RatchetError(
    'invalid_request',
    `rewardModel: "${request.rewardModel}" is neither a registered model with an adapter nor a folder`,
    'rewardModel',
  );
}

/**
 * Validates a train request, exports its dataset version for the worker, writes the job spec and
 * records a queued run. Nothing runs yet: `runTraining` (here, or in a `ratchet worker`) does.
 * A bad request fails before anything is written, naming the field.
 */
export async function startTrainingRun(
  store: Store,
  projectId: string,
  input: TrainRequestInput,
  options: TrainingOptions = {},
): Promise<Run> {
  const request = parseInput(TrainRequest, input);
  const version = await store.datasets.get(projectId, request.dataset);
  if (!version)
    throw new RatchetError('not_found', `dataset: no dataset version "${request.dataset}"`, 'dataset');
  checkTrainingDataset(request.method, version.method);
  const baseModel = resolve(request.baseModel);
  if (!isFolder(baseModel))
    throw new RatchetError('invalid_request', `baseModel: no model folder at ${baseModel}`, 'baseModel');
  const reward = await resolveRewardModel(store, projectId, request);

  const runId = newId();
  const modelName =
    request.modelName ?? `${version.name}-v${version.version}-${request.method}-${runId.slice(-8)}`;
  if (await store.models.get(projectId, modelName))
    throw new RatchetError('conflict', `modelName: a model named "${modelName}" exists`, 'modelName');

  const outputDir = join(dataRoot(options), 'runs', projectId, runId);
  mkdirSync(outputDir, { recursive: true });
  try {
    const counts = await exportDataset(version, 'trl', join(outputDir, 'data'));
    if (!counts.train)
      throw new RatchetError(
        'conflict',
        `dataset: ${version.name}@${version.version} has no train rows`,
        'dataset',
      );
    const spec = {
      method: request.method,
      base_model: baseModel,
      dataset: join(outputDir, 'data', 'train.jsonl'),
      eval_dataset: request.evaluate && counts.test ? join(outputDir, 'data', 'test.jsonl') : null,
      output_dir: outputDir,
      seed: request.seed,
      hyperparameters: workerHyperparameters(request.hyperparameters),
      lora: {
        enabled: request.lora.enabled,
        r: request.lora.r,
        alpha: request.lora.alpha,
        dropout: request.lora.dropout,
        target_modules: request.lora.targetModules,
        merge: request.lora.merge,
      },
      method_config: request.methodConfig,
      resume: false,
      reward_model: reward?.path ?? null,
      reward_base_model: reward?.base ?? null,
      metadata: { run_id: runId, project_id: projectId, dataset_id: version.id, model_name: modelName },
    };
    writeFileSync(join(outputDir, 'job.json'), `${JSON.stringify(spec, null, 2)}\n`);
    return await store.runs.create(projectId, {
      id: runId,
      method: request.method,
      baseModel,
      datasetId: version.id,
      spec,
      request: { ...request, baseModel, modelName, datasetVersion: `${version.name}@${version.version}` },
      outputDir,
    });
  } catch (err) {
    rmSync(outputDir, { recursive: true, force: true });
    throw err;
  }
}

export interface RunOutcome {
  run: Run;
  model?: Model;
}

/**
 * Executes a queued run (or, with `staleMs`, resumes one whose owner died): claims it, spawns the
 * worker, streams its events into the run record (progress with ETA, metric series, heartbeat),
 * stops it on a cancel request or abort, and on success registers the adapter as a candidate
 * with its lineage. Returns undefined when the run was not there to claim.
 */
export async function runTraining(
  store: Store,
  runId: string,
  options: TrainingOptions & { staleMs?: number } = {},
): Promise<RunOutcome | undefined> {
  const owner = `${hostname()}:${process.pid}`;
  const claimed = await store.runs.claim(runId, owner, { staleMs: options.staleMs });
  if (!claimed) return undefined;
  const specPath = join(claimed.outputDir, 'job.json');
  // A second attempt continues from the newest checkpoint the first one reported as saved. Not
  // simply the newest folder: a crash in the middle of a save leaves a partial one behind.
  if (claimed.attempts > 1) {
    const spec = JSON.parse(readFileSync(specPath, 'utf8'));
    const saved = (claimed.progress as Partial<RunProgress>).lastCheckpoint;
    const resume = saved ? resumeFrom(saved) : false;
    writeFileSync(specPath, `${JSON.stringify({ ...spec, resume }, null, 2)}\n`);
  }
  const tracker = options.tracker ?? mlflowTrackerFromEnv(options.env);
  await safely(() => tracker?.started(claimed));

  const telemetry = new RunTelemetry();
  let dirty = false;
  const worker = new TrainWorker(
    options.workerCommand ?? workerCommand(options.env),
    specPath,
    join(claimed.outputDir, 'worker.log'),
    (event) => {
      telemetry.apply(event);
      dirty = true;
      options.onEvent?.(event, telemetry.progress);
    },
    options.env,
    Number(claimed.request.processes ?? 1),
  );

  let cancelled = false;
  const cancel = () => {
    cancelled = true;
    worker.stop();
  };
  options.signal?.addEventListener('abort', cancel, { once: true });
  if (options.signal?.aborted) cancel();
  let abandoned = false;
  const abandon = () => {
    abandoned = true;
    worker.stop();
  };
  options.shutdown?.addEventListener('abort', abandon, { once: true });
  if (options.shutdown?.aborted) abandon();

  // One writer at a time, so progress and metric batches land in order.
  let writing: Promise<void> = Promise.resolve();
  const flush = () => {
    writing = writing.then(async () => {
      if (!dirty) return;
      dirty = false;
      const points = telemetry.takeMetrics();
      await store.runs.updateProgress(runId, { ...telemetry.progress });
      await store.runs.appendMetrics(runId, points);
      await safely(() => tracker?.metrics(claimed, points));
    });
    return writing;
  };
  const progressTimer = setInterval(() => void flush().catch(() => {}), options.progressIntervalMs ?? 1000);
  const heartbeatTimer = setInterval(() => {
    void store.runs
      .heartbeat(runId)
      .then(({ cancelRequested }) => {
        if (cancelRequested) cancel();
      })
      .catch(() => {});
  }, options.heartbeatMs ?? 2000);

  let exit: Awaited<ReturnType<TrainWorker['exited']>>;
  try {
    exit = await worker.exited();
  } finally {
    clearInterval(progressTimer);
    clearInterval(heartbeatTimer);
    options.signal?.removeEventListener('abort', cancel);
    options.shutdown?.removeEventListener('abort', abandon);
  }
  dirty = true;
  await flush();
  if (abandoned && !cancelled) return { run: (await store.runs.get(runId))! };

  let model: Model | undefined;
  if (cancelled) {
    await store.runs.finish(runId, 'cancelled', { error: 'cancelled' });
  } else if (exit.code === 0 && telemetry.artifacts) {
    try {
      model = await registerCandidate(store, claimed, telemetry, options.actor ?? 'loop');
      await store.runs.finish(runId, 'succeeded', {
        artifacts: {
          path: telemetry.artifacts.path,
          manifest: telemetry.artifacts.manifest,
          summary: telemetry.trainSummary,
          modelId: model.id,
          modelName: model.name,
        },
      });
    } catch (err) {
      await store.runs.finish(runId, 'failed', {
        error: `registering the candidate failed: ${err instanceof Error ? err.message : String(err)}`,
      });
    }
  } else {
    const how = exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
    await store.runs.finish(runId, 'failed', { error: exit.error ?? `the worker stopped (${how})` });
  }
  const run = (await store.runs.get(runId))!;
  await safely(() => tracker?.finished(run, model));
  return { run, model };
}

async function registerCandidate(
  store: Store,
  run: Run,
  telemetry: RunTelemetry,
  actor: string,
): Promise<Model> {
  const request = run.request as { modelName: string; route?: string };
  // A resumed run whose first attempt registered the model and then died keeps that model.
  const existing = await store.models.get(run.projectId, request.modelName);
  if (existing?.runId === run.id) return existing;
  const trainSummary = Object.fromEntries(
    Object.entries(telemetry.trainSummary).filter(([k]) => k === 'train_loss' || k === 'train_runtime'),
  );
  return store.models.register(
    run.projectId,
    {
      name: request.modelName,
      route: request.route ?? null,
      baseModel: run.baseModel,
      adapterPath: telemetry.artifacts!.path,
      runId: run.id,
      datasetId: run.datasetId,
      stage: 'candidate',
      metrics: { ...trainSummary, method: run.method },
    },
    actor,
  );
}

/** Resumes every run whose owner died (heartbeat older than `staleMs`), one after another. */
export async function resumeOrphanedRuns(
  store: Store,
  staleMs: number,
  options: TrainingOptions = {},
): Promise<RunOutcome[]> {
  const outcomes: RunOutcome[] = [];
  for (const orphan of await store.runs.findOrphaned(staleMs)) {
    const outcome = await runTraining(store, orphan.id, { ...options, staleMs });
    if (outcome) outcomes.push(outcome);
  }
  return outcomes;
}

async function safely(fn: () => Promise<void> | undefined): Promise<void> {
  try {
    await fn();
  } catch (err) {
    process.emitWarning(`run tracker: ${err instanceof Error ? err.message : String(err)}`);
  }
}
