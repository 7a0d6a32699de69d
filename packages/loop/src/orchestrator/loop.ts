import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { datasetBuilders, type GateResult, RatchetError } from '@ratchet/core';
import type { LoopApproval, LoopRound, Model, Store } from '@ratchet/store';
import { selfCritique } from '../ai-feedback/critique.js';
import {
  type AiLabelReport,
  labelFromRatings,
  labelWithJudge,
  labelWithRewardModel,
} from '../ai-feedback/label.js';
import { calibrateProject } from '../calibrate.js';
import { buildDatasetVersion, loadDatasetInputs } from '../datasets.js';
import { runEvaluation } from '../eval/harness.js';
import { experimentStatus, startExperiment, stopExperiment } from '../experiments/experiments.js';
import { runTraining, startTrainingRun, type TrainingOptions } from '../training/runs.js';
import { loopCanaryPlan, offlineAdvantageOf } from './canary-plan.js';
import type { ServedModel } from './model-server.js';
import type { LoopPolicy } from './policy.js';
import { withRoutedModels } from './routed.js';

/** The stages of a round, in order; `done` ends it. */
export const loopStages = [
  'calibrate',
  'build',
  'train',
  'label',
  'evaluate',
  'canary',
  'experiment',
  'decide',
] as const;
export type LoopStage = (typeof loopStages)[number] | 'done';

/** What a round has produced so far (the `state` of its record). */
export interface RoundState {
  calibrationRunId?: string;
  calibratedItems?: number;
  datasetId?: string;
  /** Every rated answer, split like the training dataset: the heldout suite's source. */
  evalDatasetId?: string;
  rewardDatasetId?: string;
  runId?: string;
  rewardRunId?: string;
  candidate?: string;
  rewardModel?: string;
  production?: string;
  evaluationId?: string;
  aiLabels?: number;
  /** The reward model's labels: precision on held-out human ratings at its thresholds (null: it labelled none), and share of unrated answers labelled. */
  aiLabelPrecision?: number | null;
  aiLabelShare?: number;
  /** Self-critique revisions kept as corrections this round. */
  corrections?: number;
  /** The candidate may go on (no gate failed); `gateDecision` says whether the gates showed it better. */
  gatePassed?: boolean;
  gateDecision?: 'pass' | 'fail' | 'undecided';
  /** Why a gate failed, or (undecided) why the evidence could not decide. */
  gateReasons?: string[];
  /** The evaluation's estimate of the candidate's advantage on the live metric (metric units); null: none. */
  offlineAdvantage?: { estimate: number; lower: number; upper: number; items: number; source: string } | null;
  /** How the canary was sized: the mixture, the effect and power of its horizon, the users planned. */
  canaryPlan?: {
    expectedEffect: number;
    horizonEffect: number;
    power: number;
    horizonStandardError: number;
    plannedUsers: number;
    metricSd: number;
  };
  experimentId?: string;
  decision?: string;
  decisionReasons?: string[];
  observations?: Record<string, number>;
  /** A person's answer when the policy does not promote on its own (`promotion.auto: false`). */
  approval?: LoopApproval;
}

export interface LoopContext {
  store: Store;
  projectId: string;
  policy: LoopPolicy;
  /** Where the route's models are served, OpenAI-compatible, up to /v1 (for evaluation). */
  modelsBaseUrl: string;
  /** Makes the model server serve these models (a no-op when serving is managed elsewhere). */
  serve?: (models: ServedModel[]) => Promise<void>;
  training?: TrainingOptions;
  dataDir?: string;
  actor?: string;
  /** One line per notable thing the loop did (for the CLI and the server log). */
  log?: (line: string) => void;
}

const actorOf = (ctx: LoopContext) => ctx.actor ?? 'loop';
const served = (m: Model): ServedModel => ({ name: m.name, adapterPath: m.adapterPath });

/**
 * Has the model server serve these models and every model the route's variants still send calls
 * to (production, the holdback of a watch, per-segment adapters): the server unloads what it is
 * not asked for, and those users' calls must keep being answered.
 */
async function serve(ctx: LoopContext, models: ServedModel[]): Promise<void> {
  if (!ctx.serve) return;
  await ctx.serve(await withRoutedModels(ctx.store, ctx.projectId, ctx.policy.route, models));
}

async function production(ctx: LoopContext): Promise<Model> {
  const model = await ctx.store.models.production(ctx.projectId, ctx.policy.route);
  if (!model)
    throw new RatchetError(
      'invalid_request',
      `route "${ctx.policy.route}" has no production model; register one (ratchet models register --stage production)`,
      'route',
    );
  return model;
}

async function modelByName(ctx: LoopContext, name: string): Promise<Model> {
  const m = await ctx.store.models.get(ctx.projectId, name);
  if (!m) throw new RatchetError('not_found', `model "${name}" is not in the registry`, 'model');
  return m;
}

/**
 * Whether another round should start: enough new feedback since the last round started, or (with
 * `trigger.everyHours`) the schedule says so and there is any new feedback to learn from.
 */
export async function roundIsDue(
  ctx: LoopContext,
  now = Date.now(),
): Promise<{ due: boolean; newFeedback: number; why?: 'feedback' | 'schedule' }> {
  const [last] = await ctx.store.loops.list(ctx.projectId, { route: ctx.policy.route, limit: 1 });
  const newFeedback = await ctx.store.feedback.count(ctx.projectId, last?.createdAt);
  const t = ctx.policy.trigger;
  if (newFeedback >= t.minNewFeedback) return { due: true, newFeedback, why: 'feedback' };
  const scheduled =
    t.everyHours !== undefined &&
    newFeedback > 0 &&
    (!last || now - last.createdAt >= t.everyHours * 3_600_000);
  return scheduled ? { due: true, newFeedback, why: 'schedule' } : { due: false, newFeedback };
}

/**
 * Trains one model and waits for it; the registered candidate, or an error naming the run.
 * Idempotent by model name (each round names its models): a model an earlier attempt of this
 * stage registered is reused, and its run, if still queued or orphaned by a crash, is resumed
 * rather than trained again beside it.
 */
async function train(
  ctx: LoopContext,
  request: Parameters<typeof startTrainingRun>[2] & { modelName: string },
): Promise<{ runId: string; model: Model }> {
  const done = await ctx.store.models.get(ctx.projectId, request.modelName);
  if (done?.runId) return { runId: done.runId, model: done };
  const options = { dataDir: ctx.dataDir, actor: actorOf(ctx), ...ctx.training };
  const runs = await ctx.store.runs.list(ctx.projectId, { limit: 1000 });
  const pending = runs.find(
    (r) => r.request.modelName === request.modelName && (r.status === 'queued' || r.status === 'running'),
  );
  const runId = pending?.id ?? (await startTrainingRun(ctx.store, ctx.projectId, request, options)).id;
  // A run left `running` by a crashed loop has a stale heartbeat: claim it again from its checkpoint.
  let outcome = await runTraining(ctx.store, runId, { ...options, staleMs: ORPHANED_AFTER_MS });
  // Not claimable: a live owner trains it (a worker of the queue), or its owner died so recently
  // that its heartbeat is not stale yet (a server that took the round over from a dead one).
  // Waiting for it, rather than failing the round, is what keeps one run per model.
  while (!outcome) {
    const run = await ctx.store.runs.get(runId);
    if (!run) break;
    if (run.status !== 'queued' && run.status !== 'running') {
      const model = await ctx.store.models.get(ctx.projectId, request.modelName);
      outcome = { run, ...(model?.runId === runId ? { model } : {}) };
      break;
    }
    await new Promise((r) => setTimeout(r, 1000));
    outcome = await runTraining(ctx.store, runId, { ...options, staleMs: ORPHANED_AFTER_MS });
  }
  if (!outcome?.model)
    throw new Error(
      `training run ${runId} ended ${outcome?.run.status ?? 'unclaimed'}: ${outcome?.run.error ?? ''}`,
    );
  return { runId, model: outcome.model };
}

/** A training run whose owner has not beaten its heart for this long is taken to be dead. */
const ORPHANED_AFTER_MS = 30_000;

/**
 * A dataset version of this name that an earlier attempt of the round's build stage made (after
 * the round reached the stage), else a new one: a crash between building and recording the
 * stage does not leave two versions behind.
 */
async function buildOnce(
  ctx: LoopContext,
  round: LoopRound,
  spec: Parameters<typeof buildDatasetVersion>[2],
  inputs: Awaited<ReturnType<typeof loadDatasetInputs>>,
) {
  const earlier = (await ctx.store.datasets.list(ctx.projectId)).find(
    (d) => d.name === spec.name && d.createdAt >= round.updatedAt,
  );
  return earlier ?? buildDatasetVersion(ctx.store, ctx.projectId, spec, { dataDir: ctx.dataDir, inputs });
}

/** One line on what a labeller did: its labels, and its held-out precision or why it labelled none. */
function describeLabels(r: AiLabelReport): string {
  const h = r.reliability;
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  const how =
    h.precision === null
      ? `labels none: ${h.reasons.join('; ') || 'no held-out answers'}`
      : `people agreed with ${pct(h.precision)} of its labels on ${h.checkLabeled} of ${h.check} held-out rated answers, each labelled by thresholds chosen without it (lower bound ${pct(h.lower!)}, target ${pct(h.targetPrecision)})`;
  return `labeled ${r.labeled} of ${r.looked} unrated answers (${r.up} up, ${r.down} down, ${r.unsure} too close to call); ${how}`;
}

/** The LLM judge grades the route's still-unrated answers (AI feedback); adds its labels to `out`. */
async function labelByJudge(ctx: LoopContext, round: number, out: RoundState) {
  const ai = ctx.policy.aiFeedback;
  const report = await labelWithJudge(ctx.store, ctx.projectId, {
    judge: ctx.policy.evaluation.judge!,
    route: ctx.policy.route,
    limit: ai.judge.limit,
    samples: ai.judge.samples,
    targetPrecision: ai.targetPrecision,
    alpha: ai.alpha,
    minConfidence: ai.judge.minConfidence,
    heldOutLimit: ai.judge.heldOutLimit,
  });
  ctx.log?.(`round ${round}: the judge ${describeLabels(report)}`);
  out.aiLabels = (out.aiLabels ?? 0) + report.labeled;
  return report;
}

/** People's own ratings label the route's unrated answers (labelFromRatings); adds to `out`. */
async function labelByRatings(ctx: LoopContext, round: number, out: RoundState) {
  const ai = ctx.policy.aiFeedback;
  const report = await labelFromRatings(ctx.store, ctx.projectId, {
    scorer: ai.ratings.scorer,
    route: ctx.policy.route,
    limit: ai.ratings.limit,
    targetPrecision: ai.targetPrecision,
    alpha: ai.alpha,
    minConfidence: ai.minConfidence,
  });
  ctx.log?.(`round ${round}: people's ratings (${ai.ratings.scorer}) ${describeLabels(report)}`);
  out.aiLabels = (out.aiLabels ?? 0) + report.labeled;
  return report;
}

/**
 * What a stacked round trains on: the production model's own weights when it is a full model
 * folder (a merged candidate of an earlier round), else the policy's base.
 */
export function stackedBase(p: LoopPolicy, prod: Model): string {
  const folder = prod.adapterPath;
  if (!folder || existsSync(join(folder, 'adapter_config.json'))) return p.baseModel;
  return existsSync(join(folder, 'config.json')) ? folder : p.baseModel;
}

/** What every dataset of a round shares with the policy's: prompt grouping and curation. */
const sharedSpec = (p: LoopPolicy) => ({
  ...(p.dataset.groupSimilarPrompts !== undefined
    ? { groupSimilarPrompts: p.dataset.groupSimilarPrompts }
    : {}),
  ...(p.dataset.curation !== undefined ? { curation: p.dataset.curation } : {}),
});

/** The training dataset's split, for the round's other datasets (no prompt is test in one and train in another). */
const sameSplit = (p: LoopPolicy) => (p.dataset.options.split ? { split: p.dataset.options.split } : {});

/** Whether the heldout suite needs its own dataset (the training one keeps only some rated answers). */
function needsEvalDataset(p: LoopPolicy): boolean {
  return (
    p.evaluation.enabled &&
    p.evaluation.suites.includes('heldout') &&
    p.evaluation.heldOut === 'all-rated' &&
    datasetBuilders[p.dataset.method].keeps !== 'every-rated-answer'
  );
}

type StageResult = {
  to: LoopStage;
  state?: RoundState;
  status?: LoopRound['status'];
  note?: Record<string, unknown>;
};
type StageFn = (ctx: LoopContext, round: LoopRound, state: RoundState) => Promise<StageResult | undefined>;

/** How the loop calibrates: the policy's reference and rater-model options. */
function calibrationOptions(ctx: LoopContext) {
  const c = ctx.policy.calibration;
  return {
    dataDir: ctx.dataDir,
    ...(c.reference !== 'none' ? { reference: c.reference } : {}),
    ...(c.options ? { calibration: c.options } : {}),
  };
}

const stages: Record<(typeof loopStages)[number], StageFn> = {
  async calibrate(ctx, round) {
    // A calibration made since the round reached this stage (by an attempt that crashed before
    // recording it) is as fresh as a new one.
    const latest = await ctx.store.calibration.latestRun(ctx.projectId);
    const run =
      latest && latest.createdAt >= round.updatedAt
        ? { id: latest.id, ...(latest.stats as { items?: number; raters?: number; flagged?: number }) }
        : await calibrateProject(ctx.store, ctx.projectId, calibrationOptions(ctx)).then((s) => ({
            ...s,
            id: s.run.id,
          }));
    return {
      to: 'build',
      state: { calibrationRunId: run.id, calibratedItems: run.items },
      note: { items: run.items, raters: run.raters, flagged: run.flagged },
    };
  },

  async build(ctx, round) {
    const p = ctx.policy;
    const inputs = await loadDatasetInputs(ctx.store, ctx.projectId);
    const name = `${p.route}-${p.dataset.method}`.toLowerCase().replace(/[^a-z0-9._-]/g, '-');
    // The model this round's candidate starts from (stacked) or competes with: its own answers.
    const options = p.dataset.productionAnswersOnly
      ? { ...p.dataset.options, fromModels: [(await production(ctx)).name] }
      : p.dataset.options;
    const dataset = await buildOnce(
      ctx,
      round,
      { name, method: p.dataset.method, options, ...sharedSpec(p) },
      inputs,
    );
    const state: RoundState = { datasetId: dataset.id };
    if (needsEvalDataset(p)) {
      // Same split as the training dataset, so no held-out prompt was trained on.
      const heldOut = await buildOnce(
        ctx,
        round,
        {
          name: `${p.route}-eval`.toLowerCase().replace(/[^a-z0-9._-]/g, '-'),
          method: 'rwsft',
          options: { minAbsReward: 0, ...sameSplit(p) },
          ...sharedSpec(p),
        },
        inputs,
      );
      state.evalDatasetId = heldOut.id;
    }
    if (p.rewardModel.enabled) {
      // Early on there may be no preference pairs at all (every answer rated alike): the round
      // goes on without a reward model rather than failing.
      const reward = await buildOnce(
        ctx,
        round,
        {
          name: `${name}-reward`.replace(/-kto-reward|-dpo-reward/, '-reward'),
          method: 'reward',
          options: { ...sameSplit(p), ...p.rewardModel.options },
          ...sharedSpec(p),
        },
        inputs,
      ).catch((err: unknown) => {
        const why = err instanceof Error ? err.message : String(err);
        if (!/produced no rows/.test(why)) throw err;
        ctx.log?.(`round ${round.round}: no reward model this round (${why})`);
        return undefined;
      });
      if (reward) state.rewardDatasetId = reward.id;
    }
    ctx.log?.(
      `round ${round.round}: built dataset ${dataset.name} v${dataset.version} (${dataset.rowCount} rows)`,
    );
    return { to: 'train', state, note: { datasetId: dataset.id, rows: dataset.rowCount } };
  },

  async train(ctx, round, state) {
    const p = ctx.policy;
    const prod = await production(ctx);
    const out: RoundState = { production: prod.name };
    if (state.rewardDatasetId && !state.rewardModel) {
      const rm = await train(ctx, {
        method: 'reward',
        baseModel: p.baseModel,
        dataset: state.rewardDatasetId,
        modelName: `${p.route}-reward-r${round.round}`,
        hyperparameters: p.rewardModel.hyperparameters,
        seed: p.training.seed + round.round,
        processes: p.training.processes,
      });
      out.rewardRunId = rm.runId;
      out.rewardModel = rm.model.name;
      ctx.log?.(`round ${round.round}: trained reward model ${rm.model.name}`);
      // Kept in the round now, so a crash while the candidate trains resumes with it.
      await ctx.store.loops.advance(ctx.projectId, round.id, {
        from: 'train',
        to: 'train',
        state: out as Record<string, unknown>,
        actor: actorOf(ctx),
        note: { rewardModel: rm.model.name },
      });
    }
    const rewardModel = out.rewardModel ?? state.rewardModel;
    // rl optimizes the round's reward model: a round that could not train one (no preference
    // pairs yet) has no reward to learn from.
    if (p.training.method === 'rl' && !rewardModel)
      throw new RatchetError(
        'conflict',
        "training method rl needs the round's reward model, and this round has none (no preference pairs in the ratings yet)",
        'training.method',
      );
    const policyModel = await train(ctx, {
      method: p.training.method,
      ...(p.training.method === 'rl' ? { rewardModel } : {}),
      baseModel: p.training.stack ? stackedBase(p, prod) : p.baseModel,
      dataset: state.datasetId!,
      modelName: `${p.route}-r${round.round}`,
      route: p.route,
      hyperparameters: p.training.hyperparameters,
      lora: p.training.stack ? { ...p.training.lora, merge: true } : p.training.lora,
      methodConfig: p.training.methodConfig,
      seed: p.training.seed + round.round,
      processes: p.training.processes,
    });
    ctx.log?.(`round ${round.round}: trained candidate ${policyModel.model.name} (${p.training.method})`);
    return { to: 'label', state: { ...out, runId: policyModel.runId, candidate: policyModel.model.name } };
  },

  async label(ctx, round, state) {
    const ai = ctx.policy.aiFeedback;
    const judge = ctx.policy.evaluation.judge;
    const { enabled: critique, ...critiqueSettings } = ctx.policy.selfCritique;
    const judgeLabels = ai.enabled && ai.judge.enabled && judge !== undefined;
    const ratingsLabels = ai.enabled && ai.ratings.enabled;
    if (!state.rewardModel && !judgeLabels && !ratingsLabels) return { to: 'evaluate' };
    if (!ai.enabled && !critique) return { to: 'evaluate' };
    const out: RoundState = {};
    const note: Record<string, unknown> = {};
    // People's own ratings first: what they label, the model labellers need not guess.
    if (ratingsLabels) note.ratingsLabels = await labelByRatings(ctx, round.round, out);
    if (!state.rewardModel) {
      if (!judgeLabels) return { to: 'evaluate', state: out, note };
      note.judgeLabels = await labelByJudge(ctx, round.round, out);
      return { to: 'evaluate', state: out, note };
    }
    const rm = await modelByName(ctx, state.rewardModel);
    await serve(ctx, [served(await modelByName(ctx, state.production!)), served(rm)]);
    if (ai.enabled) {
      // The reward model's training rows are not held out: its scores there say nothing of
      // how it does on answers it never saw.
      const trainedOn = state.rewardDatasetId
        ? await ctx.store.datasets.members(ctx.projectId, state.rewardDatasetId, 'train')
        : [];
      const report = await labelWithRewardModel(ctx.store, ctx.projectId, {
        rewardModel: { baseURL: ctx.modelsBaseUrl, model: rm.name },
        route: ctx.policy.route,
        limit: ai.limit,
        targetPrecision: ai.targetPrecision,
        alpha: ai.alpha,
        minConfidence: ai.minConfidence,
        trainedOn,
      });
      ctx.log?.(`round ${round.round}: ${rm.name} ${describeLabels(report)}`);
      // Counted from the store, not this attempt's writes: an attempt resumed after a crash in
      // this stage finds the first attempt's labels written (and no longer unrated), and the
      // round must still say how many answers its reward model labelled, of how many.
      const total = await ctx.store.feedback.countByRater(ctx.projectId, report.rater);
      const earlier = total - report.labeled;
      out.aiLabels = (out.aiLabels ?? 0) + total;
      out.aiLabelPrecision = report.reliability.precision;
      out.aiLabelShare = report.looked + earlier > 0 ? total / (report.looked + earlier) : 0;
      note.labels = report;
    }
    if (judgeLabels) note.judgeLabels = await labelByJudge(ctx, round.round, out);
    if (critique) {
      const report = await selfCritique(ctx.store, ctx.projectId, {
        ...critiqueSettings,
        route: ctx.policy.route,
        writer: { baseURL: ctx.modelsBaseUrl, model: state.production },
        rewardModel: { baseURL: ctx.modelsBaseUrl, model: rm.name },
        ...(ctx.policy.evaluation.judge ? { judge: ctx.policy.evaluation.judge } : {}),
      });
      ctx.log?.(
        `round ${round.round}: self-critique kept ${report.kept} revisions of ${report.looked} low-rated answers as corrections`,
      );
      out.corrections = report.kept;
      note.critique = {
        looked: report.looked,
        revised: report.revised,
        kept: report.kept,
        rejected: report.rejected,
      };
    }
    return { to: 'evaluate', state: out, note };
  },

  async evaluate(ctx, round, state) {
    const p = ctx.policy;
    if (!p.evaluation.enabled)
      return { to: 'canary', state: { gatePassed: true, gateReasons: ['evaluation off'] } };
    const models = [await modelByName(ctx, state.production!), await modelByName(ctx, state.candidate!)];
    if (state.rewardModel) models.push(await modelByName(ctx, state.rewardModel));
    await serve(ctx, models.map(served));
    const endpoint = (model: string) => ({ baseURL: ctx.modelsBaseUrl, model });
    const earlier = (await ctx.store.evaluations.list(ctx.projectId, { modelId: models[1]!.id })).find(
      (e) => e.createdAt >= round.updatedAt && e.status === 'succeeded' && e.gate,
    );
    const outcome = earlier
      ? { evaluation: earlier, gate: earlier.gate! }
      : await runEvaluation(
          ctx.store,
          ctx.projectId,
          {
            name: `${p.route} round ${round.round}`,
            candidate: { endpoint: endpoint(state.candidate!), model: state.candidate! },
            baseline: { endpoint: endpoint(state.production!), model: state.production! },
            dataset: state.evalDatasetId ?? state.datasetId,
            maxItems: p.evaluation.maxItems,
            suites: p.evaluation.suites,
            generation: { maxTokens: p.evaluation.maxTokens, temperature: 0 },
            ...(state.rewardModel ? { rewardModel: { endpoint: endpoint(state.rewardModel) } } : {}),
            ...(p.evaluation.judge ? { judge: { endpoint: p.evaluation.judge } } : {}),
            gates: p.evaluation.gates,
          },
          { actor: actorOf(ctx) },
        );
    // An evaluation stored before gates had three outcomes has only `passed` and `reasons`.
    const gate = outcome.gate as Pick<GateResult, 'passed' | 'reasons'> & Partial<GateResult>;
    const decision = gate.decision ?? (gate.passed ? 'pass' : 'fail');
    const why = decision === 'fail' ? gate.reasons : decision === 'undecided' ? (gate.undecided ?? []) : [];
    ctx.log?.(
      `round ${round.round}: evaluation ${decision === 'pass' ? 'passed' : decision === 'fail' ? 'failed' : 'undecided, the canary decides'}${why.length ? `: ${why.join('; ')}` : ''}`,
    );
    const gateState = {
      evaluationId: outcome.evaluation.id,
      gatePassed: decision !== 'fail',
      gateDecision: decision,
      gateReasons: why,
      offlineAdvantage: offlineAdvantageOf(
        outcome.evaluation.summary as Parameters<typeof offlineAdvantageOf>[0],
        p.evaluation.gates,
        p.experiment.metric,
      ),
    };
    if (decision === 'fail')
      return { to: 'done', status: 'rejected', state: gateState, note: { reasons: why } };
    return { to: 'canary', state: gateState };
  },

  async canary(ctx, round, state) {
    const p = ctx.policy;
    const prod = await modelByName(ctx, state.production!);
    const cand = await modelByName(ctx, state.candidate!);
    await serve(ctx, [served(prod), served(cand)]);
    const name = `${p.route}-r${round.round}`;
    // An attempt that crashed before recording this stage may have started it already.
    const [running] = (
      await ctx.store.experiments.list(ctx.projectId, { route: p.route, status: 'running' })
    ).filter((e) => e.name === name);
    // Sized from power, not a fixed count of users: the mixture where the effect is expected, and
    // a horizon at which the test would have found the smallest effect worth shipping.
    const plan = await loopCanaryPlan(ctx.store, ctx.projectId, p, state.offlineAdvantage);
    const rule = p.experiment.decisionRule;
    const mixtureNamed = 'expectedEffect' in rule || 'tauInStandardDeviations' in rule;
    const experiment =
      running ??
      (await startExperiment(
        ctx.store,
        ctx.projectId,
        {
          name,
          route: p.route,
          control: 'production',
          variants: [
            { name: 'production', model: prod.name, upstream: p.upstream, weight: 1 - p.canary.share },
            { name: 'candidate', model: cand.name, upstream: p.upstream, weight: p.canary.share },
          ],
          metric: p.experiment.metric,
          engine: p.experiment.engine,
          decisionRule: {
            minObservationsPerArm: p.experiment.minObservationsPerArm,
            maxObservationsPerArm: p.experiment.maxObservationsPerArm,
            ...(p.experiment.guardrails.length ? { guardrails: p.experiment.guardrails } : {}),
            ...(mixtureNamed ? {} : { expectedEffect: plan.expectedEffect }),
            horizon: { effect: plan.horizonEffect, power: plan.power },
            ...rule,
          },
        },
        { actor: actorOf(ctx) },
      ));
    if (cand.stage !== 'canary')
      await ctx.store.models.setStage(
        ctx.projectId,
        cand.name,
        'canary',
        actorOf(ctx),
        `round ${round.round}: canary at ${p.canary.share}`,
      );
    ctx.log?.(
      `round ${round.round}: canary ${cand.name} gets ${Math.round(p.canary.share * 100)}% of ${p.route}; ${plan.reasons.join('; ')}`,
    );
    return {
      to: 'experiment',
      state: {
        experimentId: experiment.id,
        canaryPlan: {
          expectedEffect: plan.expectedEffect,
          horizonEffect: plan.horizonEffect,
          power: plan.power,
          horizonStandardError: Math.sqrt(plan.horizonVariance),
          plannedUsers: plan.plannedUsers.total,
          metricSd: plan.metricSd.sd,
        },
      },
    };
  },

  async experiment(ctx, round, state) {
    const stoppedByHand = await handStop(ctx, state.experimentId!);
    if (stoppedByHand) {
      ctx.log?.(`round ${round.round}: ${stoppedByHand.actor} stopped the canary (${stoppedByHand.reason})`);
      return { to: 'decide', state: stoppedByHand.state };
    }
    // The outcomes leave out the raters calibration flagged: flagged on what they said so far.
    if (ctx.policy.calibration.beforeEachLook)
      await calibrateProject(ctx.store, ctx.projectId, calibrationOptions(ctx));
    const status = await experimentStatus(ctx.store, ctx.projectId, state.experimentId!, { record: true });
    // Observations are users with an outcome: the user is the unit of the experiment.
    // (an implicit metric's users are every user served: each has a rate, 0 when they did nothing).
    const observed = (v: (typeof status.variants)[number]) => v.metrics[ctx.policy.experiment.metric].users;
    const observations = Object.fromEntries(status.variants.map((v) => [v.name, observed(v)]));
    const decision = status.decision.decision;
    // Running until the test decides, or until its planned end (the horizon sized from power, or
    // the hard cap on users): only then is "no effect" the answer.
    if (decision === 'keep_running' && !status.decision.noEffect) return undefined; // look again later
    const final =
      decision === 'ship' && status.decision.variant === 'candidate'
        ? 'ship'
        : decision === 'keep_running'
          ? 'no_effect'
          : decision;
    ctx.log?.(`round ${round.round}: experiment decided ${final} (${status.decision.reasons.join('; ')})`);
    return {
      to: 'decide',
      state: { decision: final, decisionReasons: status.decision.reasons, observations },
    };
  },

  async decide(ctx, round, state) {
    const p = ctx.policy;
    const shipped = state.decision === 'ship';
    if (shipped && !p.promotion.auto && !state.approval) {
      ctx.log?.(
        `round ${round.round}: the experiment shipped ${state.candidate}; waiting for a person to approve or reject it`,
      );
      return {
        to: 'decide',
        status: 'awaiting_approval',
        note: { candidate: state.candidate, decisionReasons: state.decisionReasons },
      };
    }
    const approval = shipped ? state.approval : undefined;
    const ship = shipped && (approval?.approved ?? true);
    // The promotion is the approver's act when a person approved it.
    const actor = approval?.actor ?? actorOf(ctx);
    const why = approval
      ? `round ${round.round}: ${approval.approved ? 'approved' : 'rejected'} by ${approval.actor}${approval.reason ? ` (${approval.reason})` : ''}`
      : `round ${round.round}: ${state.decision}`;
    // Stopping keeps one variant on the route at full weight: the candidate if it won, else
    // production. An attempt that crashed before recording this stage may have done it already.
    const experiment = await ctx.store.experiments.get(ctx.projectId, state.experimentId!);
    if (experiment?.status === 'running')
      await stopExperiment(ctx.store, ctx.projectId, experiment.id, {
        keep: ship ? 'candidate' : 'production',
        reason: why,
        actor,
      });
    const candidate = await modelByName(ctx, state.candidate!);
    if (ship) {
      const promoted =
        candidate.stage === 'production'
          ? candidate
          : await ctx.store.models.setStage(
              ctx.projectId,
              state.candidate!,
              'production',
              actor,
              approval ? why : `round ${round.round}: the experiment shipped it`,
              undefined,
              p.promotion.watch ? { watch: p.promotion.watch } : {},
            );
      ctx.log?.(`round ${round.round}: promoted ${promoted.name} to production`);
      return { to: 'done', status: 'succeeded' };
    }
    if (candidate.stage !== 'archived')
      await ctx.store.models.setStage(ctx.projectId, state.candidate!, 'archived', actor, why);
    if (approval) {
      ctx.log?.(`${why}; ${state.production} stays`);
      return {
        to: 'done',
        status: 'rejected',
        note: { rejectedBy: approval.actor, reason: approval.reason },
      };
    }
    ctx.log?.(
      `round ${round.round}: rolled back ${state.candidate} (${state.decision}); ${state.production} stays`,
    );
    return { to: 'done', status: 'rolled_back' };
  },
};

/**
 * A canary a person stopped (API, CLI or dashboard) before the test decided: the round ends by
 * that person's choice instead of waiting on a test that no longer runs. Keeping the candidate is
 * their approval of it; keeping production (or neither) rejects it.
 */
async function handStop(ctx: LoopContext, experimentId: string) {
  const experiment = await ctx.store.experiments.get(ctx.projectId, experimentId);
  if (!experiment || experiment.status === 'running') return undefined;
  const last = experiment.history.at(-1);
  const actor = last?.actor ?? 'unknown';
  const reason = last?.reasons.join('; ') || 'no reason given';
  const approved = last?.variant === 'candidate';
  const state: RoundState = {
    decision: approved ? 'ship' : 'stopped',
    decisionReasons: [`stopped by ${actor}: ${reason}`],
    ...(approved ? { approval: { approved, actor, reason, at: last?.at ?? Date.now() } } : {}),
  };
  return { actor, reason, state };
}

/**
 * Runs the current round of the policy's route one stage at a time until it ends or must wait
 * (an experiment still collecting users, a promotion waiting for a person). Each finished stage
 * is recorded before the next starts, so after a crash the same call continues where it stopped.
 * Starts a new round first if none is running and `start` is set.
 */
export async function advanceLoop(
  ctx: LoopContext,
  options: { start?: boolean } = {},
): Promise<LoopRound | undefined> {
  const p = ctx.policy;
  let round = await ctx.store.loops.current(ctx.projectId, p.route);
  if (!round) {
    if (!options.start) return undefined;
    round = await ctx.store.loops.start(
      ctx.projectId,
      p.route,
      loopStages[0],
      p as unknown as Record<string, unknown>,
      actorOf(ctx),
    );
    ctx.log?.(`round ${round.round} of ${p.route} started`);
  }
  // Stops when the round ends, or waits: for users (a stage returns nothing) or for a person
  // (`awaiting_approval`, until `store.loops.review` answers).
  while (round.status === 'running' && round.stage !== 'done') {
    const stage = round.stage as (typeof loopStages)[number];
    const fn = stages[stage];
    if (!fn) throw new Error(`loop round ${round.id} is at an unknown stage "${round.stage}"`);
    let result: StageResult | undefined;
    try {
      result = await fn(ctx, round, round.state as RoundState);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      ctx.log?.(`round ${round.round}: ${stage} failed: ${message}`);
      return ctx.store.loops.advance(ctx.projectId, round.id, {
        from: stage,
        to: 'done',
        status: 'failed',
        error: `${stage}: ${message}`,
        actor: actorOf(ctx),
      });
    }
    if (!result) return round; // waiting
    round = await ctx.store.loops.advance(ctx.projectId, round.id, {
      from: stage,
      to: result.to,
      state: result.state as Record<string, unknown> | undefined,
      status: result.status,
      actor: actorOf(ctx),
      note: result.note,
    });
  }
  return round;
}
