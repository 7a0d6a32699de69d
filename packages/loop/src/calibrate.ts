import {
  type CalibrationOptionsInput,
  calibrateRatingColumns,
  normalizeFeedback,
  RewardMapping,
  type RewardMappingInput,
} from '@ratchet/core';
import type { CalibrationRun, Store } from '@ratchet/store';
import { GrowableColumns, IdIndex } from './growable.js';

export interface CalibrateProjectOptions {
  mapping?: RewardMappingInput;
  calibration?: CalibrationOptionsInput;
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
  seconds: { read: number; fit: number; save: number };
}

/**
 * Calibrates a project's current ratings: reads them page by page from the store, maps each to
 * a reward, fits the rater model on typed columns, and stores rater states and item rewards.
 */
export async function calibrateProject(
  store: Store,
  projectId: string,
  options: CalibrateProjectOptions = {},
): Promise<CalibrationSummary> {
  const mapping = RewardMapping.parse(options.mapping ?? {});
  const scoreConfigs = await store.scoreConfigs.byName(projectId);
  const items = new IdIndex();
  const raters = new IdIndex();
  const columns = new GrowableColumns();
  let skipped = 0;
  // Raters are users unless recorded otherwise; AI labels (judge) weigh less, per the mapping.
  const sources = await store.raters.nonUserSources(projectId);
  const sourceWeight = (raterId: string) =>
    mapping.sourceWeight[(sources.get(raterId) ?? 'user') as keyof RewardMapping['sourceWeight']] ?? 1;

  const context = { scoreConfigs, mapping };
  const t0 = performance.now();
  for await (const page of store.calibration.currentScalarRatings(projectId)) {
    for (const row of page) {
      const outcome = normalizeFeedback(row, context);
      const weight = outcome.reward === null ? 0 : outcome.weight * sourceWeight(row.raterId);
      if (outcome.reward === null || weight <= 0) {
        skipped++;
        continue;
      }
      columns.push(
        items.of(row.interactionId),
        raters.of(row.raterId),
        outcome.reward,
        weight,
        row.kind === 'thumbs',
      );
    }
    options.onProgress?.({ stage: 'read', ratings: columns.length });
  }
  const t1 = performance.now();
  const data = columns.trimmed();
  const result = calibrateRatingColumns(
    { ...data, itemCount: items.ids.length, raterCount: raters.ids.length },
    options.calibration,
  );
  options.onProgress?.({ stage: 'fit', ratings: columns.length });
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
    ratings: columns.length,
    skipped,
    raters: raterRows.length,
    flagged,
    items: items.ids.length,
    iterations: result.iterations,
    converged: result.converged,
    rounds: result.rounds,
    hyperparameters: result.hyperparameters,
  };
  const run = await store.calibration.save(
    projectId,
    { mapping, calibration: options.calibration ?? {} },
    stats,
    raterRows,
    itemColumns,
  );
  options.onProgress?.({ stage: 'save', ratings: columns.length });
  const t3 = performance.now();
  return {
    run,
    ratings: columns.length,
    skipped,
    raters: raterRows.length,
    flagged,
    items: items.ids.length,
    seconds: { read: (t1 - t0) / 1000, fit: (t2 - t1) / 1000, save: (t3 - t2) / 1000 },
  };
}
