import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import {
  AugmentSpec,
  type BuiltDataset,
  CandidateColumns,
  type CandidateExample,
  type CandidateList,
  type CandidateView,
  type ChatMessage,
  type CuratedDatasetInputs,
  CurationConfig,
  curateDatasetInputs,
  type DatasetBuilder,
  datasetBuilders,
  datasetMethods,
  excludeFlaggedRaters,
  findDuplicates,
  lineageFeedbackIds,
  lineageJson,
  newId,
  type PairwiseComparison,
  pairwiseEvidence,
  pairwiseFeedbackKinds,
  parseInput,
  RatchetError,
  type RowLineage,
  rowJson,
  Tag,
  withoutFlaggedRaters,
} from '@ratchet/core';
import type { DatasetVersion, Store } from '@ratchet/store';
import { z } from 'zod';
import { type AugmentationSummary, augmentBuiltDataset } from './augment/dataset.js';

export { type DatasetMethod, datasetMethods } from '@ratchet/core';

export const DatasetBuildSpec = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(100)
    .regex(/^[a-z0-9][a-z0-9._-]*$/, 'must be lower-case letters, digits, dot, dash or underscore'),
  method: z.enum(datasetMethods),
  /** The method's builder options (see SftSpec, KtoSpec, DpoSpec, RwsftSpec in core). */
  options: z.record(z.string(), z.unknown()).default({}),
  /** Curation before building; `false` turns it off. */
  curation: z.union([z.literal(false), CurationConfig]).prefault({}),
  /** Segment rows by the first tag with this prefix (e.g. `plan:`), for balancing. */
  segmentTagPrefix: z.string().optional(),
  /**
   * Only the interactions of one segment (those tagged `tag`, e.g. `segment:busy`, which the
   * gateway adds for `x-ratchet-segment: busy`): a per-segment adapter learns from its own
   * users' feedback. Pairwise evidence about other interactions is left out with them.
   */
  segment: z.strictObject({ tag: Tag }).optional(),
  /**
   * Answers to prompts at least this similar (Jaccard of their word sets) count as answers to one
   * prompt: preference pairs form across them and the train/test split keeps them together. Real
   * users rarely send byte-identical prompts ("refund for order A1042" / "... B3307"), so without
   * this DPO and reward datasets find few pairs. Off by default: exact prompts only.
   */
  groupSimilarPrompts: z.number().min(0.3).max(1).optional(),
  /**
   * More train rows for under-represented segments or prompts: the prompt reworded by EDA or a
   * model's paraphrase (see AugmentSpec in core); the manifest counts them and each added row's
   * lineage names its source row and the method.
   */
  augment: AugmentSpec.optional(),
});
export type DatasetBuildSpec = z.input<typeof DatasetBuildSpec>;

/** What dataset builds read from the store; load once to build several versions from it. */
export interface DatasetInputs {
  calibrationId: string;
  /**
   * Every rated interaction (and every one only pairwise evidence speaks about) as columns, texts
   * as JSON text: at 10 million calls candidate objects with parsed conversations would not fit
   * in memory, and a build that reads no text (curation off) parses none.
   */
  candidates: CandidateColumns;
  /** Every current correction, preference and ranking; builds leave out the flagged raters'. */
  comparisons: PairwiseComparison[];
  /** Raters the calibration flagged (id -> reason): their pairwise evidence trains nothing. */
  flaggedRaters: Map<string, string | null>;
}

/** Rated interactions of the latest calibration, plus the pairwise evidence and the texts it needs. */
export async function loadDatasetInputs(store: Store, projectId: string): Promise<DatasetInputs> {
  const calibration = await store.calibration.latestRun(projectId);
  if (!calibration)
    throw new RatchetError(
      'conflict',
      "no calibration yet: calibrate the project's ratings first (ratchet raters calibrate)",
    );
  const candidates = new CandidateColumns();
  const shared = promptSharer();
  for await (const page of store.datasets.ratedInteractionTexts(projectId)) {
    for (const r of page) {
      const prompt = shared(r.promptHash, r.messagesJson);
      candidates.push({
        interactionId: r.interactionId,
        promptHash: prompt.hash,
        prompt: prompt.text,
        completion: r.outputJson,
        model: r.model,
        reward: r.reward,
        lower: r.lower,
        upper: r.upper,
        n: r.n,
        weight: 1,
        createdAt: r.createdAt,
        tags: r.tags,
        feedbackIds: r.feedbackIds,
      });
    }
  }
  const comparisons = pairwiseEvidence(await store.feedback.currentOfKinds(projectId, pairwiseFeedbackKinds));
  const flaggedRaters = await store.raters.flagged(projectId);
  // Interactions that only pairwise evidence speaks about still need their text (not when only a
  // flagged rater speaks about them: that evidence is left out of every build).
  // (A set of every candidate only when there is pairwise evidence: a million ids otherwise.)
  const { trusted } = excludeFlaggedRaters(comparisons, flaggedRaters);
  const known = new Set(
    trusted.length ? Array.from({ length: candidates.length }, (_, i) => candidates.interactionId(i)) : [],
  );
  const missing = [
    ...new Set(trusted.flatMap((c) => [c.winner.interactionId, c.loser.interactionId])),
  ].filter((id) => !known.has(id));
  for (const i of await store.interactions.getMany(projectId, missing)) {
    candidates.push({
      interactionId: i.id,
      promptHash: i.promptHash,
      prompt: JSON.stringify(i.messages),
      completion: JSON.stringify(i.output),
      model: i.model,
      reward: null,
      lower: null,
      upper: null,
      n: 0,
      weight: 1,
      createdAt: i.createdAt,
      tags: i.tags,
      feedbackIds: [],
    });
  }
  return { calibrationId: calibration.id, candidates, comparisons, flaggedRaters };
}

/**
 * Answers to one prompt share one copy of its hash and its text: a build holds a popular prompt
 * once rather than once per answer (50,000 prompts for a million answers in the scale bench).
 * Only while the answers' text is the text remembered for the hash (it always is, the hash is of
 * the messages; a different text keeps its own). At most `limit` prompts are remembered; then
 * it starts again, so a history of distinct prompts costs a bounded map, not one entry each.
 */
function promptSharer(limit = 100_000) {
  let seen = new Map<string, { hash: string; text: string }>();
  return (hash: string, text: string): { hash: string; text: string } => {
    const known = seen.get(hash);
    if (known !== undefined) return known.text === text ? known : { hash: known.hash, text };
    if (seen.size >= limit) seen = new Map();
    const entry = { hash, text };
    seen.set(hash, entry);
    return entry;
  };
}

/**
 * The candidates with their texts parsed, for what reads them (curation, prompt grouping,
 * augmentation). Answers to one prompt that follow each other share its parsed messages
 * (read-only: curation makes new messages where it changes them).
 */
function parsedCandidates(candidates: CandidateView): ParsedCandidate[] {
  let lastText = '';
  let lastPrompt: ChatMessage[] = [];
  return Array.from({ length: candidates.length }, (_, i) => {
    const c = candidates.at(i);
    if (c.prompt !== lastText) {
      lastPrompt = JSON.parse(c.prompt);
      lastText = c.prompt;
    }
    return { ...c, prompt: lastPrompt, completion: JSON.parse(c.completion) as ChatMessage };
  });
}

/** Gives answers to near-identical prompts one prompt group (the group's first prompt hash). */
export function groupSimilarPrompts<C extends CandidateExample>(candidates: C[], threshold: number): C[] {
  const text = (c: C) =>
    c.prompt
      .filter((m) => m.role === 'user')
      .map((m) => (typeof m.content === 'string' ? m.content : JSON.stringify(m.content)))
      .join('\n');
  const { representative } = findDuplicates(candidates.map(text), { threshold, shingleSize: 1 });
  return candidates.map((c, i) => {
    const lead = candidates[representative[i]!]!;
    return lead.promptHash === c.promptHash ? c : { ...c, promptHash: lead.promptHash };
  });
}

/**
 * The split of every interaction the rows use, and how many distinct feedback events they came
 * from. A feedback event is about one interaction (a preference about its pair), and a row lists
 * only events about its own interactions, each once; so only rows that share an interaction with
 * another row can repeat an event, and only their events need a set (millions of ids otherwise).
 */
export function lineageCounts(lineage: readonly RowLineage[]): {
  membership: Map<string, 'train' | 'test'>;
  feedbackEvents: number;
} {
  const membership = new Map<string, 'train' | 'test'>();
  const shared = new Set<string>();
  for (const l of lineage)
    for (const id of l.interactionIds) {
      const before = membership.size;
      membership.set(id, l.split);
      if (membership.size === before) shared.add(id);
    }
  let unshared = 0;
  const events = new Set<string>();
  for (const l of lineage) {
    if (shared.size > 0 && l.interactionIds.some((id) => shared.has(id)))
      for (const id of lineageFeedbackIds(l)) events.add(id);
    else unshared += feedbackIdCount(l.feedbackIds);
  }
  return { membership, feedbackEvents: unshared + events.size };
}

/** How many ids a lineage entry lists, without splitting a joined string. */
function feedbackIdCount(ids: string[] | string): number {
  if (typeof ids !== 'string') return ids.length;
  if (ids === '') return 0;
  let n = 1;
  for (let at = ids.indexOf(','); at !== -1; at = ids.indexOf(',', at + 1)) n++;
  return n;
}

/**
 * Writes rows as JSON lines in ~1 MB chunks; returns the file's sha256 when `hashed` (the rows'
 * content hash; lineage files are as large and need none).
 */
async function writeJsonl(
  path: string,
  rows: readonly unknown[],
  hashed = false,
  line: (row: never) => string = JSON.stringify,
): Promise<string> {
  const hash = hashed ? createHash('sha256') : null;
  const out = createWriteStream(path);
  const flush = async (chunk: string) => {
    hash?.update(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  };
  let chunk = '';
  for (const row of rows) {
    chunk += `${line(row as never)}\n`;
    if (chunk.length >= 1 << 20) {
      await flush(chunk);
      chunk = '';
    }
  }
  if (chunk) await flush(chunk);
  await new Promise<void>((res, rej) => out.end((err?: Error) => (err ? rej(err) : res())));
  return hash?.digest('hex') ?? '';
}

type ParsedCandidate = CandidateExample & { tags: string[] };

interface Built {
  built: BuiltDataset<unknown>;
  /** Curation's drops and changes, and their counts (flagged raters' evidence only, when off). */
  curated: Omit<CuratedDatasetInputs<never>, 'comparisons' | 'candidates'>;
  /** Candidates the build started from (after prompt grouping), and those curation kept. */
  candidates: number;
  kept: number;
  augmentation?: AugmentationSummary;
}

/** Curation off, no grouping, no augmentation: the builder over the columns, nothing parsed. */
function buildFromText(
  spec: z.output<typeof DatasetBuildSpec>,
  candidates: CandidateView,
  inputs: DatasetInputs,
  options: BuildDatasetOptions,
): Built {
  options.onProgress?.('candidates', {
    candidates: candidates.length,
    comparisons: inputs.comparisons.length,
  });
  // Flagged raters' corrections and preferences out, as curateDatasetInputs does with curation off.
  const { comparisons, decisions, counts } = withoutFlaggedRaters(inputs.comparisons, inputs.flaggedRaters);
  options.onProgress?.('curate', { kept: candidates.length });
  const built = runBuilder(spec, candidates, comparisons);
  return { built, curated: { decisions, counts }, candidates: candidates.length, kept: candidates.length };
}

/** What reads the texts (curation, prompt grouping, augmentation), over parsed candidates. */
async function buildFromParsed(
  spec: z.output<typeof DatasetBuildSpec>,
  segmented: ParsedCandidate[],
  inputs: DatasetInputs,
  options: BuildDatasetOptions,
): Promise<Built> {
  const candidates =
    spec.groupSimilarPrompts === undefined
      ? segmented
      : groupSimilarPrompts(segmented, spec.groupSimilarPrompts);
  const { comparisons } = inputs;
  options.onProgress?.('candidates', { candidates: candidates.length, comparisons: comparisons.length });
  // Interactions and the corrections about them through the same filters; flagged raters'
  // corrections and preferences out, with curation on or off.
  const curated = await curateDatasetInputs(candidates, comparisons, spec.curation, {
    flaggedRaters: inputs.flaggedRaters,
  });
  const kept = curated.candidates;
  options.onProgress?.('curate', { kept: kept.length });
  let built = runBuilder(spec, kept, curated.comparisons);
  let augmentation: AugmentationSummary | undefined;
  if (spec.augment) {
    if (spec.augment.by === 'segment' && spec.segmentTagPrefix === undefined)
      throw new RatchetError(
        'invalid_request',
        'augment.by: segment needs segmentTagPrefix (or augment by prompt)',
        'augment.by',
      );
    const segments = new Map(kept.map((c) => [c.interactionId, c.segment]));
    ({ built, summary: augmentation } = await augmentBuiltDataset(built, spec.augment, (id) =>
      segments.get(id),
    ));
  }
  return {
    built,
    curated,
    candidates: candidates.length,
    kept: kept.length,
    ...(augmentation ? { augmentation } : {}),
  };
}

/** The method's builder; its options' errors as a 400 naming the option. */
function runBuilder<P, M>(
  spec: z.output<typeof DatasetBuildSpec>,
  candidates: CandidateExample<P, M>[] | CandidateList<P, M>,
  comparisons: readonly PairwiseComparison[],
): BuiltDataset<unknown> {
  const builder: DatasetBuilder = datasetBuilders[spec.method];
  try {
    return builder.build(candidates, comparisons, spec.options);
  } catch (err) {
    if (err instanceof z.ZodError)
      throw new RatchetError(
        'invalid_request',
        `options: ${err.issues[0]?.path.join('.')}: ${err.issues[0]?.message}`,
        'options',
      );
    throw err;
  }
}

export interface BuildDatasetOptions {
  /** Root folder for dataset files (RATCHET_DATA_DIR, default .ratchet/data). */
  dataDir?: string;
  /** Inputs loaded by loadDatasetInputs, to build several versions from one read. */
  inputs?: DatasetInputs;
  onProgress?: (stage: 'candidates' | 'curate' | 'build' | 'write', detail: Record<string, number>) => void;
}

/**
 * Builds an immutable dataset version from the latest calibration: rows as TRL JSONL, lineage
 * beside them, a manifest with the spec, content hash and counts. Files are written to a temporary
 * folder and renamed into place, then recorded; a failure leaves nothing behind.
 */
export async function buildDatasetVersion(
  store: Store,
  projectId: string,
  specInput: DatasetBuildSpec,
  options: BuildDatasetOptions = {},
): Promise<DatasetVersion> {
  const spec = parseInput(DatasetBuildSpec, specInput);
  const inputs = options.inputs ?? (await loadDatasetInputs(store, projectId));
  const tag = spec.segment?.tag;
  const every = inputs.candidates.all();
  const ofSegment = tag === undefined ? every : every.select((i: number) => every.tags(i).includes(tag));
  // Each candidate's segment for balancing: its first tag with the prefix.
  const segmented =
    spec.segmentTagPrefix === undefined ? ofSegment : ofSegment.withSegments(spec.segmentTagPrefix);
  const { comparisons } = inputs;
  // Curation, prompt grouping and augmentation read the texts: they get the candidates parsed (the
  // slower, larger path every build took before). Any other build moves the JSON text into rows
  // as it is and writes them with rowJson, the same bytes without parsing a message.
  const readsText =
    spec.curation !== false || spec.groupSimilarPrompts !== undefined || spec.augment !== undefined;
  const { built, curated, candidates, kept, augmentation } = readsText
    ? await buildFromParsed(spec, parsedCandidates(segmented), inputs, options)
    : buildFromText(spec, segmented, inputs, options);
  const rowLine: (row: never) => string = readsText ? JSON.stringify : rowJson;
  options.onProgress?.('build', { rows: built.rows.length });
  if (built.rows.length === 0)
    throw new RatchetError(
      'conflict',
      `the ${spec.method} builder produced no rows from ${kept} candidates; loosen its options or collect more ratings`,
    );

  return oneBuildAtATime(`${projectId}\u0000${spec.name}`, async () => {
    const version = await store.datasets.nextVersion(projectId, spec.name);
    const root = resolve(options.dataDir ?? process.env.RATCHET_DATA_DIR ?? '.ratchet/data');
    let folder = join(root, 'datasets', projectId, spec.name, `v${version}`);
    const staging = `${folder}.tmp-${process.pid}-${newId()}`;
    mkdirSync(staging, { recursive: true });
    try {
      // Each of the build's arrays is let go once written, so that the rows (a million objects at
      // 10M calls) are not held beside the membership map, nor the lineage beside the insert.
      const rowCount = built.rows.length;
      const contentHash = await writeJsonl(join(staging, 'rows.jsonl'), built.rows, true, rowLine);
      built.rows = [];
      const { membership, feedbackEvents } = lineageCounts(built.lineage);
      await writeJsonl(join(staging, 'lineage.jsonl'), built.lineage, false, lineageJson);
      built.lineage = [];
      // Every interaction and feedback event curation dropped or changed, with filter and reason.
      await writeJsonl(join(staging, 'curation.jsonl'), curated.decisions);
      const manifest = {
        name: spec.name,
        version,
        method: spec.method,
        format: 'trl-conversational',
        contentHash,
        rowCount,
        splits: { train: built.stats.train_rows ?? 0, test: built.stats.test_rows ?? 0 },
        stats: built.stats,
        curation: curated.counts.interactions,
        feedbackCuration: curated.counts.feedback,
        candidates,
        comparisons: comparisons.length,
        calibrationId: inputs.calibrationId,
        interactions: membership.size,
        feedbackEvents,
        ...(augmentation ? { augmentation } : {}),
        spec,
      };
      await writeJsonl(join(staging, 'manifest.json'), [manifest]);
      mkdirSync(dirname(folder), { recursive: true });
      folder = moveIntoPlace(staging, folder);
      options.onProgress?.('write', { rows: rowCount });
      try {
        return await store.datasets.insertVersion(
          {
            projectId,
            name: spec.name,
            version,
            method: spec.method,
            spec,
            contentHash,
            rowCount,
            manifest,
            path: folder,
            calibrationId: inputs.calibrationId,
          },
          membership,
        );
      } catch (err) {
        rmSync(folder, { recursive: true, force: true });
        throw err;
      }
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  });
}

/**
 * Builds of one dataset name in this process take their turns from reading the next version to
 * recording it, so two concurrent requests get versions N and N+1. Builds in other processes
 * (another server, the CLI) are not serialized: the unique (project, name, version) lets one
 * record version N and the other fails with a 409 `conflict` naming the dataset.
 */
const buildsInProgress = new Map<string, Promise<unknown>>();
async function oneBuildAtATime<T>(key: string, build: () => Promise<T>): Promise<T> {
  const previous = buildsInProgress.get(key) ?? Promise.resolve();
  const run = previous.then(build, build);
  const settled = run.catch(() => undefined);
  buildsInProgress.set(key, settled);
  try {
    return await run;
  } finally {
    if (buildsInProgress.get(key) === settled) buildsInProgress.delete(key);
  }
}

/**
 * Renames the staged files to `folder`, or, when that exists (another process building the same
 * version, or files left by a build that died before recording them), to a folder of its own
 * beside it: the database row holds the path, and only the row decides which version is real.
 */
function moveIntoPlace(staging: string, folder: string): string {
  try {
    renameSync(staging, folder);
    return folder;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    const own = `${folder}-${newId()}`;
    renameSync(staging, own);
    return own;
  }
}
