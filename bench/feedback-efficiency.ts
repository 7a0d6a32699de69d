// Feedback efficiency (issue 7): true quality gained against the number of ratings, per training
// method, with and without calibration under 20% adversarial raters, with and without active
// learning. Drives the real pieces: simulated raters (core simulate), the SQLite store,
// calibrateProject, buildDatasetVersion, the active-learning queue (positives objective),
// startTrainingRun/runTraining (`ratchet-worker train`), and measureTrueQuality against
// `ratchet-worker serve`. See the feedback-efficiency section of bench/README.md.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadDemoDomain, measureTrueQuality } from '@ratchet/cli';
import {
  activeLearningObjectiveFor,
  createPopulation,
  FeedbackInput,
  InteractionInput,
  judgeAnswer,
  type Persona,
  parseInput,
  SeededRandom,
  type SupportDomain,
  samplePrompt,
  simulateFeedback,
} from '@ratchet/core';
import {
  type AiLabelReport,
  buildDatasetVersion,
  type CalibrateProjectOptions,
  calibrateProject,
  type DatasetMethod,
  EndpointSpec,
  LocalModelServer,
  labelFromRatings,
  labelWithRewardModel,
  rewardScores,
  runTraining,
  selectForAnnotation,
  startTrainingRun,
} from '@ratchet/loop';
import { Store } from '@ratchet/store';
import { z } from 'zod';
import { type Bench, type BenchContext, loadNote } from './lib/bench.js';
import { freePort } from './lib/procs.js';
import { type BenchResultFile, benchDir, repoDir, resultPath, round, workDir } from './lib/results.js';

const run = promisify(execFile);

/** What one run compares; the full and the tiny (CI smoke) configurations are below. */
const Settings = z.strictObject({
  preset: z.enum(['default', 'test']),
  /** Rating budgets: the x axis. Each is a number of single thumbs. Empty: only the rate arms run. */
  budgets: z.array(z.number().int().min(4)),
  /**
   * Shares of the pool's answers people rate (`ratersPerAnswer` thumbs each), as real users
   * rate a few percent: each runs `rateArms` on the same ratings (see runRate).
   */
  ratingRates: z.array(z.number().gt(0).max(1)),
  rateArms: z.array(z.enum(['sft', 'sft-ai', 'rl'])),
  /**
   * The rate arms' pool: this many prompts with one answer each (its own sampling seed), rated in
   * a random order of answers, not of prompts: a real app's traffic, where a rated answer's
   * neighbours are rated at the rating rate like anyone else's.
   */
  ratePoolPrompts: z.number().int().min(2),
  /**
   * Who labels the unrated answers in sft-ai: people's ratings through a word model (`words`) or
   * similar rated answers (`similar`) (labelFromRatings), or the round's reward model.
   */
  labeller: z.enum(['words', 'similar', 'reward-model']),
  /**
   * Seeds the rate arms run on: on the one rate pool, each its own rater panel, choice of rated
   * answers, rating noise and training seed; the eval (prompts, people, sampling) stays `seed`'s.
   */
  rateSeeds: z.array(z.number().int()).min(1),
  /**
   * Rate seeds whose sft-ai labels are trained on and measured (empty: all). The others label
   * only (precision and share, seconds): a trained and measured pair of models takes a quarter
   * of an hour on the shared machine.
   */
  gainSeeds: z.array(z.number().int()),
  /** The round's reward model trains this many steps (0: the worker's 2 epochs). */
  rewardSteps: z.number().int().min(0),
  arms: z.array(z.string().min(1)).min(1),
  /** Prompts in the pool of answers to rate; each prompt has `answersPerPrompt` answers. */
  poolPrompts: z.number().int().min(2),
  answersPerPrompt: z.number().int().min(1).max(8),
  /** Distinct raters per answer chosen at random: the overlap calibration needs to spot adversaries. */
  ratersPerAnswer: z.number().int().min(1),
  panelSize: z.number().int().min(2),
  adversarialShare: z.number().min(0).max(1),
  evalPrompts: z.number().int().min(1),
  temperature: z.number().min(0),
  maxTokens: z.number().int().min(1),
  seed: z.number().int(),
  /** Active learning: share of the budget spent the random way first (2 raters per answer, for calibration). */
  alWarmupShare: z.number().min(0).max(1),
  /** Active learning: ratings per queue read, as a share of the budget (the estimate is refreshed in between). */
  alBatchShare: z.number().gt(0).max(1),
});
export type Settings = z.infer<typeof Settings>;

export const fullSettings: Settings = {
  preset: 'default',
  budgets: [100, 200, 400, 800],
  arms: ['sft', 'sft-raw', 'sft-al', 'sft-single', 'rwsft', 'kto', 'dpo'],
  ratingRates: [0.05, 0.15],
  rateArms: ['sft', 'sft-ai'],
  ratePoolPrompts: 2000,
  labeller: 'similar',
  rateSeeds: [0, 1, 2],
  gainSeeds: [],
  rewardSteps: 0,
  poolPrompts: 300,
  answersPerPrompt: 2,
  ratersPerAnswer: 2,
  panelSize: 10,
  adversarialShare: 0.2,
  evalPrompts: 160,
  temperature: 0.8,
  maxTokens: 80,
  seed: 0,
  alWarmupShare: 0.25,
  alBatchShare: 0.05,
};

const tinySettings: Settings = {
  ...fullSettings,
  preset: 'test',
  budgets: [24],
  // The test preset's answers are garbled (almost none liked): kto trains on the disliked ones
  // too, so the smoke test exercises training and serving; sft-al exercises the queue. (rwsft
  // would be cheaper, but its builder can write calibrated rewards outside [-1, 1], which the
  // worker rejects: see the README.)
  arms: ['kto', 'sft-al'],
  // A reward model, its labels and an rl run would triple the smoke test's time.
  ratingRates: [],
  poolPrompts: 16,
  evalPrompts: 8,
  maxTokens: 24,
};

/** Knobs for a reduced run (e.g. on a loaded machine): BENCH_FE_BUDGETS=100,400 BENCH_FE_ARMS=sft,sft-al. */
function settingsFor(ctx: BenchContext): Settings {
  const base = ctx.tiny ? tinySettings : fullSettings;
  const list = (v: string | undefined) => v?.split(',').filter(Boolean);
  const env = process.env;
  return Settings.parse({
    ...base,
    ...(env.BENCH_FE_BUDGETS !== undefined ? { budgets: list(env.BENCH_FE_BUDGETS)!.map(Number) } : {}),
    ...(env.BENCH_FE_RATES !== undefined ? { ratingRates: list(env.BENCH_FE_RATES)!.map(Number) } : {}),
    ...(env.BENCH_FE_RATE_ARMS ? { rateArms: list(env.BENCH_FE_RATE_ARMS) } : {}),
    ...(env.BENCH_FE_RATE_POOL ? { ratePoolPrompts: Number(env.BENCH_FE_RATE_POOL) } : {}),
    ...(env.BENCH_FE_LABELLER ? { labeller: env.BENCH_FE_LABELLER } : {}),
    ...(env.BENCH_FE_GAIN_SEEDS !== undefined
      ? { gainSeeds: list(env.BENCH_FE_GAIN_SEEDS)!.map(Number) }
      : {}),
    ...(env.BENCH_FE_RATE_SEEDS ? { rateSeeds: list(env.BENCH_FE_RATE_SEEDS)!.map(Number) } : {}),
    ...(env.BENCH_FE_REWARD_STEPS ? { rewardSteps: Number(env.BENCH_FE_REWARD_STEPS) } : {}),
    ...(env.BENCH_FE_ARMS ? { arms: list(env.BENCH_FE_ARMS) } : {}),
    ...(env.BENCH_FE_EVAL_PROMPTS ? { evalPrompts: Number(env.BENCH_FE_EVAL_PROMPTS) } : {}),
    ...(env.BENCH_FE_POOL_PROMPTS ? { poolPrompts: Number(env.BENCH_FE_POOL_PROMPTS) } : {}),
    ...(env.BENCH_FE_SEED ? { seed: Number(env.BENCH_FE_SEED) } : {}),
    ...(env.BENCH_FE_AL_WARMUP ? { alWarmupShare: Number(env.BENCH_FE_AL_WARMUP) } : {}),
  });
}

/**
 * Each arm: the method, its dataset options and training settings (bench/loop-settings measured
 * these on this model: the worker's defaults are for billion-parameter models), whether the
 * ratings are calibrated, and how the answers to rate are chosen.
 */
export interface Arm {
  method: DatasetMethod;
  calibrated: boolean;
  /**
   * How the answers to rate are chosen: `random` (the random order, `ratersPerAnswer` each);
   * `queue` (active learning, see rateActive); `single` (rateActive's procedure with the
   * queue's picks replaced by the random order: what one rating per answer alone buys).
   */
  choice: 'random' | 'queue' | 'single';
  dataset: Record<string, unknown>;
  learningRate: number;
  methodConfig?: Record<string, unknown>;
  label: string;
}

export const arms: Record<string, Arm> = {
  // Any answer whose calibrated reward is positive is one to imitate (as the demo's policy).
  sft: {
    method: 'sft',
    calibrated: true,
    choice: 'random',
    dataset: { minReward: 0.01, minLower: -1 },
    learningRate: 2e-3,
    label: 'sft on positives, calibrated, random',
  },
  'sft-raw': {
    method: 'sft',
    calibrated: false,
    choice: 'random',
    dataset: { minReward: 0.01, minLower: -1 },
    learningRate: 2e-3,
    label: 'sft on positives, raw ratings, random',
  },
  'sft-al': {
    method: 'sft',
    calibrated: true,
    choice: 'queue',
    dataset: { minReward: 0.01, minLower: -1 },
    learningRate: 2e-3,
    label: 'sft on positives, calibrated, active learning',
  },
  // The ablation of sft-al: the same warm-up and one rating per answer from a trusted rater, but
  // the answers in the random order instead of the queue's picks.
  'sft-single': {
    method: 'sft',
    calibrated: true,
    choice: 'single',
    dataset: { minReward: 0.01, minLower: -1 },
    learningRate: 2e-3,
    label: 'sft on positives, calibrated, one rating per answer, random',
  },
  // Full unlikelihood on disliked answers collapsed the model in loop-settings; a twentieth of it
  // (negative_scale 0.05, as its rwsft-neg005) did not.
  rwsft: {
    method: 'rwsft',
    calibrated: true,
    choice: 'random',
    dataset: { minAbsReward: 0.05 },
    learningRate: 2e-3,
    methodConfig: { negative_scale: 0.05 },
    label: 'rwsft, calibrated, random',
  },
  // Two thumbs rarely give an interval that excludes 0, so the sign alone decides.
  kto: {
    method: 'kto',
    calibrated: true,
    choice: 'random',
    dataset: { margin: 0.1, requireConfidentSign: false },
    learningRate: 3e-3,
    label: 'kto, calibrated, random',
  },
  // loop-settings' other kto setting (kto-hi: slower, but it did not fall below the base).
  'kto-lo': {
    method: 'kto',
    calibrated: true,
    choice: 'random',
    dataset: { margin: 0.1, requireConfidentSign: false },
    learningRate: 1e-3,
    label: 'kto at lr 1e-3, calibrated, random',
  },
  dpo: {
    method: 'dpo',
    calibrated: true,
    choice: 'random',
    dataset: { minMargin: 0.3 },
    learningRate: 1e-3,
    label: 'dpo, calibrated, random',
  },
};

/** "Without calibration": no flagging, no per-rater bias, scale or noise: an item's reward is the plain mean. */
const rawCalibration: CalibrateProjectOptions['calibration'] = {
  fitScale: false,
  noisePriorStrength: 1e6,
  priors: { biasSd: 1e-6 },
  flagging: { enabled: false },
};
/** Reward-model labels steer the choice of what to rate; the training data is people's ratings only. */
export const humanOnly: CalibrateProjectOptions['mapping'] = { sourceWeight: { judge: 0 } };

export interface PoolAnswer {
  id: string;
  prompt: string;
  slots: Record<string, string>;
  answer: string;
}

export interface ArmResult {
  arm: string;
  budget: number;
  ratings: number;
  ratedAnswers: number;
  rows: number;
  flagged: number;
  trainSeconds: number;
  quality?: number;
  goodShare?: number;
  note?: string;
  modelName?: string;
  adapterPath?: string;
  /** Rate arms: the share of the pool people rated, the seed, and (sft-ai) what the reward model labelled. */
  rate?: number;
  seed?: number;
  ai?: AiLabelStats;
  /** Trained on exactly another arm's data (sft-ai when nothing was labelled): its model's quality. */
  sameModelAs?: string;
  /** sft-ai on a seed outside `gainSeeds`: labelled, not trained nor measured. */
  labelsOnly?: boolean;
}

/** What the reward model's labels were worth in a sft-ai arm. */
export interface AiLabelStats {
  /** Who labelled: people's ratings (a word model, or similar answers) or the round's reward model. */
  labeller: Settings['labeller'];
  /** Cross-fitting folds of the held-out answers (1: one split). */
  folds: number;
  /** Held-out human-rated answers: all, those that chose the thresholds, those that checked them. */
  heldOut: number;
  fit: number;
  check: number;
  /** Check answers a side must label to certify the target even if all are right. */
  minCheck: number;
  /** Precision on the check answers at the certified thresholds (and how many); null: it labelled none. */
  precision: number | null;
  lower: number | null;
  checkLabeled: number;
  /** Reward-model preference pairs it trained on (0: a labeller from people's ratings trains none). */
  pairs: number;
  /** The reward model: how well its scores order people's held-out ratings, and the oracle on the unrated answers (AUC). */
  heldOutAuc: number | null;
  oracleAuc: number | null;
  /** Share of the unrated answers labelled, and how many (of them up: the only ones sft's data gains). */
  share: number;
  labeled: number;
  up?: number;
  /** Share of its labels that the oracle agrees with (answer good on all four axes = up). */
  oracleAgreement: number | null;
  reasons: string[];
}

export function shuffle<T>(xs: T[], rng: SeededRandom): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A panel of raters who always rate with thumbs; the first seed with exactly the asked share of adversaries. */
export function ratingPanel(s: Settings): Persona[] {
  const want = Math.round(s.panelSize * s.adversarialShare);
  for (let seed = s.seed; ; seed++) {
    const panel = createPopulation({
      size: s.panelSize,
      seed,
      raterShare: 1,
      rateProbability: 1,
      adversarialShare: s.adversarialShare,
      habitShares: { thumbs: 1 },
    });
    if (panel.filter((p) => p.adversarial).length === want) return panel;
  }
}

/** Builds (or reuses) the tiny policy; returns its folder. */
export async function tinyModel(preset: Settings['preset'], log: (m: string) => void): Promise<string> {
  const out = join(workDir, 'models', preset === 'test' ? 'tiny-test' : 'tiny-support');
  log(`feedback-efficiency: tiny policy (${preset} preset) in ${out}`);
  await run(join(repoDir, '.venv', 'bin', 'ratchet-worker'), ['tiny', '--out', out, '--preset', preset], {
    env: { ...process.env, OMP_NUM_THREADS: '1' },
    maxBuffer: 64 * 1024 * 1024,
  });
  return out;
}

async function chat(
  baseUrl: string,
  model: string,
  prompt: string,
  s: Settings,
  n: number,
  seed: number,
): Promise<string[]> {
  const res = await fetch(`${baseUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      messages: [{ role: 'user', content: prompt }],
      temperature: s.temperature,
      max_tokens: s.maxTokens,
      n,
      seed,
    }),
  });
  if (!res.ok) throw new Error(`sampling the pool: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { choices: { message: { content: string } }[] };
  return body.choices.map((c) => c.message.content ?? '');
}

/** The answers to rate: the base policy's answers to random prompts, as production traffic would give. */
export async function samplePool(
  server: LocalModelServer,
  domain: SupportDomain,
  s: Settings,
  modelDir: string,
  log: (m: string) => void,
  concurrency = 1,
): Promise<PoolAnswer[]> {
  // Sampled concurrently, the server batches the prompts (far faster on a loaded machine), and a
  // batch's padding can change a sample: such a pool has its own cache key.
  const key = `pool-${s.preset}-${s.poolPrompts}x${s.answersPerPrompt}-t${s.temperature}-m${s.maxTokens}-s${s.seed}${concurrency > 1 ? '-batched' : ''}.json`;
  const cache = join(workDir, 'feedback-efficiency', key);
  const stamp = readFileSync(join(modelDir, 'config.json'), 'utf8').length;
  if (existsSync(cache)) {
    const cached = JSON.parse(readFileSync(cache, 'utf8')) as { stamp: number; pool: PoolAnswer[] };
    if (cached.stamp === stamp) return cached.pool;
  }
  const rng = new SeededRandom(s.seed + 101);
  const prompts = Array.from({ length: s.poolPrompts }, () => samplePrompt(domain, rng));
  const answered: PoolAnswer[][] = [];
  const started = Date.now();
  let next = 0;
  let done = 0;
  const work = async () => {
    for (let p = next++; p < prompts.length; p = next++) {
      const prompt = prompts[p]!;
      const answers = await chat(
        server.baseUrl,
        'base',
        prompt.text,
        s,
        s.answersPerPrompt,
        s.seed * 100_000 + p,
      );
      answered[p] = answers.map((answer, k) => ({
        id: `a${String(p).padStart(4, '0')}-${k}`,
        prompt: prompt.text,
        slots: prompt.slots,
        answer,
      }));
      if (++done % 50 === 0)
        log(`  pool: ${done}/${s.poolPrompts} prompts (${Math.round((Date.now() - started) / 1000)} s)`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, work));
  const pool = answered.flat();
  mkdirSync(join(workDir, 'feedback-efficiency'), { recursive: true });
  writeFileSync(cache, JSON.stringify({ stamp, pool }));
  return pool;
}

/**
 * Who rates what, fixed for the run so that every arm that rates an answer sees the same thumbs:
 * answer i's k-th rating comes from the k-th rater of its own seeded permutation of the panel,
 * with its own seeded noise.
 */
export class Ratings {
  private readonly order = new Map<string, number[]>();
  constructor(
    private readonly panel: Persona[],
    private readonly domain: SupportDomain,
    private readonly seed: number,
  ) {}

  /** Who gives answer `a`'s k-th rating. */
  raterOf(a: PoolAnswer, index: number, k: number): string {
    return this.panel[this.raters(a, index)[k % this.panel.length]!]!.id;
  }

  private raters(a: PoolAnswer, index: number): number[] {
    let o = this.order.get(a.id);
    if (!o) {
      o = shuffle(
        this.panel.map((_, i) => i),
        new SeededRandom(this.seed * 7919 + index),
      );
      this.order.set(a.id, o);
    }
    return o;
  }

  /** The k-th rating of answer `a` (index = its place in the pool), as a feedback input. */
  event(a: PoolAnswer, index: number, k: number) {
    const persona = this.panel[this.raters(a, index)[k % this.panel.length]!]!;
    const judged = judgeAnswer(this.domain, a.prompt, a.answer);
    const [thumbs] = simulateFeedback(
      persona,
      { domain: this.domain, judged, slots: a.slots },
      new SeededRandom(this.seed * 1_000_003 + index * 31 + k),
    );
    if (thumbs?.kind !== 'thumbs') throw new Error(`panel rater ${persona.id} did not give a thumb`);
    return parseInput(FeedbackInput, { ...thumbs, interactionId: a.id, raterId: persona.id });
  }
}

/** One project per arm and budget, holding the whole pool as its traffic (unrated until rated). */
export async function freshProject(store: Store, name: string, pool: PoolAnswer[]): Promise<string> {
  const projectId = (await store.projects.create(name)).id;
  const t0 = Date.now() - pool.length * 1000;
  await store.interactions.insert(
    projectId,
    pool.map((a, i) =>
      parseInput(InteractionInput, {
        id: a.id,
        model: 'base',
        route: 'support-bot',
        messages: [{ role: 'user', content: a.prompt }],
        output: a.answer,
        createdAt: t0 + i * 1000,
      }),
    ),
  );
  return projectId;
}

export interface RunCtx {
  s: Settings;
  store: Store;
  server: LocalModelServer;
  modelDir: string;
  pool: PoolAnswer[];
  domain: SupportDomain;
  poolIndex: Map<string, number>;
  ratings: Ratings;
  dataDir: string;
  /** The random order in which answers are rated: prompts shuffled, each prompt's answers together. */
  randomOrder: PoolAnswer[];
  log: (m: string) => void;
  notes: string[];
}

/** Rates answers in the random order, `ratersPerAnswer` each, until `budget` ratings are spent. */
export async function rateRandom(c: RunCtx, projectId: string, budget: number, counts: Map<string, number>) {
  const events = [];
  let spent = 0;
  for (const a of c.randomOrder) {
    for (let k = 0; k < c.s.ratersPerAnswer && spent < budget; k++, spent++)
      events.push(c.ratings.event(a, c.poolIndex.get(a.id)!, k));
    counts.set(a.id, Math.min(c.s.ratersPerAnswer, (counts.get(a.id) ?? 0) + c.s.ratersPerAnswer));
    if (spent >= budget) break;
  }
  await c.store.feedback.insert(projectId, events);
  return spent;
}

export const trainEnv = { OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1', TOKENIZERS_PARALLELISM: 'false' };

/** Builds the arm's dataset from the latest calibration and trains one round on it. */
export async function buildAndTrain(
  c: RunCtx,
  projectId: string,
  name: string,
  method: DatasetMethod,
  datasetOptions: Record<string, unknown>,
  training: {
    learningRate: number;
    methodConfig?: Record<string, unknown>;
    /** Another trainer than the dataset's method (rl, reward), with its settings. */
    trainMethod?: 'rl' | 'reward';
    rewardModel?: string;
    hyperparameters?: Record<string, unknown>;
    testFraction?: number;
  },
): Promise<{
  rows: number;
  modelName?: string;
  adapterPath?: string;
  seconds: number;
  note?: string;
  datasetId?: string;
}> {
  let version: Awaited<ReturnType<typeof buildDatasetVersion>>;
  try {
    version = await buildDatasetVersion(
      c.store,
      projectId,
      {
        name,
        method,
        options: { ...datasetOptions, split: { by: 'prompt', testFraction: training.testFraction ?? 0 } },
        // Templated answers look alike; curation's near-duplicate filter is not what is measured.
        curation: false,
        groupSimilarPrompts: 0.6,
      },
      { dataDir: c.dataDir },
    );
  } catch (err) {
    return { rows: 0, seconds: 0, note: err instanceof Error ? err.message : String(err) };
  }
  const t0 = Date.now();
  const queued = await startTrainingRun(
    c.store,
    projectId,
    {
      dataset: `${version.name}@${version.version}`,
      method: training.trainMethod ?? method,
      ...(training.rewardModel ? { rewardModel: training.rewardModel } : {}),
      baseModel: c.modelDir,
      modelName: name,
      seed: c.s.seed,
      evaluate: false,
      hyperparameters: {
        learningRate: training.learningRate,
        epochs: 2,
        batchSize: 8,
        maxLength: 256,
        ...training.hyperparameters,
      },
      lora: { enabled: true, r: 16, alpha: 32 },
      methodConfig: training.methodConfig ?? {},
    },
    { dataDir: c.dataDir },
  );
  const outcome = await runTraining(c.store, queued.id, {
    dataDir: c.dataDir,
    env: { ...process.env, ...trainEnv },
  });
  const seconds = (Date.now() - t0) / 1000;
  if (!outcome?.model?.adapterPath)
    return { rows: version.rowCount, seconds, note: `training failed: ${outcome?.run.error ?? 'no run'}` };
  return {
    rows: version.rowCount,
    seconds,
    modelName: name,
    adapterPath: outcome.model.adapterPath,
    datasetId: version.id,
  };
}

/**
 * Raters whose single rating should not stand alone: those calibration flagged, and those whose
 * ratings so far run against the consensus of the others (negative correlation), which is where
 * an adversary shows before there is enough overlap to flag them.
 */
async function distrusted(store: Store, projectId: string): Promise<Set<string>> {
  const raters = await store.raters.list(projectId, { limit: 1000 });
  return new Set(
    raters
      .filter((r) => r.flagged || (r.consensusCorrelation !== null && r.consensusCorrelation < 0))
      .map((r) => r.id),
  );
}

/**
 * Active learning as the loop would do it. A random warm-up (`alWarmupShare` of the budget, 2
 * raters per answer) gives calibration the overlap to estimate rater bias and flag adversaries
 * and the queue its first liked answers. Then, batch by batch (`alBatchShare` of the budget), the
 * active-learning queue (`selectForAnnotation(..., 'active-learning')` with the objective for the
 * arm's method: `positives` for sft) picks what people rate next, scored by what people said
 * about similar rated answers, recalibrated after every batch. A picked answer gets one rating,
 * from the first rater of its own order whom calibration trusts (see `distrusted`; the same
 * thumbs any arm would see from that rater): a second opinion on an answer is what calibration
 * needed in the warm-up, not what a positive-only dataset needs afterwards. `single` replaces the
 * queue's picks by the random order (the sft-single ablation: what one rating per answer alone buys).
 */
export async function rateActive(
  c: RunCtx,
  projectId: string,
  method: DatasetMethod,
  budget: number,
  counts: Map<string, number>,
  choice: 'queue' | 'single' = 'queue',
): Promise<{ spent: number; note: string }> {
  let spent = await rateRandom(c, projectId, Math.round(budget * c.s.alWarmupShare), counts);
  const warmup = { ratings: spent, answers: counts.size };
  const used = new Map([...counts].map(([id, n]) => [id, new Set(Array.from({ length: n }, (_, k) => k))]));
  await calibrateProject(c.store, projectId);
  const byId = new Map(c.pool.map((a) => [a.id, a]));
  const batch = Math.max(4, Math.round(budget * c.s.alBatchShare));
  const tally = { passes: 0, fresh: 0, again: 0, distrustSkips: 0 };
  while (spent < budget) {
    const flagged = await distrusted(c.store, projectId);
    const limit = Math.min(batch, budget - spent);
    const { items } =
      choice === 'queue'
        ? await selectForAnnotation(
            c.store,
            { projectId, limit, objective: activeLearningObjectiveFor(method) },
            'active-learning',
          )
        : {
            items: c.randomOrder
              .filter((a) => !used.has(a.id))
              .slice(0, limit)
              .map((a) => ({ interactionId: a.id })),
          };
    const events = [];
    for (const item of items) {
      if (spent >= budget) break;
      const a = byId.get(item.interactionId)!;
      const index = c.poolIndex.get(a.id)!;
      const seen = used.get(a.id) ?? new Set<number>();
      const ks = Array.from({ length: c.s.panelSize }, (_, k) => k).filter((k) => !seen.has(k));
      const k = ks.find((k) => !flagged.has(c.ratings.raterOf(a, index, k)));
      if (k === undefined) continue;
      tally.distrustSkips += ks.indexOf(k);
      events.push(c.ratings.event(a, index, k));
      spent++;
      if (seen.size === 0) tally.fresh++;
      else tally.again++;
      used.set(a.id, seen.add(k));
      counts.set(a.id, seen.size);
    }
    if (events.length === 0) break;
    await c.store.feedback.insert(projectId, events);
    await calibrateProject(c.store, projectId);
    tally.passes++;
  }
  return {
    spent,
    note: `warm-up ${warmup.ratings} ratings on ${warmup.answers} answers; ${tally.passes} batches: ${tally.fresh} new answers rated once, ${tally.again} re-rated; distrusted raters passed over ${tally.distrustSkips} times`,
  };
}

async function runArm(c: RunCtx, armName: string, budget: number): Promise<ArmResult> {
  const arm = arms[armName]!;
  const name = `${armName}-${budget}`;
  const projectId = await freshProject(c.store, name, c.pool);
  const counts = new Map<string, number>();
  let note: string | undefined;
  let spent: number;
  if (arm.choice !== 'random')
    ({ spent, note } = await rateActive(c, projectId, arm.method, budget, counts, arm.choice));
  else spent = await rateRandom(c, projectId, budget, counts);
  const calibration = await calibrateProject(
    c.store,
    projectId,
    arm.calibrated ? { mapping: humanOnly } : { mapping: humanOnly, calibration: rawCalibration },
  );
  const trained = await buildAndTrain(c, projectId, name, arm.method, arm.dataset, arm);
  const result: ArmResult = {
    arm: armName,
    budget,
    ratings: spent,
    ratedAnswers: [...counts.values()].filter((n) => n > 0).length,
    rows: trained.rows,
    flagged: calibration.flagged,
    trainSeconds: round(trained.seconds, 1),
    ...(trained.modelName ? { modelName: trained.modelName, adapterPath: trained.adapterPath } : {}),
  };
  const notes = [note, trained.note].filter(Boolean).join('; ');
  if (notes) result.note = notes;
  c.log(
    `  ${name}: ${spent} ratings on ${result.ratedAnswers} answers, ${calibration.flagged} raters flagged, ${trained.rows} rows, train ${result.trainSeconds} s${notes ? ` (${notes})` : ''}`,
  );
  return result;
}

/** The reward model's and rl's settings on this model (the demo's reward model; the worker's rl test). */
export const rewardModelTraining = { learningRate: 3e-3, trainMethod: 'reward' as const, testFraction: 0.3 };
const rlTraining = {
  learningRate: 2e-3,
  trainMethod: 'rl' as const,
  hyperparameters: { maxSteps: 30, batchSize: 16 },
  methodConfig: { num_generations: 8, max_completion_length: 64, temperature: 0.7, beta: 0.1 },
};

/** Area under the ROC curve: the chance a positive scores above a negative (ties count half). */
export function auc(points: readonly { score: number; positive: boolean }[]): number | null {
  const pos = points.filter((p) => p.positive).map((p) => p.score);
  const neg = points.filter((p) => !p.positive).map((p) => p.score);
  if (!pos.length || !neg.length) return null;
  let wins = 0;
  for (const a of pos) for (const b of neg) wins += a > b ? 1 : a === b ? 0.5 : 0;
  return wins / (pos.length * neg.length);
}

/**
 * The run's context for one rate seed: the rate pool, that seed's panel, rating order and training seed
 * (`seed` itself is the run's own context). Measuring stays with the run's context (`measure`).
 */
/** Requests in flight while sampling a rate pool (the server batches up to 16). */
export const ratePoolConcurrency = 8;

export async function seedCtx(c: RunCtx, seed: number): Promise<RunCtx> {
  const s = { ...c.s, seed, poolPrompts: c.s.ratePoolPrompts, answersPerPrompt: 1 };
  // One rate pool for every seed (the run's seed's): sampling 2,000 answers a seed took a quarter
  // of an hour on the shared machine. The seeds differ in panel, rated answers, noise and training.
  const pool = await samplePool(
    c.server,
    c.domain,
    { ...s, seed: c.s.seed },
    c.modelDir,
    c.log,
    ratePoolConcurrency,
  );
  return {
    ...c,
    s,
    pool,
    poolIndex: new Map(pool.map((a, i) => [a.id, i])),
    ratings: new Ratings(ratingPanel(s), c.domain, seed),
    randomOrder: shuffle(pool, new SeededRandom(seed + 13)),
  };
}

/**
 * One rating rate on one seed: people rate `rate` of the seed's rate pool (a random order of
 * answers, `ratersPerAnswer` each), as the loop would see at that rate; on those same ratings,
 * one project runs the rate arms in order. `sft`: sft on people's positives. `sft-ai`: the
 * labeller (`labeller`: `labelFromRatings` with a word model or similar answers, or the round's reward model, trained
 * `rewardSteps` steps on the reward dataset's train split, through `labelWithRewardModel`)
 * labels the unrated answers where held-out human ratings certify it (cross-fitted thresholds,
 * exact lower bound: see reliability.ts), the labels join calibration at `sourceWeight.judge`,
 * and sft trains on every positive. `rl`: GRPO from the base on the rated prompts with the
 * round's reward model as the reward.
 */
async function runRate(c: RunCtx, rate: number): Promise<ArmResult[]> {
  const pct = Math.round(rate * 100);
  const seed = c.s.seed;
  const tag = `${pct}-s${seed}`;
  const budget = Math.round(rate * c.pool.length) * c.s.ratersPerAnswer;
  const projectId = await freshProject(c.store, `rated-${tag}`, c.pool);
  const counts = new Map<string, number>();
  const spent = await rateRandom(c, projectId, budget, counts);
  const base = { rate, seed, budget, ratings: spent, ratedAnswers: counts.size };
  let calibration = await calibrateProject(c.store, projectId, { mapping: humanOnly });
  const out: ArmResult[] = [];
  const result = (
    arm: string,
    t: Awaited<ReturnType<typeof buildAndTrain>>,
    extra: Partial<ArmResult> = {},
  ) => {
    const r: ArmResult = {
      arm,
      ...base,
      rows: t.rows,
      flagged: calibration.flagged,
      trainSeconds: round(t.seconds, 1),
      ...(t.modelName ? { modelName: t.modelName, adapterPath: t.adapterPath } : {}),
      ...(t.note ? { note: t.note } : {}),
      ...extra,
    };
    c.log(
      `  ${arm} @ ${pct}% seed ${seed}: ${spent} ratings on ${counts.size} answers, ${t.rows} rows, train ${r.trainSeconds} s${t.note ? ` (${t.note})` : ''}`,
    );
    out.push(r);
  };
  const trainSft = async () =>
    result('sft', await buildAndTrain(c, projectId, `sft-rated${tag}`, 'sft', arms.sft!.dataset, arms.sft!));
  if (c.s.rateArms.includes('sft')) await trainSft();
  if (!c.s.rateArms.includes('sft-ai') && !c.s.rateArms.includes('rl')) return out;
  const rmName = `reward-rated${tag}`;
  // A labeller from people's ratings needs no reward model: only rl (or the reward-model labeller) trains one.
  const needsRm = c.s.rateArms.includes('rl') || c.s.labeller === 'reward-model';
  const rm = !needsRm
    ? { rows: 0, seconds: 0, adapterPath: undefined, datasetId: undefined, note: undefined }
    : await buildAndTrain(
        c,
        projectId,
        rmName,
        'reward',
        { minMargin: 0.05 },
        {
          ...rewardModelTraining,
          ...(c.s.rewardSteps > 0 ? { hyperparameters: { maxSteps: c.s.rewardSteps } } : {}),
        },
      );
  if (needsRm)
    c.log(
      `  reward model @ ${pct}% seed ${seed}: ${rm.rows} pairs, train ${round(rm.seconds, 1)} s${rm.note ? ` (${rm.note})` : ''}`,
    );
  if (needsRm && !rm.adapterPath) {
    for (const arm of c.s.rateArms.filter((a) => a !== 'sft'))
      out.push({
        arm,
        ...base,
        rows: 0,
        flagged: calibration.flagged,
        trainSeconds: 0,
        note: `no reward model: ${rm.note}`,
      });
    return out;
  }
  // Before the AI labels: rl's prompts are the rated ones, as sft's.
  if (c.s.rateArms.includes('rl'))
    result(
      'rl',
      await buildAndTrain(
        c,
        projectId,
        `rl-rated${tag}`,
        'rwsft',
        { minAbsReward: 0 },
        { ...rlTraining, rewardModel: rmName },
      ),
    );
  if (c.s.rateArms.includes('sft-ai')) {
    let quality: { heldOutAuc: number | null; oracleAuc: number | null } = {
      heldOutAuc: null,
      oracleAuc: null,
    };
    let report: AiLabelReport;
    if (c.s.labeller === 'reward-model') {
      await c.server.ensure([{ name: rmName, adapterPath: rm.adapterPath! }]);
      const trainedOn = await c.store.datasets.members(projectId, rm.datasetId!, 'train');
      quality = await rewardModelQuality(c, projectId, rmName, trainedOn);
      report = await labelWithRewardModel(c.store, projectId, {
        rewardModel: { baseURL: c.server.baseUrl, model: rmName },
        limit: c.pool.length,
        trainedOn,
      });
    } else
      report = await labelFromRatings(c.store, projectId, { scorer: c.s.labeller, limit: c.pool.length });
    const labels = (await c.store.feedback.currentOfKinds(projectId, ['thumbs'])).filter(
      (f) => f.source === 'judge',
    );
    const byId = new Map(c.pool.map((a) => [a.id, a]));
    const agree = labels.filter((f) => {
      const a = byId.get(f.interactionId)!;
      return judgeAnswer(c.domain, a.prompt, a.answer).good === (f.value === 1);
    }).length;
    const h = report.reliability;
    const ai: AiLabelStats = {
      labeller: c.s.labeller,
      folds: h.folds,
      heldOut: h.heldOut,
      fit: h.fit,
      check: h.check,
      minCheck: h.minCheck,
      precision: h.precision,
      lower: h.lower,
      checkLabeled: h.checkLabeled,
      pairs: rm.rows,
      ...quality,
      share: report.share,
      labeled: report.labeled,
      up: report.up,
      oracleAgreement: labels.length ? agree / labels.length : null,
      reasons: h.reasons,
    };
    c.log(
      `  ${c.s.labeller} labels @ ${pct}% seed ${seed}: ${report.labeled} of ${report.looked} unrated (${report.up} up, ${report.down} down), check precision ${ai.precision === null ? 'none' : round(ai.precision)} on ${ai.checkLabeled} of ${ai.check} check answers (${ai.fit} chose the thresholds); AUC held-out ${ai.heldOutAuc === null ? '-' : round(ai.heldOutAuc)}, oracle ${ai.oracleAuc === null ? '-' : round(ai.oracleAuc)}${ai.reasons.length ? ` (${ai.reasons.join('; ')})` : ''}`,
    );
    const sft = out.find((r) => r.arm === 'sft');
    if (report.up > 0 && c.s.gainSeeds.length && !c.s.gainSeeds.includes(seed)) {
      out.push({
        arm: 'sft-ai',
        ...base,
        rows: 0,
        flagged: calibration.flagged,
        trainSeconds: 0,
        ai,
        labelsOnly: true,
        note: 'labels only: not trained (BENCH_FE_GAIN_SEEDS)',
      });
      return out;
    }
    if (report.up === 0) {
      // No label, or down labels only: sft keeps the liked answers, and a down label only goes
      // to an answer nobody rated, which sft's data leaves out anyway; the dataset is sft's, and
      // training it again would only spend the machine on the same model (and without the sft
      // arm, neither is trained).
      out.push({
        ...(sft ?? { ...base, rows: 0, flagged: calibration.flagged, trainSeconds: 0 }),
        arm: 'sft-ai',
        ai,
        sameModelAs: 'sft',
        note:
          report.labeled === 0
            ? 'no AI label: the sft model'
            : `${report.down} down labels, no up label: sft's data, the sft model`,
      });
      delete out.at(-1)!.modelName;
      delete out.at(-1)!.adapterPath;
      return out;
    }
    // Labels to compare: sft on people's ratings alone too (the labels weigh 0 in its calibration).
    if (!sft) {
      calibration = await calibrateProject(c.store, projectId, { mapping: humanOnly });
      await trainSft();
    }
    // The labels count at sourceWeight.judge of a person's, as in the loop.
    calibration = await calibrateProject(c.store, projectId);
    result(
      'sft-ai',
      await buildAndTrain(c, projectId, `sft-ai-rated${tag}`, 'sft', arms.sft!.dataset, arms.sft!),
      { ai },
    );
  }
  return out;
}

/**
 * Why the reward model can or cannot label: how well its scores order people's ratings on the
 * held-out answers (calibrated reward > 0 = liked), and the oracle (good on all four axes) on the
 * answers nobody rated. 0.5 is a coin; the labelling rule needs far better at its top and bottom.
 */
async function rewardModelQuality(c: RunCtx, projectId: string, rmName: string, trainedOn: string[]) {
  const rated = new Map<string, number>();
  for await (const page of c.store.datasets.ratedInteractions(projectId))
    for (const r of page) rated.set(r.interactionId, r.reward);
  const scores = await rewardScores(
    EndpointSpec.parse({ baseURL: c.server.baseUrl, model: rmName }),
    c.pool.map((a) => [
      { role: 'user' as const, content: a.prompt },
      { role: 'assistant' as const, content: a.answer },
    ]),
  );
  const trained = new Set(trainedOn);
  const heldOut = c.pool
    .map((a, k) => ({ id: a.id, score: scores[k]!, reward: rated.get(a.id) }))
    .filter((x) => x.reward !== undefined && x.reward !== 0 && !trained.has(x.id));
  const unrated = c.pool
    .map((a, k) => ({ a, score: scores[k]! }))
    .filter((x) => !rated.has(x.a.id))
    .map((x) => ({ score: x.score, positive: judgeAnswer(c.domain, x.a.prompt, x.a.answer).good }));
  return {
    heldOutAuc: auc(heldOut.map((x) => ({ score: x.score, positive: x.reward! > 0 }))),
    oracleAuc: auc(unrated),
  };
}

/** Serves a batch's trained models and measures each (an arm without a model has no point). */
async function measureBatch(
  c: RunCtx,
  batch: ArmResult[],
  population: Persona[],
  domain: SupportDomain,
  base: number,
  log: (m: string) => void,
) {
  const trained = batch.filter((r) => r.adapterPath);
  await c.server.ensure(trained.map((r) => ({ name: r.modelName!, adapterPath: r.adapterPath! })));
  for (const r of trained) {
    const q = await measure(c, r.modelName!, population, domain);
    r.quality = q.trueQuality;
    r.goodShare = q.goodShare;
    log(`  ${r.modelName}: true quality ${round(q.trueQuality)} (gain ${round(q.trueQuality - base)})`);
  }
  for (const r of batch.filter((r) => r.sameModelAs)) {
    const same = batch.find((x) => x.arm === r.sameModelAs);
    if (same?.quality !== undefined) {
      r.quality = same.quality;
      r.goodShare = same.goodShare;
    }
  }
}

/**
 * The base model's true quality, cached beside the pool: the same model on the same eval (prompts,
 * people, sampling seeds) gives the same number, and on a loaded machine it costs minutes.
 */
async function baseQuality(c: RunCtx, population: Persona[], domain: SupportDomain) {
  const s = c.s;
  const key = `base-${s.preset}-e${s.evalPrompts}-t${s.temperature}-m${s.maxTokens}-s${s.seed}.json`;
  const cache = join(workDir, 'feedback-efficiency', key);
  const stamp = readFileSync(join(c.modelDir, 'config.json'), 'utf8').length;
  if (existsSync(cache)) {
    const cached = JSON.parse(readFileSync(cache, 'utf8')) as {
      stamp: number;
      base: Awaited<ReturnType<typeof measure>>;
    };
    if (cached.stamp === stamp) return cached.base;
  }
  const base = await measure(c, 'base', population, domain);
  mkdirSync(join(workDir, 'feedback-efficiency'), { recursive: true });
  writeFileSync(cache, JSON.stringify({ stamp, base }));
  return base;
}

async function measure(c: RunCtx, model: string, population: Persona[], domain: SupportDomain) {
  // The same prompts, people and sampling seeds for every model: differences are the models'.
  return measureTrueQuality({
    baseUrl: c.server.baseUrl.replace(/\/v1$/, ''),
    model,
    domain,
    population,
    prompts: c.s.evalPrompts,
    seed: c.s.seed + 4242,
    temperature: c.s.temperature,
    maxTokens: c.s.maxTokens,
    concurrency: 1,
  });
}

/** Ratings the random arm needs for `gain`, by linear interpolation of its curve from (0, 0); null if it never gets there. */
export function ratingsForGain(curve: { ratings: number; gain: number }[], gain: number): number | null {
  const points = [{ ratings: 0, gain: 0 }, ...[...curve].sort((a, b) => a.ratings - b.ratings)];
  for (let i = 1; i < points.length; i++) {
    const lo = points[i - 1]!;
    const hi = points[i]!;
    if (hi.gain >= gain && hi.gain > lo.gain)
      return (
        lo.ratings + ((Math.max(gain, lo.gain) - lo.gain) / (hi.gain - lo.gain)) * (hi.ratings - lo.ratings)
      );
    if (hi.gain >= gain) return hi.ratings;
  }
  return null;
}

const colors = ['#264653', '#e76f51', '#2a9d8f', '#e9c46a', '#8d5fd3', '#f4a261'];

/** A line chart of true quality against ratings, one line per arm, the base as a dashed line. */
export function qualityChartSvg(
  title: string,
  lines: { label: string; points: { x: number; y: number }[] }[],
  base: number,
): string {
  const W = 720;
  const H = 380;
  const pad = { left: 56, right: 20, top: 36, bottom: 48 };
  const xs = lines.flatMap((l) => l.points.map((p) => p.x));
  const xMax = Math.max(1, ...xs);
  const x = (v: number) => pad.left + (v / xMax) * (W - pad.left - pad.right);
  const y = (v: number) => pad.top + (1 - v) * (H - pad.top - pad.bottom);
  const grid = [0, 0.25, 0.5, 0.75, 1]
    .map(
      (v) =>
        `<line x1="${pad.left}" x2="${W - pad.right}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="${pad.left - 8}" y="${y(v) + 4}" text-anchor="end" font-size="11">${v * 100}%</text>`,
    )
    .join('');
  const ticks = [0, ...new Set(xs)]
    .sort((a, b) => a - b)
    .map(
      (v) => `<text x="${x(v)}" y="${H - pad.bottom + 16}" text-anchor="middle" font-size="11">${v}</text>`,
    )
    .join('');
  const paths = lines
    .map((l, i) => {
      const pts = [{ x: 0, y: base }, ...l.points];
      const d = pts.map((p, k) => `${k ? 'L' : 'M'}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ');
      const dots = l.points
        .map(
          (p) =>
            `<circle cx="${x(p.x).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="3" fill="${colors[i % colors.length]}"/>`,
        )
        .join('');
      const legend = `<text x="${pad.left + 10}" y="${pad.top + 14 + 16 * i}" font-size="12" fill="${colors[i % colors.length]}">${l.label}</text>`;
      return `<path d="${d}" fill="none" stroke="${colors[i % colors.length]}" stroke-width="2.5"/>${dots}${legend}`;
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" role="img" aria-label="${title}">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>${grid}${ticks}
<text x="${(W + pad.left) / 2}" y="${H - 10}" text-anchor="middle" font-size="12">ratings (thumbs)</text>
<line x1="${pad.left}" x2="${W - pad.right}" y1="${y(base)}" y2="${y(base)}" stroke="#999" stroke-dasharray="5 4"/>
<text x="${W - pad.right - 4}" y="${y(base) - 5}" text-anchor="end" font-size="11" fill="#666">base ${(100 * base).toFixed(1)}%</text>
${paths}
</svg>
`;
}

function markdownReport(results: ArmResult[], base: number, s: Settings, extra: string[]): string {
  const pct = (v: number | undefined) => (v === undefined ? 'not trained' : `${(100 * v).toFixed(1)}%`);
  const gain = (v: number | undefined) =>
    v === undefined ? '' : `${v >= base ? '+' : ''}${(100 * (v - base)).toFixed(1)}`;
  const rows = results.map(
    (r) =>
      `| ${r.rate !== undefined ? `${r.arm} @ ${Math.round(100 * r.rate)}% rated, seed ${r.seed ?? 0}` : r.arm} | ${r.budget} | ${r.ratings} | ${r.ratedAnswers} | ${r.flagged} | ${r.rows} | ${pct(r.quality)} | ${gain(r.quality)} | ${pct(r.goodShare)} | ${r.trainSeconds} | ${r.note ?? ''} |`,
  );
  return [
    '# feedback-efficiency: true quality against ratings',
    '',
    `Written by \`bench/run.ts feedback-efficiency\` (${new Date().toISOString()}); the method is in bench/README.md.`,
    '',
    '![methods](feedback-efficiency-methods.svg)',
    '',
    '![calibration and active learning](feedback-efficiency-sft.svg)',
    '',
    `Base policy (tiny \`${s.preset}\` preset): true quality ${pct(base)} on ${s.evalPrompts} eval prompts. Gain in percentage points.`,
    '',
    '| arm | budget | ratings | answers rated | raters flagged | rows | true quality | gain | good on 4 | train s | notes |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    ...extra,
    '',
  ].join('\n');
}

export const feedbackEfficiency: Bench = {
  name: 'feedback-efficiency',
  summary: 'true quality gained per rating: sft/rwsft/kto/dpo, calibration vs raw, active learning vs random',
  keyMetrics: [
    'al_ratings_ratio',
    'quality_base_rate',
    'quality_gain_sft',
    'quality_gain_sft_raw',
    'quality_gain_sft_al',
    'single_ratings_ratio',
    'quality_gain_rwsft',
    'quality_gain_kto',
    'quality_gain_dpo',
    'ai_label_precision',
    'ai_label_share',
    'ai_label_quality_gain_15pct_rate',
    'rl_minus_sft_quality_15pct_rate',
  ],
  async run(ctx) {
    const s = settingsFor(ctx);
    for (const a of s.arms)
      if (!arms[a])
        throw new Error(`BENCH_FE_ARMS: unknown arm "${a}" (known: ${Object.keys(arms).join(', ')})`);
    const loadBefore = loadNote();
    const dir = join(workDir, 'feedback-efficiency');
    const runDir = join(dir, ctx.tiny ? 'tiny' : `run-seed${s.seed}`);
    rmSync(runDir, { recursive: true, force: true });
    mkdirSync(runDir, { recursive: true });
    const modelDir = await tinyModel(s.preset, ctx.log);
    const domain = loadDemoDomain();
    const panel = ratingPanel(s);
    // The people whose liking is true quality: the default population (its segment mix), not the panel.
    const population = createPopulation({ size: 500, seed: s.seed + 99 });
    const store = await Store.open(`sqlite:${join(runDir, 'ratchet.db')}`);
    const server = new LocalModelServer({
      baseModel: modelDir,
      baseName: 'base',
      port: await freePort(),
      env: trainEnv,
      onLog: () => {},
    });
    const started = Date.now();
    try {
      await server.ensure([]);
      const pool = await samplePool(server, domain, s, modelDir, ctx.log);
      const rng = new SeededRandom(s.seed + 7);
      const byPrompt = new Map<string, PoolAnswer[]>();
      for (const a of pool)
        byPrompt.set(a.id.split('-')[0]!, [...(byPrompt.get(a.id.split('-')[0]!) ?? []), a]);
      const c: RunCtx = {
        s,
        store,
        server,
        modelDir,
        pool,
        domain,
        poolIndex: new Map(pool.map((a, i) => [a.id, i])),
        ratings: new Ratings(panel, domain, s.seed),
        dataDir: join(runDir, 'data'),
        randomOrder: shuffle([...byPrompt.values()], rng).flat(),
        log: ctx.log,
        notes: [],
      };
      const poolLiked = pool.filter((a) => judgeAnswer(domain, a.prompt, a.answer).good).length / pool.length;
      const baseQ = await baseQuality(c, population, domain);
      ctx.log(
        `feedback-efficiency: pool ${pool.length} answers; base true quality ${round(baseQ.trueQuality)} (${Math.round((Date.now() - started) / 1000)} s)`,
      );
      const results: ArmResult[] = [];
      for (const budget of s.budgets) {
        const batch: ArmResult[] = [];
        for (const a of s.arms) batch.push(await runArm(c, a, budget));
        const trained = batch.filter((r) => r.adapterPath);
        await server.ensure(trained.map((r) => ({ name: r.modelName!, adapterPath: r.adapterPath! })));
        for (const r of batch) {
          // No model (no rows, or training failed): nothing to measure; the arm has no point here.
          if (!r.adapterPath) continue;
          const q = await measure(c, r.modelName!, population, domain);
          r.quality = q.trueQuality;
          r.goodShare = q.goodShare;
          ctx.log(
            `  ${r.arm} @ ${budget}: true quality ${round(q.trueQuality)} (gain ${round(q.trueQuality - baseQ.trueQuality)})`,
          );
        }
        results.push(...batch);
        writeFileSync(
          join(runDir, 'results.json'),
          JSON.stringify({ settings: s, base: baseQ, results }, null, 2),
        );
        ctx.log(
          `feedback-efficiency: budget ${budget} done (${Math.round((Date.now() - started) / 1000)} s, ${loadNote()})`,
        );
      }
      for (const seed of s.ratingRates.length ? s.rateSeeds : []) {
        const sc = await seedCtx(c, seed);
        for (const rate of s.ratingRates) {
          const batch = await runRate(sc, rate);
          // Every model on the run's own eval (c), whatever seed it was trained on.
          await measureBatch(c, batch, population, domain, baseQ.trueQuality, ctx.log);
          results.push(...batch);
          writeFileSync(
            join(runDir, 'results.json'),
            JSON.stringify({ settings: s, base: baseQ, results }, null, 2),
          );
          ctx.log(
            `feedback-efficiency: rate ${rate} seed ${seed} done (${Math.round((Date.now() - started) / 1000)} s, ${loadNote()})`,
          );
        }
      }
      return summarize(ctx, s, results, baseQ, {
        poolLiked,
        panel,
        loadBefore,
        seconds: (Date.now() - started) / 1000,
      });
    } finally {
      await server.stop();
      await store.close();
    }
  },
};

/**
 * The rate arms' metrics, over the rate seeds: `quality_<arm>_rated<pct>pct_rate` (mean),
 * `rows_...` (mean); for the reward model's labels `ai_label_precision_<pct>pct_ratio` (on the
 * held-out human ratings that checked its thresholds, pooled over the seeds; absent when it
 * labelled none), `ai_label_share_<pct>pct_ratio` (of the unrated answers, mean),
 * `ai_label_oracle_agreement_<pct>pct_ratio` (its labels the oracle agrees with, pooled),
 * `ai_label_certified_<pct>pct_count` (seeds where it labelled), the reward model's AUC on
 * held-out ratings and against the oracle (mean), `ai_label_quality_gain_<pct>pct_rate` (sft-ai
 * minus sft, mean of the seeds' differences) and `rl_minus_sft_quality_<pct>pct_rate`;
 * `ai_label_precision` and `ai_label_share` are those of the highest rate at which it labelled
 * (else the share of the highest rate, with the precision absent). Returns notes.
 */
export function rateMetrics(metrics: Record<string, number>, results: ArmResult[], base: number): string[] {
  const rated = results.filter((r) => r.rate !== undefined);
  if (!rated.length) return [];
  const pcts = [...new Set(rated.map((r) => Math.round(100 * r.rate!)))].sort((a, b) => a - b);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const notes: string[] = [];
  for (const pct of pcts) {
    const here = rated.filter((r) => Math.round(100 * r.rate!) === pct);
    const seeds = [...new Set(here.map((r) => r.seed ?? 0))].sort((a, b) => a - b);
    const at = (arm: string, seed: number) => here.find((r) => r.arm === arm && (r.seed ?? 0) === seed);
    for (const arm of [...new Set(here.map((r) => r.arm))]) {
      // sft-ai without labels and without the sft arm trained nothing: no model, not a failure.
      const runs = here.filter(
        (r) => r.arm === arm && !r.labelsOnly && !(r.sameModelAs && r.quality === undefined),
      );
      if (!runs.length) continue;
      const key = `${arm.replace(/-/g, '_')}_rated${pct}pct`;
      metrics[`rows_${key}_count`] = round(mean(runs.map((r) => r.rows)), 1);
      const measured = runs.filter((r) => r.quality !== undefined);
      if (measured.length) metrics[`quality_${key}_rate`] = round(mean(measured.map((r) => r.quality!)));
      if (measured.length < runs.length) metrics[`failed_${key}_count`] = runs.length - measured.length;
    }
    metrics[`ratings_rated${pct}pct_count`] = here[0]!.ratings;
    metrics[`rate_seeds_${pct}pct_count`] = seeds.length;
    const stats = seeds.flatMap((seed) => {
      const r = at('sft-ai', seed);
      return r?.ai ? [{ seed, r, ai: r.ai }] : [];
    });
    if (stats.length) {
      const certified = stats.filter((x) => x.ai.precision !== null);
      const checkLabeled = certified.reduce((n, x) => n + x.ai.checkLabeled, 0);
      const checkRight = certified.reduce((n, x) => n + Math.round(x.ai.precision! * x.ai.checkLabeled), 0);
      const labeled = stats.reduce((n, x) => n + x.ai.labeled, 0);
      const oracleRight = stats.reduce(
        (n, x) => n + Math.round((x.ai.oracleAgreement ?? 0) * x.ai.labeled),
        0,
      );
      metrics[`ai_label_share_${pct}pct_ratio`] = round(mean(stats.map((x) => x.ai.share)));
      metrics[`ai_labels_${pct}pct_count`] = labeled;
      metrics[`ai_labels_up_${pct}pct_count`] = stats.reduce((n, x) => n + (x.ai.up ?? 0), 0);
      metrics[`ai_label_heldout_${pct}pct_count`] = round(mean(stats.map((x) => x.ai.heldOut)), 1);
      metrics[`ai_label_check_${pct}pct_count`] = round(mean(stats.map((x) => x.ai.check)), 1);
      metrics[`ai_label_certified_${pct}pct_count`] = certified.length;
      if (checkLabeled) metrics[`ai_label_precision_${pct}pct_ratio`] = round(checkRight / checkLabeled);
      if (labeled) metrics[`ai_label_oracle_agreement_${pct}pct_ratio`] = round(oracleRight / labeled);
      const aucs = (k: 'heldOutAuc' | 'oracleAuc') =>
        stats.map((x) => x.ai[k]).filter((v): v is number => v !== null);
      if (aucs('heldOutAuc').length)
        metrics[`rm_heldout_auc_${pct}pct_ratio`] = round(mean(aucs('heldOutAuc')));
      if (aucs('oracleAuc').length) metrics[`rm_oracle_auc_${pct}pct_ratio`] = round(mean(aucs('oracleAuc')));
      const perSeed = stats.map(({ seed, r, ai }) => {
        const auc = `AUC ${ai.heldOutAuc === null ? '-' : round(ai.heldOutAuc)} on people's held-out ratings, ${ai.oracleAuc === null ? '-' : round(ai.oracleAuc)} against the oracle`;
        const how =
          ai.folds > 1
            ? `${ai.heldOut} held-out answers with a score, each checking thresholds the other ${ai.folds - 1} of ${ai.folds} folds chose`
            : `${ai.heldOut} held-out answers, ${ai.fit} choose and ${ai.check} check`;
        return `seed ${seed} (${r.ratings} thumbs on ${r.ratedAnswers} answers; ${ai.labeller === 'reward-model' ? `reward model on ${ai.pairs} pairs, ${auc}; ` : ''}${how}): ${
          ai.precision === null
            ? `labelled none (${ai.reasons.join('; ')})`
            : `labelled ${round(100 * ai.share, 1)}% of the unrated answers; people agreed with ${round(100 * ai.precision, 1)}% of its calls on ${ai.checkLabeled} check answers (exact lower bound ${round(100 * ai.lower!, 1)}%), the oracle with ${ai.oracleAgreement === null ? '-' : round(100 * ai.oracleAgreement, 1)}% of its ${ai.labeled} labels${ai.reasons.length ? ` (${ai.reasons.join('; ')})` : ''}`
        }`;
      });
      const who =
        stats[0]!.ai.labeller === 'reward-model'
          ? 'the reward model'
          : `people's ratings (${stats[0]!.ai.labeller === 'words' ? 'a word model' : 'similar answers'})`;
      notes.push(`At ${pct}% rated ${who}: ${perSeed.join('; ')}.`);
    }
    const diffs = (arm: string) =>
      seeds.flatMap((seed) => {
        const [a, b] = [at(arm, seed), at('sft', seed)];
        return a?.quality !== undefined && b?.quality !== undefined ? [a.quality - b.quality] : [];
      });
    // A seed without labels trains sft-ai on sft's data: it adds 0 by construction, measured or not.
    const aiGains = seeds.flatMap((seed) => {
      const [a, b] = [at('sft-ai', seed), at('sft', seed)];
      if (a?.sameModelAs) return [0];
      return a?.quality !== undefined && b?.quality !== undefined ? [a.quality - b.quality] : [];
    });
    if (aiGains.length) {
      metrics[`ai_label_quality_gain_${pct}pct_rate`] = round(mean(aiGains));
      metrics[`ai_label_gain_seeds_${pct}pct_count`] = aiGains.length;
    }
    if (diffs('rl').length) metrics[`rl_minus_sft_quality_${pct}pct_rate`] = round(mean(diffs('rl')));
    const gain = (arm: string) => {
      const q = seeds.map((seed) => at(arm, seed)?.quality).filter((v): v is number => v !== undefined);
      return q.length
        ? `${round(100 * (mean(q) - base), 1)} points (${q.map((v) => `${round(100 * v, 1)}%`).join(', ')})`
        : 'not trained';
    };
    notes.push(
      `True quality at ${pct}% rated, mean gain over the base on seeds ${seeds.join(', ')} (each seed's quality): sft ${gain('sft')}, sft + AI labels ${gain('sft-ai')}${here.some((r) => r.arm === 'rl') ? `, rl ${gain('rl')}` : ''}.`,
    );
  }
  const withLabels = [...pcts]
    .reverse()
    .find((p) => metrics[`ai_label_precision_${p}pct_ratio`] !== undefined);
  const headline = withLabels ?? pcts.at(-1)!;
  if (metrics[`ai_label_share_${headline}pct_ratio`] !== undefined) {
    metrics.ai_label_share = metrics[`ai_label_share_${headline}pct_ratio`]!;
    if (withLabels !== undefined)
      metrics.ai_label_precision = metrics[`ai_label_precision_${headline}pct_ratio`]!;
  }
  return notes;
}

/**
 * A run of the rate arms alone (`BENCH_FE_BUDGETS=`) keeps the budget arms' metrics of the last
 * full result, which it did not re-measure, and says where they come from.
 */
function carryBudgetMetrics(metrics: Record<string, number>, s: Settings): string[] {
  const path = resultPath('feedback-efficiency');
  if (!existsSync(path)) return [];
  const last = JSON.parse(readFileSync(path, 'utf8')) as BenchResultFile;
  const carried = Object.entries(last.metrics).filter(
    ([k]) =>
      !(k in metrics) && !/rated\d+pct|^ai_label|^rm_|^rl_minus_sft|^ratings_rated|^rate_seeds/.test(k),
  );
  for (const [k, v] of carried) metrics[k] = v;
  // A rate arm this run did not train (rl is slow; sft-ai alone trains sft only when there are
  // labels) keeps the last run's metrics, and says so.
  // (sft is not carried: the rate arms' pool changed, and sft-ai trains it where it compares.)
  const notRun = (['rl'] as const).filter((a) => !s.rateArms.includes(a));
  const rl = Object.entries(last.metrics).filter(
    ([k]) =>
      !(k in metrics) &&
      notRun.some((a) => new RegExp(`^(quality|rows|failed)_${a}_rated\\d+pct|^${a}_minus_sft`).test(k)),
  );
  for (const [k, v] of rl) metrics[k] = v;
  const from = /carried from the run of (\S+ \S+)/.exec(last.notes)?.[1] ?? `${last.commit} ${last.date}`;
  return [
    `This run measured the base and the rating-rate arms only; the budget arms' ${carried.length} metrics (quality_<arm>_<budget>_rate, quality_gain_<arm>, al_ratings_*, ...) are carried from the run of ${from} (its own base: see the README), not re-measured.`,
    rl.length
      ? `${notRun.join(' and ')} did not train here: ${rl.length} rate metrics (${rl.map(([k]) => k).join(', ')}) are carried from the run of ${last.commit} ${last.date} (seed 0 only), not re-measured.`
      : '',
  ];
}

export function summarize(
  ctx: BenchContext,
  s: Settings,
  results: ArmResult[],
  baseQ: { trueQuality: number; goodShare: number; n: number },
  info: { poolLiked: number; panel: Persona[]; loadBefore: string; seconds: number },
) {
  const base = baseQ.trueQuality;
  const metrics: Record<string, number> = {
    quality_base_rate: round(base),
    eval_prompts_count: s.evalPrompts,
    pool_answers_count: s.poolPrompts * s.answersPerPrompt,
    ...(s.ratingRates.length ? { rate_pool_answers_count: s.ratePoolPrompts } : {}),
    run_minutes: round(info.seconds / 60, 1),
  };
  const top = Math.max(...s.budgets);
  for (const r of results) {
    if (r.rate !== undefined) continue; // below
    const key = r.arm.replace(/-/g, '_');
    metrics[`rows_${key}_${r.budget}_count`] = r.rows;
    if (r.quality === undefined) {
      metrics[`failed_${key}_${r.budget}_count`] = 1;
      continue;
    }
    metrics[`quality_${key}_${r.budget}_rate`] = round(r.quality);
    if (r.budget === top) metrics[`quality_gain_${key}`] = round(r.quality - base);
  }
  const rateNotes = rateMetrics(metrics, results, base);
  // Ratings the random arm needs for the gain active learning reached, over active learning's ratings.
  const curve = (arm: string) =>
    results
      .filter((r) => r.arm === arm && r.rate === undefined && r.quality !== undefined)
      .map((r) => ({ ratings: r.ratings, gain: r.quality! - base }));
  const extra: string[] = [];
  // An arm's ratings over the ratings random sft needs for the same gain, per budget, and their
  // median. Where the arm gained more than random sft did at its largest budget, random needs
  // more than that budget: the ratio is below arm ratings / largest budget, and that bound is what
  // counts (conservative: the true ratio is lower).
  const ratioTable = (arm: string, prefix: string): string[] => {
    const ratios: { value: number; bound: boolean }[] = [];
    if (!s.arms.includes('sft') || !s.arms.includes(arm)) return [];
    extra.push(`| budget | ${arm} gain | random sft needs (ratings) | ratio |`, '| --- | --- | --- | --- |');
    const randomTop = Math.max(0, ...curve('sft').map((p) => p.ratings));
    for (const p of curve(arm)) {
      const need = p.gain > 0 ? ratingsForGain(curve('sft'), p.gain) : null;
      const ratio =
        need !== null
          ? { value: p.ratings / need, bound: false }
          : p.gain > 0 && randomTop > 0
            ? { value: p.ratings / randomTop, bound: true }
            : null;
      if (ratio !== null) {
        ratios.push(ratio);
        metrics[`${prefix}_ratings_${p.ratings}_ratio`] = round(ratio.value);
      }
      extra.push(
        `| ${p.ratings} | ${(100 * p.gain).toFixed(1)} | ${need === null ? (p.gain > 0 ? `more than ${randomTop}` : 'no gain') : Math.round(need)} | ${ratio === null ? '' : `${ratio.bound ? '< ' : ''}${ratio.value.toFixed(2)}`} |`,
      );
    }
    extra.push('');
    if (ratios.length) {
      const v = ratios.map((r) => r.value).sort((a, b) => a - b);
      const mid = (v.length - 1) / 2;
      metrics[`${prefix}_ratings_ratio`] = round((v[Math.floor(mid)]! + v[Math.ceil(mid)]!) / 2);
    }
    return ratios.map((r) => `${r.bound ? '< ' : ''}${r.value.toFixed(2)}`);
  };
  const ratios = ratioTable('sft-al', 'al');
  const singleRatios = ratioTable('sft-single', 'single');
  // Charts and table go beside the results; a side experiment (e.g. with --no-write) can send them elsewhere.
  const resultsDir = process.env.BENCH_FE_REPORT_DIR ?? join(benchDir, 'results');
  if (!ctx.tiny && s.budgets.length === 0) {
    // Only the rate arms ran: the budget arms' charts and table stay as they are.
    mkdirSync(resultsDir, { recursive: true });
    writeFileSync(join(resultsDir, 'feedback-efficiency-rates.md'), markdownReport(results, base, s, extra));
  } else if (!ctx.tiny) {
    const line = (arm: string) => ({
      label: arms[arm]!.label,
      points: results
        .filter((r) => r.arm === arm && r.rate === undefined && r.quality !== undefined)
        .map((r) => ({ x: r.ratings, y: r.quality! })),
    });
    mkdirSync(resultsDir, { recursive: true });
    writeFileSync(
      join(resultsDir, 'feedback-efficiency-methods.svg'),
      qualityChartSvg(
        'True quality after one round, by method (calibrated, random choice)',
        ['sft', 'rwsft', 'kto', 'kto-lo', 'dpo'].filter((a) => s.arms.includes(a)).map(line),
        base,
      ),
    );
    writeFileSync(
      join(resultsDir, 'feedback-efficiency-sft.svg'),
      qualityChartSvg(
        'sft on positives: calibration and active learning (20% adversarial raters)',
        ['sft', 'sft-raw', 'sft-al', 'sft-single'].filter((a) => s.arms.includes(a)).map(line),
        base,
      ),
    );
    writeFileSync(join(resultsDir, 'feedback-efficiency.md'), markdownReport(results, base, s, extra));
  }
  const adversaries = info.panel.filter((p) => p.adversarial).length;
  const notes = [
    `Tiny policy (${s.preset} preset), one training round per arm and budget from the same base; budgets ${s.budgets.join('/')} thumbs;`,
    `pool of ${s.poolPrompts} prompts x ${s.answersPerPrompt} answers sampled from the base at T=${s.temperature} (${round(100 * info.poolLiked, 1)}% good on all four axes);`,
    `a panel of ${s.panelSize} simulated raters (${adversaries} adversarial), ${s.ratersPerAnswer} distinct raters per answer chosen at random;`,
    'calibrated arms: calibrateProject defaults; raw: no flagging, no per-rater bias/scale/noise (plain mean);',
    `active learning: ${Math.round(100 * s.alWarmupShare)}% of the budget random (2 raters per answer), then the active-learning queue with the positives objective picks the rest in batches of ${Math.round(100 * s.alBatchShare)}% (unrated answers most likely liked, by the calibrated ratings of similar rated answers; one rating each, from a rater calibration has neither flagged nor found running against the consensus); the final calibration is the same as the random arm's;`,
    `settings from bench/loop-settings (sft/rwsft lr 2e-3, rwsft negative_scale 0.05, kto lr 3e-3, dpo lr 1e-3; 2 epochs, batch 8, LoRA r16), curation off, no test split;`,
    `true quality = share of ${s.evalPrompts} eval answers (fixed prompts, people and seeds for every model) a simulated user would like (oracle); budget arms: one seed, no repeats${s.ratingRates.length ? `; rate arms: seeds ${s.rateSeeds.join(', ')} (one pool of ${s.ratePoolPrompts} answers, one per prompt, rated in a random order of answers; each seed its own panel, rated answers and training seed; labeller ${s.labeller}${s.labeller === 'reward-model' ? `, reward model ${s.rewardSteps ? `${s.rewardSteps} steps` : '2 epochs'}, lr 3e-3` : ''})` : ''}; differences of a few points are within noise (sd about ${round(100 * Math.sqrt((base * (1 - base)) / s.evalPrompts), 1)} points per measurement).`,
    ratios.length
      ? `Active learning needed ${ratios.join(', ')} of the random arm's ratings for the same gain at ${curve(
          'sft-al',
        )
          .map((p) => p.ratings)
          .join(
            '/',
          )} ratings (goal: 0.5 or less; "< x": it gained more than random sft at its largest budget, and the bound x counts in the median al_ratings_ratio).`
      : 'Active learning vs random: no ratio (see feedback-efficiency.md).',
    singleRatios.length
      ? `Ablation sft-single (the same warm-up and one rating per answer, random choice instead of the queue): ${singleRatios.join(', ')}.`
      : '',
    ...rateNotes,
    ...(s.budgets.length === 0 && !ctx.tiny ? carryBudgetMetrics(metrics, s) : []),
    `${info.loadBefore} at start, ${loadNote()} at the end; ${round(info.seconds / 60, 1)} min.`,
  ]
    .filter(Boolean)
    .join(' ');
  return { metrics, notes };
}
