import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { createPopulation, type PopulationPreset, populationPresets, wilsonInterval } from '@ratchet/core';
import {
  advanceLoop,
  type LoopContext,
  LoopPolicy,
  type LoopPolicyInput,
  lookAtOpenWatches,
  stopExperiment,
  WorkerTarget,
  withRoutedModels,
  workerCommand,
} from '@ratchet/loop';
import { buildServer, loadServerConfig, parseGatewayConfig } from '@ratchet/server';
import { Store } from '@ratchet/store';
import { progressBar, stepBar } from '../progress.js';
import { type DemoRound, writeDemoReport } from './report.js';
import { loadDemoDomain, measureTrueQuality, simulateTraffic, type TrafficReport } from './traffic.js';

export type { DemoRound } from './report.js';

export interface LoopDemoOptions {
  databaseUrl?: string;
  port: number;
  rounds: number;
  /** Chats before each round (the feedback the round learns from). */
  chatsPerRound: number;
  /** Where the tiny policy is built (cached). */
  modelDir: string;
  preset: 'default' | 'test';
  dataDir: string;
  reportDir: string;
  /** Run the rounds and exit instead of leaving the server up. */
  exit: boolean;
  /** Overrides of the loop policy (tests make rounds smaller). */
  policy?: Partial<LoopPolicyInput>;
  /** Prompts per true-quality measurement. */
  probePrompts: number;
  /**
   * This round tries a riskier recipe (rating-weighted SFT that also pushes down every token of
   * disliked answers), to show the gate and the experiment stopping a worse candidate; 0: none.
   */
  riskyRound: number;
  /** After the rounds, promote the worst turned-away candidate by hand and let the guardrail act. */
  carelessPromotion: boolean;
  /** Seeds the simulated people and their chats (the default run is seed 7). */
  seed: number;
  /** Who uses the assistant (core's populationPresets). */
  population: PopulationPreset;
  /** Where to write the run's machine-readable record (DemoRecord as JSON); none when unset. */
  recordPath?: string;
  /**
   * Most chats on a round's canary before the demo moves on (in batches of 150). The experiment
   * ends itself at the policy's maximum of users per arm; this only bounds a run whose users
   * rate too rarely to get there, whose round would otherwise run on into the next one.
   */
  canaryChats: number;
}

/**
 * Simulated users' calls in flight at once (chats and true-quality probes). The worker batches
 * generation across requests (up to 16 sequences a step), so more calls in flight cost little more
 * than one: on the shared 2-core machine 8 at once answered 2.3-3.4x as many chats a second as 2.
 */
const chatConcurrency = 8;

/** The seed the demo has always run with; other seeds shift every chat's seed with it. */
export const defaultDemoSeed = 7;

/** What a run did, for bench/demo.ts and anyone comparing runs: written with --record. */
export interface DemoRecord {
  seed: number;
  population: PopulationPreset;
  rounds: DemoRound[];
  /** Production's true quality (oracle) before round 1 and after the last step. */
  trueQualityStart: number;
  trueQualityEnd: number;
  finalModel: string;
  /** User calls through the gateway, and how many failed. */
  calls: number;
  failedCalls: number;
  seconds: number;
  /**
   * False while the run goes on: the record is rewritten after every round, so a run stopped
   * early leaves what it did (trueQualityEnd is then production after the last finished round).
   */
  complete: boolean;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolvePort(port));
    });
  });
}

/** Builds (or finds cached) the tiny local policy, with a progress bar. */
async function buildTinyPolicy(o: LoopDemoOptions): Promise<string> {
  const out = resolve(o.modelDir);
  const child = spawn(workerCommand(), ['tiny', '--out', out, '--preset', o.preset], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let bar: ReturnType<typeof progressBar> | undefined;
  let last = 0;
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      const e = JSON.parse(line) as { type: string; step?: number; total?: number };
      if (e.type === 'cached') console.log(`tiny policy: cached at ${out}`);
      if (e.type === 'progress' && e.total) {
        const step = e.step ?? last;
        if (bar) bar.increment(step - last);
        else bar = progressBar('building the tiny policy', e.total, step);
        last = step;
      }
    } catch {
      // not a progress line
    }
  });
  const code = await new Promise<number>((r) => child.on('exit', (c) => r(c ?? 1)));
  bar?.stop();
  if (code !== 0) throw new Error(`building the tiny policy failed (exit ${code}): ${stderr}`);
  return out;
}

/**
 * The demo's own embedded database, emptied first: every `make demo` tells the story from round 1
 * (a database named with --database-url or RATCHET_DATABASE_URL is used as it is).
 */
function freshDemoDatabase(): string {
  const path = resolve('.ratchet/demo/ratchet.db');
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
  mkdirSync(dirname(path), { recursive: true });
  return `sqlite:${path}`;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

function printRound(r: DemoRound): void {
  console.log(
    [
      `round ${r.round}`.padEnd(9),
      r.production.padEnd(22),
      `true ${pct(r.trueQuality)}`.padEnd(13),
      `candidate (${r.method}) ${r.candidateQuality === null ? '-' : `true ${pct(r.candidateQuality)}`}`.padEnd(
        28,
      ),
      `thumbs up ${pct(r.thumbsUp / Math.max(1, r.thumbsTotal))} [${pct(r.thumbsUpLower)}, ${pct(r.thumbsUpUpper)}] of ${r.thumbsTotal}`.padEnd(
        44,
      ),
      `gate: ${r.gate}`.padEnd(18),
      `experiment: ${r.experiment}`.padEnd(26),
      r.outcome,
    ].join(' '),
  );
}

/**
 * The demo's loop policy: small, fast rounds on the tiny policy, overridable by tests. The
 * settings are the ones bench/loop-settings measured to work on this model: sft on the answers
 * users liked at lr 2e-3, each round stacked on the last merged model (kto, dpo and rwsft were
 * slower and less stable there, and the worker's defaults are for billion-parameter models).
 */
const demoExperiments: Record<PopulationPreset, LoopPolicyInput['experiment']> = {
  // Observations are users with a thumb (the user is the unit). The canary is sized from power
  // (the loop's canary plan): it runs until the test decides or until it has had 80% power to
  // find the smallest improvement worth shipping here, 10 points of thumbs-up rate (a round here
  // moves thumbs by 15-25 points), and only then is it "no effect". The horizon is counted in
  // information, so with the demo's 600 people (about 285 an arm rate) it is reached by more
  // thumbs per person and CUPED on their earlier thumbs, not by more people. (It used to end at
  // 200 users an arm, where better candidates 10-15 true points up ended as no effect.)
  // The minimum effect is 7 points of thumbs (users' thumbs show a true difference at about 60%
  // of its size here, so about 11 true points): at 10 points, seed 9's round-3 candidate, 11 true
  // points better, reached the horizon as "no effect" with the interval at [-0.011, 0.11]; one
  // look at that horizon had power 0.34 for it, 0.77 at this one. The horizon is about twice the
  // information, so a canary that has not decided keeps the route into the next round (the loop
  // starts no new round while one runs) and the demo's chats go to deciding it.
  default: { minObservationsPerArm: 30, minimumEffect: 0.07 },
  // With a third of raters adversarial, thumbs show a true difference at about a third of its
  // size and only the few users who rate have one: deciding on them takes thousands of users per
  // arm. What people do with answers is not diluted and every user served has an outcome. The
  // canary decides on each user's net dissatisfaction (answers regenerated, edited or abandoned
  // minus answers copied, per answer served; lower is better): a regenerate rate alone left a
  // candidate 19 true points better undecided at the cap (6.5% against 8.0% regenerated, while
  // its copies pointed the same way, 4.1% against 3.1%), and the net outcome reads both. The
  // mixture is tuned to 4 points (a candidate 20 true points better moves it about that much),
  // the horizon sized for 3, and thumbs stay a guardrail (a candidate clearly worse in them is
  // stopped). Observations are users served: of 3,000 people, about 1,400 per arm on a
  // half-and-half canary of 9,000 chats.
  realistic: {
    metric: 'net_dissatisfaction',
    guardrails: [{ metric: 'thumbs_up_rate' }],
    minObservationsPerArm: 200,
    maxObservationsPerArm: 1400,
    expectedEffect: 0.04,
    minimumEffect: 0.03,
  },
};

export function demoPolicy(
  baseModel: string,
  overrides: Partial<LoopPolicyInput> = {},
  population: PopulationPreset = 'default',
): LoopPolicy {
  return LoopPolicy.parse({
    route: 'support-bot',
    baseModel,
    upstream: 'worker',
    trigger: { minNewFeedback: 30 },
    // Each demo answer is rated by the one person it answered, so calibration cannot tell the 10%
    // who rate the opposite of what they think from anyone else: their thumbs stayed in the canary's
    // outcomes and kept seed 9's round-3 candidate (70.7% true against 57.3%) undecided through
    // 3,000 chats at [-0.015, 0.114]; leaving out the true adversaries, the same data ship it at
    // [0.041, 0.161]. So raters are judged against a word model of what the other people liked,
    // and calibration runs again before each look, so they are flagged (and left out) on what they
    // said so far: users have about two ratings when a round starts. From six ratings: their
    // anti-correlation with the word model is strong (about -0.8). The realistic population keeps
    // the defaults (its canary decides on what users do, which flags do not touch; not measured).
    ...(population === 'default'
      ? {
          calibration: {
            reference: 'words' as const,
            beforeEachLook: true,
            options: { flagging: { minRatings: 6 } },
          },
        }
      : {}),
    // Any answer whose calibrated reward is positive is one to imitate: most demo answers have a
    // single rating, so the interval's lower end would exclude nearly all of them.
    // A quarter of the prompts are held out, so that the gate judges on enough of them.
    dataset: {
      method: 'sft',
      options: { minReward: 0.01, minLower: -1, split: { by: 'prompt', testFraction: 0.25 } },
      groupSimilarPrompts: 0.6,
      // Each round imitates production's own liked answers. SFT on liked answers ends about as
      // good as what it imitates: in a seed-9 run round 3's rows were 79.6% answers the average
      // person likes (production's own 86.8%, the base model's 66.9%, the rolled-back risky
      // candidate's 45.1%) and its candidate answered users at 78.2%. The realistic population's
      // rounds keep every rated answer (few are rated there; not measured with this).
      productionAnswersOnly: population === 'default',
    },
    training: {
      method: 'sft',
      // 3 epochs: the first round has only ~50 liked answers, and too few steps barely move it.
      hyperparameters: { learningRate: 2e-3, epochs: 3, batchSize: 8 },
      stack: true,
    },
    rewardModel: {
      enabled: true,
      // Near-identical prompts form big groups here: more pairs per group give the reward model,
      // the gate's only critic in the demo, enough to learn from.
      options: { minMargin: 0.05, maxPairsPerPrompt: 24 },
      hyperparameters: { learningRate: 3e-3, epochs: 2, batchSize: 8 },
    },
    // Only the reward model's confident calls: its labels become sft examples like a person's.
    aiFeedback: { enabled: true, minConfidence: 0.8 },
    // The offline critic here is a reward model trained on a round's hundred-odd ratings, and it
    // is confidently wrong about a candidate's new answers in both directions: in one demo run it
    // preferred a wrecked candidate (16% true quality) 9 to 0 over production (65%), and
    // production 9 to 0 over a better candidate (77%), each a significant interval on the sign
    // test. So in the demo it does not gate (`source: 'judge'`, and the demo has no judge): the
    // pairwise gates are undecided, perplexity and safety gate on intervals, and the experiment
    // on live users and the guardrail after promotion decide. A better critic (the LLM judge,
    // `evaluation.judge`) gates where one is configured.
    evaluation: {
      maxItems: 40,
      suites: ['heldout', 'redteam'],
      maxTokens: 80,
      gates: { winRate: { source: 'judge' } },
    },
    canary: { share: 0.5 },
    experiment: demoExperiments[population],
    ...overrides,
  });
}

/**
 * Chats before a round. The realistic population's rounds learn from what users said since the
 * last round, and its canaries run to thousands of chats whose ratings the next round learns from
 * like any others: chatting another 1,000 first only made a round slower (about a third of a
 * run's chats), so they count toward the round's chats, and at least a quarter are chatted
 * afresh on the production the round starts from. The default population keeps its fixed chats
 * (its canaries are short).
 */
export function freshChats(
  o: Pick<LoopDemoOptions, 'chatsPerRound' | 'population'>,
  canaryChatsSince: number,
): number {
  if (o.population !== 'realistic') return o.chatsPerRound;
  return Math.max(Math.ceil(o.chatsPerRound / 4), o.chatsPerRound - canaryChatsSince);
}

/**
 * The demo's planted risky round: the same loop, but training rating-weighted SFT on every rated
 * answer, with full unlikelihood on the disliked ones. bench/loop-settings saw this recipe
 * collapse the tiny policy (unlikelihood on a disliked answer also pushes down the tokens it
 * shares with liked ones); the gate and the experiment should keep it out of production.
 */
export function riskyPolicy(policy: LoopPolicy): LoopPolicy {
  return LoopPolicy.parse({
    ...policy,
    dataset: {
      ...policy.dataset,
      method: 'rwsft',
      options: { split: policy.dataset.options.split },
      productionAnswersOnly: false,
    },
    training: { ...policy.training, method: 'rwsft' },
  });
}

/**
 * The main job, end to end on one machine: build the tiny policy, serve it with the worker behind
 * the gateway, let simulated users chat and rate, and run the loop for several rounds (calibrate,
 * build, train, evaluate, canary, experiment, promote or roll back). Prints a row per round with
 * the oracle's true quality beside what users reported, writes a report with charts, and leaves
 * the server and dashboard running.
 */
export async function runLoopDemo(o: LoopDemoOptions): Promise<DemoRecord & { url: string }> {
  const started = Date.now();
  console.log("Ratchet demo: a support assistant that gets better from its users' ratings.\n");
  // One torch thread for every worker process the demo starts (the tiny build, the model server,
  // each training job), unless OMP_NUM_THREADS says otherwise: a model this small gains little
  // from a second thread (the build: 15 s with two on an idle machine, 33 s with one while the
  // other core was busy), and when anything else runs on a 2-core machine two threads wait on
  // each other: the build fell to 0.6 steps/s from 20 and training to 0.4-0.7 from 24-38.
  process.env.OMP_NUM_THREADS ??= '1';
  const base = await buildTinyPolicy(o);
  const store = await Store.open(o.databaseUrl ?? freshDemoDatabase());
  const project = await store.projects.getOrCreate('demo');
  const secret = await store.projects.createKey(project.id, 'secret', 'demo');
  const pub = await store.projects.createKey(project.id, 'public', 'demo widget');

  const models = new WorkerTarget({
    baseModel: base,
    baseName: 'tiny-support',
    port: await freePort(),
    // A newcomer's machine may be busy: on the shared 2-core machine at load 20-25 the worker
    // took over the default 2 minutes to import torch and load the model, and the demo died.
    readyTimeoutMs: 600_000,
  });
  const server = await buildServer({
    store,
    config: loadServerConfig({ port: o.port, logLevel: 'warn', dataDir: o.dataDir }),
    gatewayConfig: parseGatewayConfig({ upstreams: { worker: { baseURL: models.baseUrl } } }),
  });
  const url = await server.listen();
  const shutdown = async () => {
    await server.close();
    await models.close();
    await store.close();
  };
  try {
    const policy = demoPolicy(base, o.policy, o.population);
    let prod = await store.models.production(project.id, policy.route);
    if (!prod) {
      prod = await store.models.register(
        project.id,
        { name: 'tiny-support', route: policy.route, baseModel: base, stage: 'production' },
        'demo',
      );
    }
    await store.routes.put(project.id, policy.route, [
      { name: 'production', upstream: 'worker', model: prod.name, weight: 1, modelId: prod.id },
    ]);
    await models.ensure([{ name: prod.name, adapterPath: prod.adapterPath }]);
    console.log(`server ${url}, model server ${models.baseUrl}\n`);
    await new Promise((r) => setTimeout(r, 2500)); // the gateway loads database routes every 2 s

    const domain = loadDemoDomain();
    // The default population rates more often than real people (most rate nothing), so that
    // rounds need fewer chats; `realistic` rates about 12% of answers with a third adversaries.
    const population = createPopulation({ ...populationPresets[o.population], seed: o.seed });
    console.log(
      `population: ${o.population} (${population.length} people, seed ${o.seed}), ${o.chatsPerRound} chats a round\n`,
    );
    // Seed 7 keeps the chats the demo always had; another seed moves every chat's seed with it.
    const chatSeed = (n: number) => n + 100_000 * (o.seed - defaultDemoSeed);
    const trainingBar = stepBar((method) =>
      method === 'reward' ? '  training the reward model' : `  training the candidate (${method})`,
    );
    const ctx: LoopContext = {
      store,
      projectId: project.id,
      policy,
      modelsBaseUrl: models.baseUrl,
      serve: (m) => models.ensure(m),
      dataDir: o.dataDir,
      training: { onEvent: trainingBar.onEvent },
      actor: 'demo',
      log: (line) => console.log(`  ${line}`),
    };
    // Every user call of every round, and how many failed: production must keep answering
    // through training, evaluation, model loads and promotions.
    const calls = { total: 0, failed: 0 };
    const chat = async (label: string, chats: number, seed: number): Promise<TrafficReport> => {
      const bar = progressBar(label, chats);
      const report = await simulateTraffic({
        baseUrl: url,
        apiKey: secret.key,
        route: policy.route,
        domain,
        population,
        chats,
        seed: chatSeed(seed),
        concurrency: chatConcurrency,
        maxTokens: policy.evaluation.maxTokens,
        onProgress: () => bar.increment(),
      });
      bar.stop();
      calls.total += chats;
      calls.failed += report.errors;
      if (report.errors > 0) console.log(`  ${report.errors} chats failed: ${report.firstError}`);
      return report;
    };
    const probe = async (model: string, seed: number) =>
      measureTrueQuality({
        baseUrl: models.baseUrl.replace(/\/v1$/, ''),
        model,
        domain,
        population,
        prompts: o.probePrompts,
        seed,
        maxTokens: policy.evaluation.maxTokens,
        // Each probe answer has its own sampling seed, so batching does not change what is measured.
        concurrency: chatConcurrency,
      });

    // The oracle's verdict on a candidate (rejected ones too), so the report shows whether each
    // decision was right; the loop never sees it.
    const probeCandidate = async (name: string, productionName: string) => {
      const [cand, prod] = await Promise.all([
        store.models.get(project.id, name),
        store.models.get(project.id, productionName),
      ]);
      if (!cand) return null;
      // With whatever the route still sends users to (a watch's holdback): the worker unloads
      // what it is not asked to serve.
      const probed = [cand, prod!].map((m) => ({ name: m.name, adapterPath: m.adapterPath }));
      await models.ensure(await withRoutedModels(store, project.id, policy.route, probed));
      const truth = await probe(name, 77);
      known.set(name, truth);
      return truth.trueQuality;
    };
    const known = new Map<string, Awaited<ReturnType<typeof probe>>>();

    /**
     * A careless operator promotes by hand the worst candidate the loop turned away. The
     * promotion opens a watch (the replaced model keeps half the users here, so a short demo
     * decides; the product's default holdback is 5%), users keep chatting, and the guardrail's
     * looks roll it back on their own once the users' ratings show the harm.
     */
    const carelessPromotion = async (): Promise<DemoRound | null> => {
      const t0 = Date.now();
      const current = (await store.models.production(project.id, policy.route))!;
      const turnedAway = (await store.models.list(project.id, { route: policy.route })).filter(
        (m) => m.stage !== 'production' && known.has(m.name) && m.name !== current.name,
      );
      const worst = turnedAway.sort(
        (a, b) => known.get(a.name)!.trueQuality - known.get(b.name)!.trueQuality,
      )[0];
      const truth = known.get(current.name) ?? (await probe(current.name, 77));
      if (!worst || known.get(worst.name)!.trueQuality >= truth.trueQuality) {
        console.log('\n(no turned-away candidate worse than production to promote by hand)');
        return null;
      }
      let open = await store.loops.current(project.id, policy.route);
      if (open?.stage === 'experiment') {
        // The demo's traffic is over and the last canary has not decided: the operator stops it
        // keeping production (a test without users decides nothing), and the loop ends the round.
        const experimentId = (open.state as { experimentId?: string }).experimentId;
        if (experimentId)
          await stopExperiment(store, project.id, experimentId, {
            keep: 'production',
            reason: "the demo's traffic ended before the test decided",
            actor: 'operator',
          });
        const ended = await advanceLoop(ctx);
        const last = rounds.at(-1);
        if (last && ended?.round === open.round && ended.stage === 'done') {
          last.outcome = `${ended.status} (stopped undecided at the demo's end)`;
          console.log(
            `\n(round ${open.round}'s canary was undecided when the traffic ended: stopped, production kept)`,
          );
        }
        open = await store.loops.current(project.id, policy.route);
      }
      if (open) {
        console.log(
          `\n(round ${open.round} is still ${open.status} at ${open.stage}: no promotion by hand over it)`,
        );
        return null;
      }
      console.log(`\n== a careless promotion ==`);
      console.log(`  an operator promotes ${worst.name} by hand over ${current.name}, skipping the loop`);
      await store.models.setStage(
        project.id,
        worst.name,
        'production',
        'operator',
        'looked fine in two chats',
        undefined,
        {
          watch: { holdbackShare: 0.5 },
        },
      );
      await models.ensure(await withRoutedModels(store, project.id, policy.route, []));
      await new Promise((r) => setTimeout(r, 1500)); // every gateway applies a route change within a second
      const users = { up: 0, total: 0 };
      let outcome = 'not rolled back';
      let reasons: string[] = [];
      for (let batch = 0; batch < 12 && outcome === 'not rolled back'; batch++) {
        const traffic = await chat('users after the promotion', 150, 9000 + batch);
        for (const v of Object.values(traffic.variants)) {
          users.up += v.thumbsUp;
          users.total += v.thumbsUp + v.thumbsDown;
        }
        for (const look of await lookAtOpenWatches(store, { actor: 'guardrail' }))
          if (look.watch.route === policy.route && look.decision === 'rollback') {
            outcome = 'rolled_back (guardrail)';
            reasons = look.reasons;
          }
      }
      const after = (await store.models.production(project.id, policy.route))!;
      console.log(
        outcome === 'not rolled back'
          ? `  the guardrail did not roll ${worst.name} back within the demo's traffic`
          : `  the guardrail rolled ${worst.name} back to ${after.name}: ${reasons.join('; ')}`,
      );
      const w = wilsonInterval(users.up, users.total);
      return {
        round: o.rounds + 1,
        production: current.name,
        method: 'by hand',
        candidate: worst.name,
        candidateQuality: known.get(worst.name)!.trueQuality,
        trueQuality: truth.trueQuality,
        goodShare: truth.goodShare,
        thumbsUp: users.up,
        thumbsTotal: users.total,
        thumbsUpLower: w.lower,
        thumbsUpUpper: w.upper,
        gate: 'skipped',
        experiment: 'watch',
        outcome,
        seconds: Math.round((Date.now() - t0) / 1000),
      };
    };

    const rounds: DemoRound[] = [];
    // Chats on the last round's canary: users' feedback like any other (freshChats).
    let canaryChatsSince = 0;
    const writeRecord = (complete: boolean, production: { name: string; trueQuality: number }) => {
      const record: DemoRecord = {
        seed: o.seed,
        population: o.population,
        rounds,
        trueQualityStart: rounds[0]?.trueQuality ?? production.trueQuality,
        trueQualityEnd: production.trueQuality,
        finalModel: production.name,
        calls: calls.total,
        failedCalls: calls.failed,
        seconds: Math.round((Date.now() - started) / 1000),
        complete,
      };
      if (o.recordPath) {
        mkdirSync(dirname(resolve(o.recordPath)), { recursive: true });
        writeFileSync(o.recordPath, `${JSON.stringify(record, null, 2)}\n`);
      }
      return record;
    };
    for (let n = 1; n <= o.rounds; n++) {
      const t0 = Date.now();
      console.log(`\n== round ${n} ==`);
      const traffic = await chat('users chatting and rating', freshChats(o, canaryChatsSince), 1000 + n);
      const observed = Object.values(traffic.variants).reduce(
        (a, v) => ({ up: a.up + v.thumbsUp, total: a.total + v.thumbsUp + v.thumbsDown }),
        { up: 0, total: 0 },
      );
      const current = (await store.models.production(project.id, policy.route))!;
      // The same probe prompts every time; a model measured as last round's candidate is not
      // measured again.
      const truth = known.get(current.name) ?? (await probe(current.name, 77));
      known.set(current.name, truth);
      ctx.policy = n === o.riskyRound ? riskyPolicy(policy) : policy;
      if (n === o.riskyRound)
        console.log(
          '  this round tries a riskier recipe: rating-weighted SFT that also pushes down every token of disliked answers',
        );
      let round = await advanceLoop(ctx, { start: true });
      let extra = 0;
      for (
        ;
        round?.status === 'running' && round.stage === 'experiment' && extra < Math.ceil(o.canaryChats / 150);
        extra++
      ) {
        // The gateway loads database routes every 2 s: the first batch waits for the canary's route
        // (its users must be the experiment's); the route does not change again until it decides.
        if (extra === 0) await new Promise((r) => setTimeout(r, 2500));
        await chat('users on the canary', 150, 5000 + 10 * n + extra);
        round = await advanceLoop(ctx);
      }
      canaryChatsSince = 150 * extra;
      trainingBar.stop();
      const state = (round?.state ?? {}) as Record<string, unknown>;
      const candidate = typeof state.candidate === 'string' ? state.candidate : '';
      const row: DemoRound = {
        round: n,
        production: current.name,
        method: ctx.policy.training.method,
        candidate,
        candidateQuality: candidate ? await probeCandidate(candidate, current.name) : null,
        trueQuality: truth.trueQuality,
        goodShare: truth.goodShare,
        thumbsUp: observed.up,
        thumbsTotal: observed.total,
        ...(() => {
          const w = wilsonInterval(observed.up, observed.total);
          return { thumbsUpLower: w.lower, thumbsUpUpper: w.upper };
        })(),
        gate:
          state.gatePassed === undefined
            ? '-'
            : state.gateDecision === 'undecided'
              ? 'undecided'
              : state.gatePassed
                ? 'passed'
                : 'failed',
        experiment: String(state.decision ?? '-'),
        ...(state.experimentId
          ? {
              canary: {
                observations: (state.observations as Record<string, number> | undefined) ?? null,
                plan: (state.canaryPlan as Record<string, number> | undefined) ?? null,
                chats: 150 * extra,
                reasons: (state.decisionReasons as string[] | undefined) ?? [],
              },
            }
          : {}),
        outcome: round?.status ?? 'no round',
        seconds: Math.round((Date.now() - t0) / 1000),
      };
      rounds.push(row);
      printRound(row);
      // Production after the round (the candidate, measured above, when it was promoted): a run
      // stopped early then records what its rounds achieved.
      const after = (await store.models.production(project.id, policy.route))!;
      writeRecord(false, {
        name: after.name,
        trueQuality: (known.get(after.name) ?? known.get(current.name)!).trueQuality,
      });
    }
    if (o.carelessPromotion) {
      const row = await carelessPromotion();
      if (row) {
        rounds.push(row);
        printRound(row);
      }
    }
    const final = (await store.models.production(project.id, policy.route))!;
    const finalTruth = known.get(final.name) ?? (await probe(final.name, 77));
    console.log(
      `\nproduction now: ${final.name}, true quality ${pct(finalTruth.trueQuality)} (was ${pct(rounds[0]?.trueQuality ?? 0)})`,
    );
    const reportPath = writeDemoReport(o.reportDir, rounds, { name: final.name, ...finalTruth });
    console.log(`failed user calls: ${calls.failed} of ${calls.total}`);
    console.log(`report: ${reportPath}`);
    const record = writeRecord(true, { name: final.name, trueQuality: finalTruth.trueQuality });
    if (o.recordPath) console.log(`record: ${o.recordPath}`);
    console.log(`took ${record.seconds} s`);
    printWelcome(url, secret.key, pub.key);
    if (o.exit) await shutdown();
    else {
      await new Promise<void>((r) => {
        for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => r());
      });
      await shutdown();
    }
    return { ...record, url };
  } catch (err) {
    await shutdown();
    throw err;
  }
}

function printWelcome(url: string, secret: string, pub: string): void {
  console.log(
    [
      '',
      `Dashboard: ${url}/  (sign in with the secret key below)`,
      `API: ${url}/openapi.json   Metrics: ${url}/metrics`,
      `Point an app at it: new OpenAI({ baseURL: "${url}/v1", apiKey: "<secret key>" }), model "support-bot"`,
      `Secret key (server side): ${secret}`,
      `Public key (browser widget, feedback with an answer's x-ratchet-feedback-token only): ${pub}`,
      '',
      'Ctrl-C to stop.',
    ].join('\n'),
  );
}
