// `ratchet train`, `ratchet runs list|show|cancel|resume`, `ratchet worker`, `ratchet models show`.
import { type TrainRequestInput, trainingMethods } from '@ratchet/core';
import {
  type RunOutcome,
  type RunProgress,
  runTraining,
  startTrainingRun,
  TrainingService,
} from '@ratchet/loop';
import type { Run, RunStatus, Store } from '@ratchet/store';
import { type Command, Option } from 'commander';
import { jsonObject, positiveInteger, positiveNumber } from '../arguments.js';
import { projectIdByName, withStore } from '../context.js';
import { stepBar } from '../progress.js';

const runStatuses: RunStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
const seconds = (ms: number | null) => (ms === null ? '' : `${Math.round(ms / 1000)}s`);
const fmt = (x: unknown, digits = 4) => (typeof x === 'number' ? x.toFixed(digits) : '');

/** Runs (or resumes) one run here with a progress bar; Ctrl-C cancels it cleanly. */
async function runHere(
  store: Store,
  runId: string,
  options: { staleMs?: number; label: string },
): Promise<RunOutcome | undefined> {
  const abort = new AbortController();
  const onSigint = () => {
    console.error('\ncancelling: stopping the worker…');
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const bar = stepBar(options.label);
  try {
    return await runTraining(store, runId, {
      staleMs: options.staleMs,
      signal: abort.signal,
      onEvent: bar.onEvent,
      actor: 'cli',
    });
  } finally {
    bar.stop();
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

function report(outcome: RunOutcome | undefined, runId: string): void {
  if (!outcome) throw new Error(`run ${runId} is not waiting to run (see: ratchet runs show ${runId})`);
  const { run, model } = outcome;
  const loss = run.metrics.loss?.at(-1)?.[1];
  if (run.status === 'succeeded')
    console.log(
      `run ${run.id} succeeded (${run.progress.step} steps, final loss ${fmt(loss)}); registered ${model?.name} as a candidate`,
    );
  else console.log(`run ${run.id} ${run.status}${run.error ? `: ${run.error}` : ''}`);
  if (run.status === 'cancelled') process.exitCode = 130;
  else if (run.status !== 'succeeded') process.exitCode = 1;
}

function printRun(run: Run): void {
  const p = run.progress as Partial<RunProgress>;
  console.log(
    JSON.stringify(
      {
        id: run.id,
        status: run.status,
        method: run.method,
        baseModel: run.baseModel,
        dataset: run.request.datasetVersion ?? run.datasetId,
        model: run.request.modelName,
        progress: p,
        lastValues: Object.fromEntries(Object.entries(run.metrics).map(([k, v]) => [k, v.at(-1)])),
        attempts: run.attempts,
        worker: run.worker,
        error: run.error,
        artifacts: run.artifacts && { path: run.artifacts.path, modelId: run.artifacts.modelId },
        outputDir: run.outputDir,
        created: new Date(run.createdAt).toISOString(),
      },
      null,
      2,
    ),
  );
}

interface TrainFlags {
  project: string;
  dataset: string;
  method: (typeof trainingMethods)[number];
  base: string;
  name?: string;
  route?: string;
  seed?: number;
  maxSteps?: number;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  saveSteps?: number;
  loraR?: number;
  lora: boolean;
  methodConfig?: Record<string, unknown>;
  rewardModel?: string;
  eval: boolean;
  queue?: boolean;
  processes?: number;
}

function trainRequest(o: TrainFlags): TrainRequestInput {
  return {
    method: o.method,
    baseModel: o.base,
    dataset: o.dataset,
    modelName: o.name,
    route: o.route,
    seed: o.seed,
    hyperparameters: {
      maxSteps: o.maxSteps,
      epochs: o.epochs,
      batchSize: o.batchSize,
      learningRate: o.learningRate,
      saveSteps: o.saveSteps,
    },
    lora: { enabled: o.lora, ...(o.loraR ? { r: o.loraR, alpha: 2 * o.loraR } : {}) },
    methodConfig: o.methodConfig,
    rewardModel: o.rewardModel,
    evaluate: o.eval,
    processes: o.processes,
  };
}

export function registerTrainingCommands(program: Command): void {
  program
    .command('train')
    .description(
      'Train a model on a dataset version with the model worker and register it as a candidate (Ctrl-C cancels)',
    )
    .requiredOption('--project <name>', 'project name')
    .requiredOption('--dataset <ref>', 'dataset version: name (latest), name@N or id')
    .addOption(new Option('--method <method>', 'trainer').choices([...trainingMethods]).makeOptionMandatory())
    .requiredOption('--base <path>', 'base model folder (e.g. .ratchet/models/tiny-support)')
    .option('--name <model>', 'name of the candidate model (default <dataset>-v<N>-<method>-<run>)')
    .option('--route <route>', 'the gateway route the candidate would serve')
    .option('--seed <n>', 'random seed', positiveInteger)
    .option('--max-steps <n>', 'stop after this many optimizer steps', positiveInteger)
    .option('--epochs <n>', 'passes over the data (default 1)', positiveNumber)
    .option('--batch-size <n>', 'per-device batch size (default 8)', positiveInteger)
    .option('--learning-rate <x>', "learning rate (default: the method's)", positiveNumber)
    .option('--save-steps <n>', 'checkpoint every n steps (for resume)', positiveInteger)
    .option('--lora-r <n>', 'LoRA rank (alpha is twice it)', positiveInteger)
    .option('--no-lora', 'full fine-tuning instead of LoRA')
    .option('--method-config <json>', "the method's settings, e.g. '{\"beta\":0.1}'", jsonObject)
    .option('--reward-model <model>', 'rl: a registered reward model or an adapter folder')
    .option('--no-eval', "skip evaluation on the version's test split")
    .option(
      '--processes <n>',
      'worker processes training together through accelerate launch (DDP over gloo on CPU; RATCHET_ACCELERATE_CONFIG for GPUs/FSDP)',
      positiveInteger,
    )
    .option('--queue', 'only enqueue the run for a `ratchet worker` and print its id')
    .action(async (opts: TrainFlags) => {
      await withStore(program.opts(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        const request = trainRequest(opts);
        if (opts.queue) {
          const service = new TrainingService(store);
          try {
            const run = await service.submit(projectId, request);
            console.log(run.id);
            console.error(
              `queued run ${run.id} (${service.queue.kind} queue); a \`ratchet worker\` will take it`,
            );
          } finally {
            await service.stop();
          }
          return;
        }
        const run = await startTrainingRun(store, projectId, request);
        console.error(
          `run ${run.id}: ${run.method} on ${run.request.datasetVersion}, output ${run.outputDir}`,
        );
        report(await runHere(store, run.id, { label: `train ${run.method}` }), run.id);
      });
    });

  const runs = program.command('runs').description('Training runs: list, show, cancel, resume');
  runs
    .command('list', { isDefault: true })
    .description('Training runs of a project, newest first')
    .requiredOption('--project <name>', 'project name')
    .addOption(new Option('--status <status>', 'only runs in this state').choices(runStatuses))
    .option('--limit <n>', 'at most this many', positiveInteger, 50)
    .action(async (opts: { project: string; status?: RunStatus; limit: number }) => {
      await withStore(program.opts(), async (store) => {
        const rows = await store.runs.list(await projectIdByName(store, opts.project), {
          status: opts.status,
          limit: opts.limit,
        });
        console.table(
          rows.map((r) => ({
            run: r.id,
            status: r.status,
            method: r.method,
            dataset: String(r.request.datasetVersion ?? r.datasetId ?? ''),
            step: `${r.progress.step ?? 0}/${r.progress.total ?? '?'}`,
            loss: fmt(r.metrics.loss?.at(-1)?.[1]),
            took: seconds(r.finishedAt && r.startedAt ? r.finishedAt - r.startedAt : null),
            model: String(r.artifacts?.modelName ?? ''),
          })),
        );
      });
    });
  runs
    .command('show')
    .description("A run's progress, latest metric values, artifacts and error")
    .requiredOption('--project <name>', 'project name')
    .argument('<run>', 'run id')
    .option('--metrics', 'print the whole metric series as JSON instead')
    .action(async (id: string, opts: { project: string; metrics?: boolean }) => {
      await withStore(program.opts(), async (store) => {
        const run = await store.runs.get(id, await projectIdByName(store, opts.project));
        if (!run) throw new Error(`no run "${id}" in this project (see: ratchet runs list)`);
        if (opts.metrics) console.log(JSON.stringify(run.metrics));
        else printRun(run);
      });
    });
  runs
    .command('cancel')
    .description('Cancel a run: a queued run at once, a running one as soon as its owner sees the request')
    .requiredOption('--project <name>', 'project name')
    .argument('<run>', 'run id')
    .action(async (id: string, opts: { project: string }) => {
      await withStore(program.opts(), async (store) => {
        const run = await store.runs.requestCancel(id, await projectIdByName(store, opts.project));
        console.log(
          run.status === 'cancelled'
            ? `run ${id} cancelled`
            : `run ${id}: cancel requested; its worker stops it`,
        );
      });
    });
  runs
    .command('resume')
    .description(
      'Resume a run whose process died (status running, heartbeat stale) from its newest checkpoint, here',
    )
    .requiredOption('--project <name>', 'project name')
    .argument('<run>', 'run id')
    .option('--stale-seconds <n>', 'how old the heartbeat must be', positiveNumber, 60)
    .action(async (id: string, opts: { project: string; staleSeconds: number }) => {
      await withStore(program.opts(), async (store) => {
        const run = await store.runs.get(id, await projectIdByName(store, opts.project));
        if (!run) throw new Error(`no run "${id}" in this project (see: ratchet runs list)`);
        if (run.status !== 'running' && run.status !== 'queued')
          throw new Error(`run ${id} is ${run.status}; only a queued or orphaned running run can be resumed`);
        report(
          await runHere(store, id, { staleMs: opts.staleSeconds * 1000, label: `resume ${run.method}` }),
          id,
        );
      });
    });

  program
    .command('worker')
    .description(
      'Take queued training jobs (pg-boss on PostgreSQL, the runs table on SQLite) and resume orphaned runs, until stopped',
    )
    .option('--stale-seconds <n>', 'resume runs whose heartbeat is older than this', positiveNumber, 60)
    .option('--poll-ms <n>', 'how often an idle worker looks for jobs', positiveInteger, 1000)
    .option('--max-jobs <n>', 'exit after this many runs', positiveInteger)
    .action(async (opts: { staleSeconds: number; pollMs: number; maxJobs?: number }) => {
      await withStore(program.opts(), async (store) => {
        let finished = 0;
        let stopRequested: () => void = () => {};
        const stopped = new Promise<void>((res) => {
          stopRequested = res;
        });
        const service = new TrainingService(store, {
          staleMs: opts.staleSeconds * 1000,
          pollMs: opts.pollMs,
          actor: 'worker',
          onOutcome: ({ run, model }) => {
            finished++;
            console.log(
              `run ${run.id} ${run.status}${model ? `: registered ${model.name}` : ''}${run.error ? `: ${run.error}` : ''}`,
            );
            if (opts.maxJobs !== undefined && finished >= opts.maxJobs) stopRequested();
          },
        });
        process.once('SIGINT', stopRequested);
        process.once('SIGTERM', stopRequested);
        await service.work();
        console.error(`worker ready (${service.queue.kind} queue)`);
        await stopped;
        await service.stop();
      });
    });

  const models = program.commands.find((c) => c.name() === 'models');
  models
    ?.command('show')
    .description('A model with its lineage: the run that trained it and the dataset version it learned from')
    .requiredOption('--project <name>', 'project name')
    .argument('<model>', 'model name or id')
    .action(async (ref: string, opts: { project: string }) => {
      await withStore(program.opts(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        const model = await store.models.get(projectId, ref);
        if (!model) throw new Error(`no model "${ref}" in this project (see: ratchet models list)`);
        const run = model.runId ? await store.runs.get(model.runId, projectId) : undefined;
        const dataset = model.datasetId ? await store.datasets.get(projectId, model.datasetId) : undefined;
        console.log(
          JSON.stringify(
            {
              ...model,
              run: run && {
                id: run.id,
                method: run.method,
                status: run.status,
                steps: run.progress.step,
                finalLoss: run.metrics.loss?.at(-1)?.[1],
              },
              dataset: dataset && {
                id: dataset.id,
                name: dataset.name,
                version: dataset.version,
                method: dataset.method,
              },
            },
            null,
            2,
          ),
        );
      });
    });
}
