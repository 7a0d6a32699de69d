import { parseInput, RatchetError, TrainHyperparameters, TrainLora, trainingMethods } from '@ratchet/core';
import { type Model, type Store, type StoredVariant, segmentVariants } from '@ratchet/store';
import { z } from 'zod';
import { calibrateProject } from '../calibrate.js';
import { buildDatasetVersion, type DatasetInputs, datasetMethods, loadDatasetInputs } from '../datasets.js';
import type { ServedModel } from '../orchestrator/model-server.js';
import { runTraining, startTrainingRun, type TrainingOptions } from '../training/runs.js';

const SegmentName = z
  .string()
  .min(1)
  .max(60)
  .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, dot, dash or underscore only');

/**
 * Personalization of one route: which segments get their own adapter, what each trains on and
 * how, and how much of the segment's traffic the adapter gets. A segment is the calls tagged
 * `<tagPrefix><segment>` (the gateway tags `x-ratchet-segment: busy` as `segment:busy`).
 */
export const PersonalizeSpec = z.strictObject({
  route: z.string().min(1).max(200),
  /** The model folder every segment adapter is trained from (the base, or a merged production model). */
  baseModel: z.string().min(1),
  /** The gateway upstream that serves the adapters. */
  upstream: z.string().min(1).default('worker'),
  /** The segments to personalize; default: every segment tag found among rated interactions. */
  segments: z.array(SegmentName).min(1).optional(),
  tagPrefix: z.string().min(1).max(40).default('segment:'),
  /** A segment gets an adapter only with at least this many calibrated ratings of its own. */
  minRatings: z.number().int().min(1).default(60),
  /** Recalibrate first, so the datasets see the latest feedback (off when the loop just did). */
  calibrate: z.boolean().default(true),
  dataset: z
    .strictObject({
      method: z.enum(datasetMethods).default('sft'),
      options: z.record(z.string(), z.unknown()).default({}),
      curation: z.union([z.literal(false), z.record(z.string(), z.unknown())]).optional(),
      groupSimilarPrompts: z.number().min(0.3).max(1).optional(),
    })
    .prefault({}),
  training: z
    .strictObject({
      method: z.enum(trainingMethods).default('sft'),
      hyperparameters: TrainHyperparameters.prefault({}),
      lora: TrainLora.prefault({}),
      methodConfig: z.record(z.string(), z.unknown()).default({}),
      seed: z.number().int().min(0).default(0),
    })
    .prefault({}),
  /**
   * Share of the segment's calls its adapter gets; the rest stay on the global model through a
   * second segment variant (a per-segment canary whose thumbs the variant names keep apart).
   */
  share: z.number().gt(0).max(1).default(1),
  /** Write the route's segment variants (off: train and register only). */
  updateRoute: z.boolean().default(true),
});
export type PersonalizeSpec = z.output<typeof PersonalizeSpec>;
export type PersonalizeSpecInput = z.input<typeof PersonalizeSpec>;

export interface PersonalizeOptions {
  dataDir?: string;
  training?: TrainingOptions;
  actor?: string;
  log?: (line: string) => void;
}

export interface SegmentOutcome {
  segment: string;
  tag: string;
  /** Calibrated ratings of the segment's calls. */
  ratings: number;
  /** Why the segment got no adapter, when it got none. */
  skipped?: string;
  datasetId?: string;
  rows?: number;
  runId?: string;
  /** The registered adapter, `<route>-<segment>-rN`, its registry route `<route>:<segment>`. */
  model?: Model;
}

export interface PersonalizeResult {
  route: string;
  segments: SegmentOutcome[];
  /** The route's variants after the step (unchanged when nothing was trained or routing is off). */
  variants: StoredVariant[];
}

/**
 * The models the route's segment variants name, for the model server: whoever restarts
 * `ratchet-worker serve` with a new set of adapters (the loop's `serve`) must keep these in it,
 * or the segments' calls fail at the worker.
 */
export async function segmentModelsToServe(
  store: Store,
  projectId: string,
  route: string,
): Promise<ServedModel[]> {
  const variants = segmentVariants((await store.routes.get(projectId, route))?.variants);
  const out = new Map<string, ServedModel>();
  for (const v of variants) {
    const m = await store.models.get(projectId, v.modelId ?? v.model);
    if (m) out.set(m.name, { name: m.name, adapterPath: m.adapterPath });
  }
  return [...out.values()];
}

const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9._-]/g, '-');

/** The registry route of a segment's adapters: promotions and rollbacks stay within the segment. */
export const segmentModelRoute = (route: string, segment: string) => `${route}:${segment}`;

/** Calibrated ratings per segment tag, among the rated interactions the datasets are built from. */
export function ratingsBySegment(inputs: DatasetInputs, tagPrefix: string): Map<string, number> {
  const counts = new Map<string, number>();
  const candidates = inputs.candidates;
  for (let i = 0; i < candidates.length; i++) {
    if (candidates.reward(i) === null) continue;
    for (const t of candidates.tags(i))
      if (t.startsWith(tagPrefix)) {
        const segment = t.slice(tagPrefix.length);
        counts.set(segment, (counts.get(segment) ?? 0) + 1);
      }
  }
  return counts;
}

async function trainSegment(
  store: Store,
  projectId: string,
  spec: PersonalizeSpec,
  outcome: SegmentOutcome,
  inputs: DatasetInputs,
  o: PersonalizeOptions,
): Promise<void> {
  const dataset = await buildDatasetVersion(
    store,
    projectId,
    {
      name: slug(`${spec.route}-${outcome.segment}-${spec.dataset.method}`),
      method: spec.dataset.method,
      options: spec.dataset.options,
      segment: { tag: outcome.tag },
      ...(spec.dataset.curation !== undefined ? { curation: spec.dataset.curation } : {}),
      ...(spec.dataset.groupSimilarPrompts !== undefined
        ? { groupSimilarPrompts: spec.dataset.groupSimilarPrompts }
        : {}),
    },
    { dataDir: o.dataDir, inputs },
  );
  outcome.datasetId = dataset.id;
  outcome.rows = dataset.rowCount;
  const modelRoute = segmentModelRoute(spec.route, outcome.segment);
  const round = (await store.models.list(projectId, { route: modelRoute })).length + 1;
  const options = { dataDir: o.dataDir, actor: o.actor ?? 'personalize', ...o.training };
  const run = await startTrainingRun(
    store,
    projectId,
    {
      method: spec.training.method,
      baseModel: spec.baseModel,
      dataset: dataset.id,
      modelName: `${spec.route}-${outcome.segment}-r${round}`,
      route: modelRoute,
      hyperparameters: spec.training.hyperparameters,
      lora: spec.training.lora,
      methodConfig: spec.training.methodConfig,
      seed: spec.training.seed + round,
    },
    options,
  );
  const trained = await runTraining(store, run.id, options);
  if (!trained?.model)
    throw new Error(
      `segment ${outcome.segment}: training run ${run.id} ended ${trained?.run.status ?? 'unclaimed'}: ${trained?.run.error ?? ''}`,
    );
  outcome.runId = run.id;
  outcome.model = trained.model;
}

/**
 * The route's variants with each trained segment's adapter in place of its previous one: the
 * adapter at `share` of the segment's calls, the global model (the route's variants without a
 * segment) at the rest. Variants of other segments and the global ones stay as they are.
 */
export function withSegmentVariants(
  current: readonly StoredVariant[],
  trained: readonly { segment: string; tag: string; model: Model }[],
  spec: Pick<PersonalizeSpec, 'upstream' | 'share'>,
): StoredVariant[] {
  const tags = new Set(trained.map((t) => t.tag));
  const kept = current.filter((v) => !(v.segment && 'tag' in v.segment && tags.has(v.segment.tag)));
  const global = current.find((v) => !v.segment && v.weight > 0);
  const added = trained.flatMap(({ segment, tag, model }): StoredVariant[] => {
    const adapter: StoredVariant = {
      name: `segment-${segment}`,
      upstream: spec.upstream,
      model: model.name,
      weight: spec.share,
      modelId: model.id,
      segment: { tag },
    };
    if (spec.share >= 1 || !global) return [{ ...adapter, weight: 1 }];
    return [
      adapter,
      { ...global, name: `segment-${segment}-global`, weight: 1 - spec.share, segment: { tag } },
    ];
  });
  return [...kept, ...added];
}

/**
 * The personalize step: for each segment with enough calibrated feedback of its own, build a
 * dataset from that segment's calls only, train an adapter, register it as `<route>-<segment>-rN`,
 * and route the segment's calls to it (the others keep the global model). Segments without
 * enough feedback are reported and left on the global model.
 */
export async function personalize(
  store: Store,
  projectId: string,
  input: PersonalizeSpecInput,
  o: PersonalizeOptions = {},
): Promise<PersonalizeResult> {
  const spec = parseInput(PersonalizeSpec, input);
  if (spec.calibrate) await calibrateProject(store, projectId);
  const inputs = await loadDatasetInputs(store, projectId);
  const counts = ratingsBySegment(inputs, spec.tagPrefix);
  const names = spec.segments ?? [...counts.keys()].sort();
  if (names.length === 0)
    throw new RatchetError(
      'conflict',
      `no rated calls carry a "${spec.tagPrefix}..." tag: send x-ratchet-segment with calls to personalize them`,
      'segments',
    );
  const segments: SegmentOutcome[] = [];
  for (const segment of names) {
    const outcome: SegmentOutcome = {
      segment,
      tag: `${spec.tagPrefix}${segment}`,
      ratings: counts.get(segment) ?? 0,
    };
    segments.push(outcome);
    if (outcome.ratings < spec.minRatings) {
      outcome.skipped = `${outcome.ratings} ratings, fewer than ${spec.minRatings}`;
      o.log?.(`${segment}: stays on the global model (${outcome.skipped})`);
      continue;
    }
    try {
      await trainSegment(store, projectId, spec, outcome, inputs, o);
    } catch (err) {
      // Ratings enough, but none the method can use (e.g. no liked answer for sft): not an error.
      const why = err instanceof Error ? err.message : String(err);
      if (!/produced no rows/.test(why)) throw err;
      outcome.skipped = why;
      o.log?.(`${segment}: stays on the global model (${why})`);
      continue;
    }
    o.log?.(
      `${segment}: trained ${outcome.model!.name} on ${outcome.rows} rows from ${outcome.ratings} ratings`,
    );
  }
  const trained = segments.flatMap((s) =>
    s.model ? [{ segment: s.segment, tag: s.tag, model: s.model }] : [],
  );
  const current = (await store.routes.get(projectId, spec.route))?.variants ?? [];
  if (!spec.updateRoute || trained.length === 0) return { route: spec.route, segments, variants: current };
  const variants = withSegmentVariants(current, trained, spec);
  await store.routes.transaction(async (trx) => {
    await store.routes.put(projectId, spec.route, variants, trx);
    await store.audit.record(
      {
        projectId,
        actor: o.actor ?? 'personalize',
        action: 'route.updated',
        subjectType: 'route',
        subjectId: spec.route,
        details: { variants, personalized: trained.map((t) => t.segment) },
      },
      trx,
    );
  });
  o.log?.(`${spec.route}: ${trained.map((t) => `${t.tag} -> ${t.model.name}`).join(', ')}`);
  return { route: spec.route, segments, variants };
}
