// Personalization (issue 7): do per-segment adapters beat one global model for each segment?
// Drives the real pieces end to end: simulated users of three segments chat through the gateway
// with the official openai client and send their segment (x-ratchet-segment), and rate what they
// get through the SDK; the project is calibrated; one global adapter is trained on everyone's
// feedback (merged into a full model), and `personalize` trains per segment, on that segment's
// feedback only, an adapter from the base and one on top of the global model (`ratchet-worker
// train`), registers them and routes each segment to the latter. The oracle (core simulate) then
// measures each segment's true quality on held-out prompts under the base, the global model and
// both segment adapters (`ratchet-worker serve`), and once more through the gateway, where the
// routing alone decides which model a segment gets.
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadDemoDomain, measureSegmentQuality, simulateTraffic } from '@ratchet/cli';
import { createPopulation } from '@ratchet/core';
import {
  buildDatasetVersion,
  calibrateProject,
  LocalModelServer,
  type PersonalizeResult,
  type PersonalizeSpecInput,
  personalize,
  runTraining,
  startTrainingRun,
} from '@ratchet/loop';
import { buildServer, loadServerConfig, parseGatewayConfig } from '@ratchet/server';
import { Store } from '@ratchet/store';
import { z } from 'zod';
import { type Bench, type BenchContext, loadNote } from './lib/bench.js';
import { freePort } from './lib/procs.js';
import { repoDir, round, workDir } from './lib/results.js';

const run = promisify(execFile);

const Settings = z.strictObject({
  preset: z.enum(['default', 'test']),
  /** Chats of simulated users before training (the feedback everything learns from). */
  chats: z.number().int().min(10),
  /** Held-out prompts per segment and model for the oracle. */
  evalPrompts: z.number().int().min(1),
  /** Chats through the gateway after personalization, to see the routing deliver the gain. */
  routedChats: z.number().int().min(0),
  minRatings: z.number().int().min(1),
  epochs: z.number().int().min(1),
  learningRate: z.number().positive(),
  maxTokens: z.number().int().min(1),
  /** The population's segments, in equal shares (core simulate's defaultSegments). */
  segments: z.array(z.string().min(1)).min(1),
  /** sft rows: answers whose calibrated reward is at least this. */
  minReward: z.number().min(-1).max(1),
  seed: z.number().int(),
});
type Settings = z.infer<typeof Settings>;

const fullSettings: Settings = {
  preset: 'default',
  // 600 chats left each segment 30-40 liked answers, ~10 steps at 2 epochs: too little for the
  // tiny policy to move (brisk: global 23%, own adapter 22%).
  chats: 1200,
  // 100 left the gains (+6 and +11 points) within two standard errors.
  evalPrompts: 300,
  routedChats: 200,
  minRatings: 40,
  epochs: 4,
  learningRate: 2e-3,
  maxTokens: 80,
  // Any answer whose calibrated reward is positive is one to imitate (as the demo's policy).
  minReward: 0.01,
  // Opposite tastes on one axis: no single answer style pleases both (see defaultSegments).
  segments: ['brisk', 'courteous'],
  seed: 0,
};
const tinySettings: Settings = {
  ...fullSettings,
  preset: 'test',
  chats: 60,
  evalPrompts: 4,
  routedChats: 12,
  minRatings: 4,
  epochs: 1,
  maxTokens: 16,
  // The test preset's answers are garbled (almost none liked): train on every rated answer, so
  // the smoke test exercises each step.
  minReward: -1,
};

/** Knobs for a reduced run on a loaded machine: BENCH_PZ_CHATS=450 BENCH_PZ_EVAL_PROMPTS=60. */
function settingsFor(ctx: BenchContext): Settings {
  const env = process.env;
  return Settings.parse({
    ...(ctx.tiny ? tinySettings : fullSettings),
    ...(env.BENCH_PZ_CHATS ? { chats: Number(env.BENCH_PZ_CHATS) } : {}),
    ...(env.BENCH_PZ_EVAL_PROMPTS ? { evalPrompts: Number(env.BENCH_PZ_EVAL_PROMPTS) } : {}),
    ...(env.BENCH_PZ_ROUTED_CHATS ? { routedChats: Number(env.BENCH_PZ_ROUTED_CHATS) } : {}),
    ...(env.BENCH_PZ_SEGMENTS ? { segments: env.BENCH_PZ_SEGMENTS.split(',') } : {}),
  });
}

const route = 'support-bot';
const trainEnv = { OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1', TOKENIZERS_PARALLELISM: 'false' };
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Builds (or reuses) the tiny policy, in the same place feedback-efficiency keeps it. */
async function tinyModel(preset: Settings['preset'], log: (m: string) => void): Promise<string> {
  const out = join(workDir, 'models', preset === 'test' ? 'tiny-test' : 'tiny-support');
  log(`personalize: tiny policy (${preset} preset) in ${out}`);
  await run(join(repoDir, '.venv', 'bin', 'ratchet-worker'), ['tiny', '--out', out, '--preset', preset], {
    env: { ...process.env, ...trainEnv },
    maxBuffer: 64 * 1024 * 1024,
  });
  return out;
}

export const personalizeBench: Bench = {
  name: 'personalize',
  summary: 'per-segment adapters vs one global model: each segment’s true quality on held-out prompts',
  keyMetrics: [
    'brisk_gain_over_global_rate',
    'courteous_gain_over_global_rate',
    'min_gain_over_global_rate',
    'brisk_true_quality_global_rate',
    'brisk_true_quality_segment_rate',
    'courteous_true_quality_global_rate',
    'courteous_true_quality_segment_rate',
  ],
  async run(ctx) {
    const s = settingsFor(ctx);
    const loadBefore = loadNote();
    const started = Date.now();
    const runDir = join(workDir, 'personalize', ctx.tiny ? 'tiny' : 'run');
    rmSync(runDir, { recursive: true, force: true });
    mkdirSync(runDir, { recursive: true });
    const dataDir = join(runDir, 'data');
    const base = await tinyModel(s.preset, ctx.log);
    const domain = loadDemoDomain();
    const segments = s.segments;
    // Equal segments, so each has feedback enough for an adapter; demo-like rating habits.
    const population = createPopulation({
      size: 600,
      seed: s.seed + 7,
      segmentShares: Object.fromEntries(segments.map((seg) => [seg, 1])),
      raterShare: 0.6,
      rateProbability: 0.8,
      adversarialShare: 0.1,
    });
    const store = await Store.open(`sqlite:${join(runDir, 'ratchet.db')}`);
    const models = new LocalModelServer({
      baseModel: base,
      baseName: 'tiny-support',
      port: await freePort(),
      env: trainEnv,
      onLog: () => {},
    });
    const server = await buildServer({
      store,
      config: loadServerConfig({ port: await freePort(), logLevel: 'warn', dataDir }),
      gatewayConfig: parseGatewayConfig({ upstreams: { worker: { baseURL: models.baseUrl } } }),
    });
    const metrics: Record<string, number> = {};
    const phases: Record<string, number> = {};
    const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
      const t0 = Date.now();
      const out = await fn();
      phases[name] = round((Date.now() - t0) / 1000, 1);
      ctx.log(`personalize: ${name} took ${phases[name]} s (${loadNote()})`);
      return out;
    };
    try {
      const url = await server.listen();
      const project = await store.projects.getOrCreate('personalize');
      const key = (await store.projects.createKey(project.id, 'secret', 'bench')).key;
      const prod = await store.models.register(
        project.id,
        { name: 'tiny-support', route, baseModel: base, stage: 'production' },
        'bench',
      );
      await store.routes.put(project.id, route, [
        { name: 'production', upstream: 'worker', model: prod.name, weight: 1, modelId: prod.id },
      ]);
      await server.gateway?.databaseRoutes?.refresh();
      await models.ensure([{ name: prod.name, adapterPath: null }]);
      const chat = (chats: number, seed: number) =>
        simulateTraffic({
          baseUrl: url,
          apiKey: key,
          route,
          domain,
          population,
          chats,
          seed,
          concurrency: 2,
          maxTokens: s.maxTokens,
          sendSegment: true,
        });

      const before = await timed('traffic', () => chat(s.chats, s.seed + 1));
      if (before.errors) throw new Error(`${before.errors} chats failed: ${before.firstError}`);
      await server.logWriter.flush(); // the gateway writes its log in the background
      await calibrateProject(store, project.id);

      const hyperparameters = { learningRate: s.learningRate, epochs: s.epochs, batchSize: 8 };
      const dataset = { method: 'sft' as const, options: { minReward: s.minReward, minLower: -1 } };
      const training = { dataDir, env: trainEnv, actor: 'bench' };
      // The global model: one adapter on everyone's liked answers, merged into a full model so
      // that segment adapters can also be trained on top of it.
      const global = await timed('train_global', async () => {
        const version = await buildDatasetVersion(
          store,
          project.id,
          { name: `${route}-global-sft`, ...dataset },
          { dataDir },
        );
        const r = await startTrainingRun(
          store,
          project.id,
          {
            method: 'sft',
            baseModel: base,
            dataset: version.id,
            modelName: `${route}-global-r1`,
            route,
            hyperparameters,
            lora: { merge: true },
            seed: 1,
          },
          training,
        );
        const out = await runTraining(store, r.id, training);
        if (!out?.model?.adapterPath) throw new Error(`global training ${r.id} failed: ${out?.run.error}`);
        metrics.global_rows_count = version.rowCount;
        return out.model;
      });
      const step = (name: string, spec: Partial<PersonalizeSpecInput>) =>
        timed(name, () =>
          personalize(
            store,
            project.id,
            {
              route,
              baseModel: base,
              minRatings: s.minRatings,
              calibrate: false,
              dataset,
              training: { method: 'sft', hyperparameters },
              ...spec,
            },
            { dataDir, training, actor: 'bench', log: (l) => ctx.log(`personalize: ${l}`) },
          ),
        );
      // Segment adapters from the bare base (their segment's feedback is all they learn from),
      // then from the global model (they refine it for their segment): the latter are routed.
      const own = await step('personalize_from_base', { updateRoute: false });
      const stacked = await step('personalize_on_global', {
        baseModel: global.adapterPath!,
        training: { method: 'sft', hyperparameters, lora: { merge: true } },
      });
      await server.gateway?.databaseRoutes?.refresh();
      const modelOf = (r: PersonalizeResult, seg: string) => {
        const a = r.segments.find((x) => x.segment === seg);
        if (!a?.model) throw new Error(`segment ${seg} got no adapter: ${a?.skipped ?? 'no ratings'}`);
        metrics[`${seg}_ratings_count`] = a.ratings;
        metrics[`${seg}_rows_count`] = a.rows ?? 0;
        return a.model;
      };
      const compared = Object.fromEntries(
        segments.map((seg) => [seg, { own: modelOf(own, seg), stacked: modelOf(stacked, seg) }]),
      );
      await models.ensure([
        { name: prod.name, adapterPath: null },
        { name: global.name, adapterPath: global.adapterPath },
        ...Object.values(compared).flatMap((c) =>
          [c.own, c.stacked].map((m) => ({ name: m.name, adapterPath: m.adapterPath })),
        ),
      ]);

      const quality = await timed('measure', () =>
        measureSegmentQuality({
          baseUrl: models.baseUrl.replace(/\/v1$/, ''),
          domain,
          population,
          models: Object.fromEntries(
            segments.map((seg) => [
              seg,
              {
                base: prod.name,
                global: global.name,
                own: compared[seg]!.own.name,
                segment: compared[seg]!.stacked.name,
              },
            ]),
          ),
          prompts: s.evalPrompts,
          // Held out: neither the traffic (seed + 1) nor the routed check (seed + 2) drew these.
          seed: s.seed + 1000,
          maxTokens: s.maxTokens,
        }),
      );
      const gains: number[] = [];
      for (const seg of segments) {
        const q = quality[seg]!;
        const rate = (k: string) => q[k]!.trueQuality;
        metrics[`${seg}_true_quality_base_rate`] = round(rate('base'));
        metrics[`${seg}_true_quality_global_rate`] = round(rate('global'));
        metrics[`${seg}_true_quality_own_from_base_rate`] = round(rate('own'));
        metrics[`${seg}_true_quality_segment_rate`] = round(rate('segment'));
        metrics[`${seg}_gain_over_global_rate`] = round(rate('segment') - rate('global'));
        // Standard error of that difference as if the two samples were independent (they share
        // prompts, so this is conservative).
        const se = (p: number) => (p * (1 - p)) / s.evalPrompts;
        metrics[`${seg}_gain_se_rate`] = round(Math.sqrt(se(rate('segment')) + se(rate('global'))));
        metrics[`${seg}_own_from_base_gain_over_global_rate`] = round(rate('own') - rate('global'));
        gains.push(rate('segment') - rate('global'));
        ctx.log(
          `personalize: ${seg}: base ${pct(rate('base'))}, global ${pct(rate('global'))}, own adapter from base ${pct(rate('own'))}, segment adapter on global ${pct(rate('segment'))}`,
        );
      }
      metrics.min_gain_over_global_rate = round(Math.min(...gains));

      if (s.routedChats > 0) {
        const after = await timed('routed_traffic', () => chat(s.routedChats, s.seed + 2));
        const routed = Object.entries(after.variants);
        const bySegmentVariant = routed
          .filter(([v]) => v.startsWith('segment-'))
          .reduce((n, [, v]) => n + v.chats, 0);
        metrics.routed_to_segment_adapter_ratio = round(bySegmentVariant / Math.max(1, after.chats));
        for (const seg of segments)
          metrics[`${seg}_routed_true_quality_rate`] = round(after.segments[seg]?.trueQuality ?? 0);
      }
      metrics.total_s = round((Date.now() - started) / 1000, 1);
      const table = segments
        .map(
          (seg) =>
            `${seg} base ${pct(metrics[`${seg}_true_quality_base_rate`]!)}, global ${pct(metrics[`${seg}_true_quality_global_rate`]!)}, own from base ${pct(metrics[`${seg}_true_quality_own_from_base_rate`]!)}, on global ${pct(metrics[`${seg}_true_quality_segment_rate`]!)}`,
        )
        .join('; ');
      return {
        metrics,
        notes:
          `Tiny policy (${s.preset} preset). ${s.chats} simulated chats through the gateway (equal segments ${segments.join(', ')}, x-ratchet-segment sent), ` +
          `their ratings calibrated. Global: one sft adapter on everyone's liked answers (${metrics.global_rows_count} rows), merged. ` +
          `Per segment (personalize, the segment's liked answers only): an adapter from the base ("own from base") and one trained on the merged global model ("on global", routed). ` +
          `Same settings for all (sft, lr ${s.learningRate}, ${s.epochs} epochs, batch 8, LoRA r16 all-linear). True quality = share of answers the segment's people would like (oracle), ` +
          `${s.evalPrompts} held-out prompts per segment and model, temperature 0.8: ${table}. ` +
          `Phases (s): ${JSON.stringify(phases)}. One run, no repeats. Load before: ${loadBefore}; after: ${loadNote()}.`,
      };
    } finally {
      await server.close();
      await models.stop();
      await store.close();
    }
  },
};
