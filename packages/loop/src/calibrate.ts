import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import {
  type CalibrationOptionsInput,
  type CalibrationSnapshot,
  calibrationSnapshotParts,
  decodeCalibrationSnapshot,
  type NewRatings,
  newId,
  normalizeFeedback,
  type PreviousCalibration,
  type Recalibration,
  RecalibrationPolicy,
  type RecalibrationPolicyInput,
  RewardMapping,
  type RewardMappingInput,
  recalibrateColumnsWithSnapshot,
  recalibrateSnapshot,
} from '@ratchet/core';
import type { CalibrationRun, ItemRewardColumns, ScalarRatingRow, Store } from '@ratchet/store';
import {
  type CalibrationReference,
  type ReferenceFlag,
  screenWithWordReference,
  withoutRaters,
} from './calibration-reference.js';
import { GrowableColumns, IdIndex } from './growable.js';

export { type CalibrationReference, calibrationReferences } from './calibration-reference.js';

export interface CalibrateProjectOptions {
  mapping?: RewardMappingInput;
  calibration?: CalibrationOptionsInput;
  /** When to refit everything instead of only what new ratings touch; `false` always refits fully. */
  recalibration?: RecalibrationPolicyInput | false;
  /**
   * Folder (RATCHET_DATA_DIR) in which the last run's snapshot is kept as a file, so that a later
   * process, or this one after a restart, reads only the ratings since. Default: RATCHET_DATA_DIR
   * when set; without either the snapshot lives in this process only.
   */
  dataDir?: string;
  /**
   * `words`: raters are first judged against a word model of what the other raters liked (see
   * screenWithWordReference), so those who rate the opposite of what people like are flagged
   * where nobody else rated their answers; the rewards are then fitted without them. Reads every
   * rated answer's text and refits fully each run (no snapshot is kept).
   */
  reference?: CalibrationReference;
  /** Called as ratings are read and after each stage, for progress bars and job status. */
  onProgress?: (event: { stage: 'read' | 'fit' | 'save'; ratings: number }) => void;
}

export interface CalibrationSummary {
  run: CalibrationRun;
  ratings: number;
  skipped: number;
  raters: number;
  flagged: number;
  items: number;
  /** incremental: started from the previous run and rewrote only `rewardsWritten` rewards. */
  mode: 'full' | 'incremental';
  /** Read only the ratings received since the previous run (its snapshot was kept in this process or its file). */
  fromSnapshot: boolean;
  /** Why a full refit ran. */
  reason: string;
  rewardsWritten: number;
  /** Ratings the reference screen added (one per rated answer; 0 without one). */
  referenceRatings: number;
  /** Raters the reference screen flagged (counted in `flagged` too). */
  flaggedByReference: number;
  /**
   * Wall time of each part. The save's two halves run side by side: `store` (the run's rows in one
   * transaction) and `snapshotFile` (the kept snapshot written to the data folder; 0 without one).
   */
  seconds: { read: number; fit: number; save: number; store: number; snapshotFile: number };
}

/**
 * Calibrates a project's current ratings: reads them page by page from the store, maps each to
 * a reward, fits the rater model on typed columns, and stores rater states and item rewards.
 * When this process ran the project's previous calibration, only the ratings received since are
 * read and fitted from its snapshot (see keptSince).
 */
export async function calibrateProject(
  store: Store,
  projectId: string,
  options: CalibrateProjectOptions = {},
): Promise<CalibrationSummary> {
  const mapping = RewardMapping.parse(options.mapping ?? {});
  const scoreConfigs = await store.scoreConfigs.byName(projectId);
  // Raters are users unless recorded otherwise; AI labels (judge) weigh less, per the mapping.
  const sources = await store.raters.nonUserSources(projectId);
  const sourceWeight = (raterId: string) =>
    mapping.sourceWeight[(sources.get(raterId) ?? 'user') as keyof RewardMapping['sourceWeight']] ?? 1;

  const context = { scoreConfigs, mapping };
  const useReference = options.reference === 'words';
  const runOptions = {
    mapping,
    calibration: options.calibration ?? {},
    ...(useReference ? { reference: options.reference } : {}),
  };
  // The reference is refitted on every run, so each run refits fully from all ratings.
  const previousRun =
    options.recalibration === false || useReference
      ? undefined
      : await store.calibration.latestRun(projectId);
  const toRow = (
    row: ScalarRatingRow,
    into: { items: IdIndex; raters: IdIndex; columns: GrowableColumns },
  ) => {
    const outcome = normalizeFeedback(row, context);
    const weight = outcome.reward === null ? 0 : outcome.weight * sourceWeight(row.raterId);
    if (outcome.reward === null || weight <= 0) return false;
    into.columns.push(
      into.items.of(row.interactionId),
      into.raters.of(row.raterId),
      outcome.reward,
      weight,
      row.kind === 'thumbs',
    );
    return true;
  };
  // Ratings received from here on are new to the next run (a rating received while this one reads
  // may be read now and again next time, which only refits it once more).
  const readStartedAt = Date.now();
  const t0 = performance.now();
  const policy = options.recalibration || {};
  const snapshotDir = options.dataDir ?? process.env.RATCHET_DATA_DIR;
  const snapshotPath = snapshotDir ? snapshotFile(snapshotDir, projectId) : null;
  const keptRun = useReference
    ? await dropKept(store, projectId, snapshotPath)
    : await keptSince(store, projectId, previousRun, runOptions, snapshotPath);
  let referenceRatings = 0;
  let flaggedByReference: ReferenceFlag[] = [];
  let read: {
    items: IdIndex;
    raters: IdIndex;
    ratings: number;
    skipped: number;
    result: Recalibration;
    snapshot: CalibrationSnapshot;
    reason: string;
    incrementalRuns?: number;
    /** What the store holds now, when known (the kept snapshot's record), and the items with new ratings. */
    stored?: { columns: StoredRewards; fresh: Uint8Array };
  };
  let t1: number;
  if (keptRun) {
    // Only the ratings since: appended to the kept snapshot, indices continuing its own.
    const { kept, received } = keptRun;
    const columns = new GrowableColumns();
    let skipped = kept.skipped;
    for (const row of received)
      if (!toRow(row, { items: kept.items, raters: kept.raters, columns })) skipped++;
    options.onProgress?.({ stage: 'read', ratings: kept.ratings + columns.length });
    t1 = performance.now();
    const added = {
      ...columns.trimmed(),
      itemCount: kept.items.ids.length,
      raterCount: kept.raters.ids.length,
    };
    const step = recalibrateSnapshot(kept.snapshot, added, options.calibration, policy);
    const fresh = new Uint8Array(added.itemCount);
    for (const i of added.item) fresh[i] = 1;
    read = {
      stored: { columns: kept.stored, fresh },
      items: kept.items,
      raters: kept.raters,
      ratings: kept.ratings + columns.length,
      skipped,
      ...step,
      reason: step.result.reason,
      incrementalRuns: kept.snapshot.incrementalRuns,
    };
  } else {
    const all = { items: new IdIndex(), raters: new IdIndex(), columns: new GrowableColumns() };
    let skipped = 0;
    for await (const page of store.calibration.currentScalarRatings(projectId)) {
      for (const row of page) if (!toRow(row, all)) skipped++;
      options.onProgress?.({ stage: 'read', ratings: all.columns.length });
    }
    let fitted = all;
    if (useReference) {
      const screen = await screenWithWordReference(store, projectId, all, options.calibration);
      referenceRatings = screen.referenceRatings;
      flaggedByReference = screen.flagged;
      fitted = withoutRaters(all, new Set(screen.flagged.map((f) => f.raterId)));
    }
    const { items, raters, columns } = fitted;
    t1 = performance.now();
    const data = columns.trimmed();
    const start = await warmStart(
      store,
      projectId,
      previousRun,
      runOptions,
      items,
      raters,
      columns.length + skipped,
    );
    const step = recalibrateColumnsWithSnapshot(
      { ...data, itemCount: items.ids.length, raterCount: raters.ids.length },
      start.previous,
      start.newRatings,
      options.calibration,
      policy,
    );
    read = {
      items,
      raters,
      ratings: all.columns.length,
      skipped,
      ...step,
      reason: useReference
        ? 'raters were screened against the word-model reference (a full refit)'
        : start.previous === null
          ? start.reason
          : step.result.reason,
      ...(start.incrementalRuns !== undefined && { incrementalRuns: start.incrementalRuns }),
    };
  }
  const { items, raters, result, reason, skipped } = read;
  options.onProgress?.({ stage: 'fit', ratings: read.ratings });
  const t2 = performance.now();

  const r = result.raters;
  const raterRows = raters.ids.map((raterId, k) => ({
    raterId,
    bias: r.bias[k]!,
    scale: r.scale[k]!,
    noiseSd: r.noiseSd[k]!,
    reliability: r.reliability[k]!,
    consensusCorrelation: Number.isFinite(r.consensusCorrelation[k]!) ? r.consensusCorrelation[k]! : null,
    influence: r.influence[k]!,
    flagged: r.flagged[k] === 1,
    reason: r.flagReason[k] ?? null,
  }));
  // Raters the reference screen flagged are not in the fit: their rows come from the screen.
  raterRows.push(...flaggedByReference);
  const it = result.items;
  // Thumbs-only items get the Wilson interval, which is right for so few binary ratings.
  const lower = it.lower.slice();
  const upper = it.upper.slice();
  for (let k = 0; k < lower.length; k++)
    if (Number.isFinite(it.wilsonLower[k]!)) {
      lower[k] = it.wilsonLower[k]!;
      upper[k] = it.wilsonUpper[k]!;
    }
  // Columns, not a million row objects.
  const itemColumns = {
    interactionIds: items.ids,
    n: it.n,
    rawMean: it.rawMean,
    reward: it.reward,
    sd: it.sd,
    lower,
    upper,
  };
  const flagged = raterRows.filter((x) => x.flagged).length;
  const stats = {
    ratings: read.ratings,
    skipped,
    raters: raterRows.length,
    flagged,
    items: items.ids.length,
    iterations: result.iterations,
    converged: result.converged,
    rounds: result.rounds,
    hyperparameters: result.hyperparameters,
    mode: result.mode,
    reason,
    referenceRatings,
    flaggedByReference: flaggedByReference.length,
    readStartedAt,
    incrementalRuns: result.mode === 'incremental' ? (read.incrementalRuns ?? 0) + 1 : 0,
  };
  // An incremental run rewrites only the rewards that moved by more than the tolerance since they
  // were written (or got new ratings); a full one rewrites all of them.
  const tolerance = RecalibrationPolicy.parse(policy).rewardTolerance;
  const before =
    result.mode !== 'incremental'
      ? null
      : (read.stored ?? (await storedInStore(store, projectId, items, itemColumns)));
  const onlyItems = before ? rewardsToWrite(itemColumns, before.columns, before.fresh, tolerance) : undefined;
  // Which of them may have a change stored already (store.calibration.save stores the values as
  // changes: it adds the others without a conflict check). Read before `written` updates the record.
  const changed = before && onlyItems ? before.columns.changed : undefined;
  // The run's id is made here so the snapshot file naming it is written while the store saves
  // (the file on the thread pool, the rows in the database's process), and renamed into place only
  // once the save committed: a file for a run that never committed is never read as one.
  const runId = newId();
  const keptNow: KeptCalibration = {
    runId,
    snapshot: read.snapshot,
    items,
    raters,
    ratings: read.ratings,
    skipped,
    stored: before && onlyItems ? written(before.columns, itemColumns, onlyItems) : storedCopy(itemColumns),
    ...(keptRun?.kept.itemIdsBytes && { itemIdsBytes: keptRun.kept.itemIdsBytes }),
  };
  let fileDone = t2;
  const file = !useReference && snapshotPath ? writeKeptPartial(snapshotPath, keptNow) : null;
  // Its failure is handled here too, so that it is not an unhandled rejection while the save runs;
  // it is still thrown below, where the file is awaited.
  file?.then(
    () => {
      fileDone = performance.now();
    },
    () => {},
  );
  let run: CalibrationRun;
  let savedAt = t2;
  try {
    run = await store.calibration.save(
      projectId,
      runOptions,
      stats,
      raterRows,
      itemColumns,
      onlyItems,
      runId,
      changed && ((k) => changed[k] === 1),
    );
    savedAt = performance.now();
  } catch (err) {
    if (file)
      await file.then(
        (partial) => rm(partial, { force: true }),
        () => {},
      );
    // The kept snapshot goes too: should its record of the store be what failed the save (a
    // duplicate key), the next run reads the store instead of failing the same way.
    if (snapshotPath) await rm(snapshotPath, { force: true });
    throw err;
  }
  if (!useReference) {
    keptCalibrations(store).set(projectId, keptNow);
    if (file && snapshotPath) await rename(await file, snapshotPath);
  }
  options.onProgress?.({ stage: 'save', ratings: read.ratings });
  const t3 = performance.now();
  return {
    run,
    ratings: read.ratings,
    skipped,
    raters: raterRows.length,
    flagged,
    items: items.ids.length,
    mode: result.mode,
    fromSnapshot: keptRun !== null,
    reason,
    rewardsWritten: onlyItems?.length ?? items.ids.length,
    referenceRatings,
    flaggedByReference: flaggedByReference.length,
    seconds: {
      read: (t1 - t0) / 1000,
      fit: (t2 - t1) / 1000,
      save: (t3 - t2) / 1000,
      store: (savedAt - t2) / 1000,
      snapshotFile: (fileDone - t2) / 1000,
    },
  };
}

/**
 * The last calibration of each project in this process, with its snapshot and the id indices its
 * item and rater numbers refer to: the next run reads only the ratings received since instead of
 * all of them (a store's whole history at scale). Per store object, so that two stores (tests, or
 * two databases) never mix.
 */
interface KeptCalibration {
  runId: string;
  snapshot: CalibrationSnapshot;
  items: IdIndex;
  raters: IdIndex;
  /** Ratings in the snapshot, and ratings read but skipped (no reward or weight 0). */
  ratings: number;
  skipped: number;
  /** What the run's save left in the store per item (its rewards are within the tolerance of the fit's). */
  stored: StoredRewards;
  /** The first `count` item ids as their file holds them (idsBytes): the next file encodes only the ids added since. */
  itemIdsBytes?: EncodedIds;
}

interface EncodedIds {
  bytes: Uint8Array;
  count: number;
}

/**
 * Per item (the kept item index), the reward, sd and interval the store holds: the last values
 * written, which an incremental run's save compares its fit with (see rewardsToWrite). NaN: none.
 */
export interface StoredRewards {
  reward: Float64Array;
  sd: Float64Array;
  lower: Float64Array;
  upper: Float64Array;
  /** 1 where a change may be stored for the item (written by an incremental run since the last full one). */
  changed: Uint8Array;
}

/**
 * The items whose stored reward, sd or interval bound the fit moved by more than `tolerance`, or
 * that have new ratings (their count and raw mean changed) or nothing stored: what an incremental
 * run writes. Compared with what is stored, not with the previous fit, so moves each under the
 * tolerance cannot add up over runs: after the save every stored value is within it of the fit.
 */
export function rewardsToWrite(
  fit: ItemRewardColumns,
  stored: StoredRewards,
  fresh: Uint8Array,
  tolerance: number,
): number[] {
  const out: number[] = [];
  const near = (a: number, b: number) => a === b || Math.abs(a - b) <= tolerance;
  const count = fit.interactionIds.length;
  for (let k = 0; k < count; k++) {
    if (
      k >= stored.reward.length ||
      fresh[k] === 1 ||
      !near(fit.reward[k]!, stored.reward[k]!) ||
      !near(fit.sd[k]!, stored.sd[k]!) ||
      !near(fit.lower[k]!, stored.lower[k]!) ||
      !near(fit.upper[k]!, stored.upper[k]!)
    )
      out.push(k);
  }
  return out;
}

/** Every item's values as written by a full save. */
function storedCopy(fit: ItemRewardColumns): StoredRewards {
  return {
    reward: Float64Array.from(fit.reward),
    sd: Float64Array.from(fit.sd),
    lower: Float64Array.from(fit.lower),
    upper: Float64Array.from(fit.upper),
    changed: new Uint8Array(fit.interactionIds.length),
  };
}

/** `before` grown to the fit's items (new ones NaN until written) with the written items' values. */
function written(before: StoredRewards, fit: ItemRewardColumns, wrote: readonly number[]): StoredRewards {
  const count = fit.interactionIds.length;
  const grow = (a: Float64Array) => {
    if (a.length === count) return a;
    const b = new Float64Array(count).fill(Number.NaN);
    b.set(a.subarray(0, Math.min(a.length, count)));
    return b;
  };
  const changed = new Uint8Array(count);
  changed.set(before.changed.subarray(0, Math.min(before.changed.length, count)));
  // An incremental save stores every value it writes as a change.
  for (const k of wrote) changed[k] = 1;
  const out = {
    reward: grow(before.reward),
    sd: grow(before.sd),
    lower: grow(before.lower),
    upper: grow(before.upper),
    changed,
  };
  for (const k of wrote) {
    out.reward[k] = fit.reward[k]!;
    out.sd[k] = fit.sd[k]!;
    out.lower[k] = fit.lower[k]!;
    out.upper[k] = fit.upper[k]!;
  }
  return out;
}

/**
 * What the store holds for each item of `items` (an incremental run without a kept snapshot reads
 * every rating anyway; this is one more pass over the project's rewards), and the items whose count
 * or raw mean differs from the fit's (new ratings) or that have none stored.
 */
async function storedInStore(
  store: Store,
  projectId: string,
  items: IdIndex,
  fit: ItemRewardColumns,
): Promise<{ columns: StoredRewards; fresh: Uint8Array }> {
  const count = items.ids.length;
  const nan = () => new Float64Array(count).fill(Number.NaN);
  // Whether a row has a change is not read: every row is taken to have one (the save then replaces
  // or adds it, which is right either way).
  const columns = {
    reward: nan(),
    sd: nan(),
    lower: nan(),
    upper: nan(),
    changed: new Uint8Array(count).fill(1),
  };
  const fresh = new Uint8Array(count).fill(1);
  for await (const page of store.calibration.storedRewards(projectId)) {
    for (const row of page) {
      const k = items.find(row.interactionId);
      if (k === undefined) continue;
      columns.reward[k] = row.reward;
      columns.sd[k] = row.sd;
      columns.lower[k] = row.lower;
      columns.upper[k] = row.upper;
      fresh[k] = row.n === fit.n[k] && Math.abs(row.rawMean - fit.rawMean[k]!) <= 1e-12 ? 0 : 1;
    }
  }
  return { columns, fresh };
}

const kept = new WeakMap<Store, Map<string, KeptCalibration>>();

function keptCalibrations(store: Store): Map<string, KeptCalibration> {
  const existing = kept.get(store);
  if (existing) return existing;
  const map = new Map<string, KeptCalibration>();
  kept.set(store, map);
  return map;
}

/**
 * The kept calibration and the ratings received since it read, when it can continue: it is the
 * project's latest run (no other process calibrated since), with the same options, and the ratings
 * since are all additions (the current count is the kept count plus them: a replaced, deleted or
 * twice-read rating makes them differ). null: read everything. The kept entry is dropped either
 * way, so that a run that fails half way never leaves one whose indices it extended.
 */
async function keptSince(
  store: Store,
  projectId: string,
  previousRun: CalibrationRun | undefined,
  runOptions: unknown,
  snapshotPath: string | null,
): Promise<{ kept: KeptCalibration; received: ScalarRatingRow[] } | null> {
  const map = keptCalibrations(store);
  const inMemory = map.get(projectId);
  map.delete(projectId);
  // The file is read and decoded (here, on this thread) while the database finds the ratings since
  // (in its own process): at scale both take a while, and neither needs the other.
  const [entry, since] = await Promise.all([
    inMemory ?? (snapshotPath ? readKept(snapshotPath) : null),
    previousRun && (inMemory || snapshotPath)
      ? ratingsSince(store, projectId, previousRun, runOptions)
      : null,
  ]);
  const continued =
    entry &&
    previousRun &&
    since &&
    entry.runId === previousRun.id &&
    since.count === entry.ratings + entry.skipped + since.received.length
      ? { kept: entry, received: since.received }
      : null;
  // A snapshot that cannot continue never will (another run, other options, a deleted rating):
  // its file goes too, so no later process trusts it.
  if (!continued && snapshotPath) await rm(snapshotPath, { force: true });
  return continued;
}

/** No snapshot continues a run with a reference (each refits fully): drops the kept one and its file. */
async function dropKept(store: Store, projectId: string, snapshotPath: string | null): Promise<null> {
  keptCalibrations(store).delete(projectId);
  if (snapshotPath) await rm(snapshotPath, { force: true });
  return null;
}

/**
 * The ratings received since the previous run read and the current count, when a snapshot of that
 * run could continue (it recorded when it read, with the same options); null otherwise. A snapshot
 * continues when the count is its own plus these: a replaced, deleted or twice-read rating makes
 * them differ.
 */
async function ratingsSince(
  store: Store,
  projectId: string,
  previousRun: CalibrationRun,
  runOptions: unknown,
): Promise<{ received: ScalarRatingRow[]; count: number } | null> {
  const readStartedAt = (previousRun.stats as { readStartedAt?: number }).readStartedAt;
  if (typeof readStartedAt !== 'number') return null;
  if (!isDeepStrictEqual(previousRun.options, JSON.parse(JSON.stringify(runOptions)))) return null;
  const [received, count] = await Promise.all([
    store.calibration.ratedSince(projectId, readStartedAt),
    store.calibration.currentScalarRatingCount(projectId),
  ]);
  return { received, count };
}

/** The project's snapshot file under the data folder (project ids are uuids: safe as names). */
function snapshotFile(dataDir: string, projectId: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(projectId)) throw new RangeError(`project id ${projectId} cannot name a file`);
  return join(resolve(dataDir), 'calibration', `${projectId}.snapshot`);
}

/**
 * The kept calibration written beside its file (returns that path): renamed into place by the
 * caller once its run is saved, so a crash mid-write never leaves half a snapshot. The arrays are
 * written from their own memory (no copy of the whole snapshot into one buffer first).
 */
async function writeKeptPartial(path: string, entry: KeptCalibration): Promise<string> {
  const meta = {
    runId: entry.runId,
    items: idsBytes(entry),
    raters: entry.raters.ids,
    ratings: entry.ratings,
    skipped: entry.skipped,
    // Typed arrays in meta are stored as bytes too.
    stored: entry.stored,
  };
  const parts = calibrationSnapshotParts(entry.snapshot, meta);
  await mkdir(join(path, '..'), { recursive: true });
  const partial = `${path}.${process.pid}.partial`;
  const handle = await open(partial, 'w');
  try {
    // A write may take less than it was given (Linux: at most 2 GiB at once): on from there.
    for (const part of parts)
      for (let at = 0; at < part.byteLength; )
        at += (await handle.write(part, at, part.byteLength - at)).bytesWritten;
  } finally {
    await handle.close();
  }
  return partial;
}

/**
 * Item ids as one line each, in UTF-8 bytes stored beside the other arrays: a JSON array of a
 * million ids took 0.35-0.5 s to parse (a string per element), and the same text as a JSON string
 * was escaped twice on the way into the file's header (2.1 s of the 8.2M-item snapshot's encoding,
 * on the thread the store's save runs on). Interaction ids never hold a newline (ClientId); should
 * one, the array is kept.
 */
function idsBytes(entry: KeptCalibration): Uint8Array | readonly string[] {
  const ids = entry.items.ids;
  const known = entry.itemIdsBytes;
  // The ids a kept file gave are appended to, not encoded again (1.1 s for 8.2M ids).
  const from = known && known.count <= ids.length ? known.count : 0;
  if (known && from > 0 && from === ids.length) return known.bytes;
  const added = from === 0 ? ids : ids.slice(from);
  if (added.some((id) => id.includes('\n'))) return ids;
  let bytes = new TextEncoder().encode(added.join('\n'));
  if (from > 0 && known) {
    const joined = new Uint8Array(known.bytes.length + 1 + bytes.length);
    joined.set(known.bytes);
    joined[known.bytes.length] = 0x0a;
    joined.set(bytes, known.bytes.length + 1);
    bytes = joined;
  }
  entry.itemIdsBytes = { bytes, count: ids.length };
  return bytes;
}

/** The ids idsBytes stored (or a text of lines, as files before it did). */
function idsOf(stored: Uint8Array | string | string[]): string[] {
  if (Array.isArray(stored)) return stored;
  const text = typeof stored === 'string' ? stored : new TextDecoder().decode(stored);
  return text === '' ? [] : text.split('\n');
}

/** The kept calibration in a snapshot file, or null when there is none or it is not readable as one. */
async function readKept(path: string): Promise<KeptCalibration | null> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    return null;
  }
  try {
    const { snapshot, meta } = decodeCalibrationSnapshot(bytes);
    const m = meta as {
      runId: string;
      items: Uint8Array | string | string[];
      raters: string[];
      ratings: number;
      skipped: number;
      stored?: StoredRewards;
    };
    const items = new IdIndex();
    for (const id of idsOf(m.items)) items.of(id);
    const raters = new IdIndex();
    for (const id of m.raters) raters.of(id);
    if (items.ids.length !== snapshot.data.itemCount || raters.ids.length !== snapshot.data.raterCount)
      return null;
    // A file from before the stored rewards were kept in it: its next save would not know what to skip.
    const stored = m.stored;
    if (
      !stored ||
      ![stored.reward, stored.sd, stored.lower, stored.upper].every(
        (a) => a instanceof Float64Array && a.length === items.ids.length,
      )
    )
      return null;
    // A file from before changes were recorded: every row may have one (the save replaces or adds it).
    if (!(stored.changed instanceof Uint8Array) || stored.changed.length !== items.ids.length)
      stored.changed = new Uint8Array(items.ids.length).fill(1);
    return {
      runId: m.runId,
      snapshot,
      items,
      raters,
      ratings: m.ratings,
      skipped: m.skipped,
      stored,
      ...(m.items instanceof Uint8Array && { itemIdsBytes: { bytes: m.items, count: items.ids.length } }),
    };
  } catch {
    // A file from another version or cut short: read everything instead.
    return null;
  }
}

/**
 * Where an incremental recalibration starts: the previous run's stored rater parameters and priors,
 * and the items and raters of ratings received since it read. null (a full refit) without a
 * previous run that recorded when it read, when the mapping or model options changed, or when
 * ratings were deleted since (their items' rewards would keep evidence that is gone).
 */
async function warmStart(
  store: Store,
  projectId: string,
  previousRun: CalibrationRun | undefined,
  runOptions: unknown,
  items: IdIndex,
  raters: IdIndex,
  readCount: number,
): Promise<{
  previous: PreviousCalibration | null;
  newRatings: NewRatings;
  reason: string;
  incrementalRuns?: number;
}> {
  const newRatings = { items: new Uint8Array(items.ids.length), raters: new Uint8Array(raters.ids.length) };
  const full = (reason: string) => ({ previous: null, newRatings, reason });
  if (!previousRun) return full('no previous calibration');
  const stats = previousRun.stats as {
    readStartedAt?: number;
    hyperparameters?: PreviousCalibration['hyperparameters'];
    incrementalRuns?: number;
    ratings?: number;
    skipped?: number;
  };
  if (typeof stats.readStartedAt !== 'number' || !stats.hyperparameters) {
    return full('the previous calibration did not record when it read');
  }
  // Compared as values: PostgreSQL's jsonb does not keep key order.
  if (!isDeepStrictEqual(previousRun.options, JSON.parse(JSON.stringify(runOptions)))) {
    return full('the mapping or calibration options changed');
  }
  const received = await store.calibration.ratedSince(projectId, stats.readStartedAt);
  // Fewer ratings than before plus the ones received since: some were deleted (or replaced, which
  // also counts as received); a full refit forgets them properly.
  if (readCount < (stats.ratings ?? 0) + (stats.skipped ?? 0)) return full('ratings were deleted since');
  for (const { interactionId, raterId } of received) {
    const i = items.find(interactionId);
    const r = raters.find(raterId);
    if (i !== undefined) newRatings.items[i] = 1;
    if (r !== undefined) newRatings.raters[r] = 1;
  }
  const stored = await store.calibration.raterParameters(projectId);
  const R = raters.ids.length;
  const previous: PreviousCalibration = {
    raters: {
      known: new Uint8Array(R),
      bias: new Float64Array(R),
      scale: new Float64Array(R),
      noiseSd: new Float64Array(R),
      flagged: new Uint8Array(R),
      flagReason: new Array(R).fill(null),
    },
    hyperparameters: stats.hyperparameters,
    incrementalRuns: stats.incrementalRuns ?? 0,
  };
  raters.ids.forEach((id, r) => {
    const p = stored.get(id);
    if (!p) return;
    previous.raters.known[r] = 1;
    previous.raters.bias[r] = p.bias;
    previous.raters.scale[r] = p.scale;
    previous.raters.noiseSd[r] = p.noiseSd;
    previous.raters.flagged[r] = p.flagged ? 1 : 0;
    previous.raters.flagReason[r] = p.reason;
  });
  return { previous, newRatings, reason: 'incremental', incrementalRuns: previous.incrementalRuns };
}
