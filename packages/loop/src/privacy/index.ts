import { dayMs, type RetentionPolicy } from '@ratchet/core';
import {
  type DeletionCounts,
  type DeletionResult,
  type DeletionSubject,
  emptyDeletionCounts,
  type Store,
} from '@ratchet/store';
import { type ScrubbedVersion, scrubDeletedData } from './scrub.js';

export { type ScrubbedVersion, scrubDeletedData } from './scrub.js';

export interface DeletionReport extends DeletionResult {
  /** Dataset versions whose files lost rows, and the runs whose exported data was rewritten. */
  scrubbed: ScrubbedVersion[];
}

/**
 * Deletes an end user's data or some interactions: the database in one transaction (store
 * `deletion`), then the dataset files and the runs' copies of them (`scrubDeletedData`). The
 * API, the CLI and retention all come here.
 */
export async function deleteData(
  store: Store,
  projectId: string,
  subject: Exclude<DeletionSubject, { kind: 'retention' }>,
  actor: string,
): Promise<DeletionReport> {
  const result = await store.deletion.delete(projectId, subject, actor);
  const scrubbed = await scrubDeletedData(store, projectId, actor);
  return { ...result, scrubbed };
}

export interface RetentionReport {
  projectId: string;
  policy: RetentionPolicy;
  olderThan: number;
  /** One audited deletion per batch (a dropped month is one). */
  batches: number;
  /** The months of interactions dropped whole (PostgreSQL), e.g. `interactions_p2026_01`. */
  partitions: string[];
  counts: DeletionCounts;
  datasets: DeletionResult['datasets'];
  models: DeletionResult['models'];
  scrubbed: ScrubbedVersion[];
}

/** Interactions per transaction: a long backlog is deleted in steps that each commit. */
const RETENTION_BATCH = 1000;

/** Applies the project's retention policy once; undefined when the project has none. */
export async function applyRetention(
  store: Store,
  projectId: string,
  options: { actor?: string; now?: number } = {},
): Promise<RetentionReport | undefined> {
  const policy = await store.projects.retention(projectId);
  if (!policy) return undefined;
  const actor = options.actor ?? 'retention';
  const olderThan = (options.now ?? Date.now()) - policy.days * dayMs;
  const report: RetentionReport = {
    projectId,
    policy,
    olderThan,
    batches: 0,
    partitions: [],
    counts: emptyDeletionCounts(),
    datasets: [],
    models: [],
    scrubbed: [],
  };
  const add = (result: DeletionResult) => {
    report.batches++;
    for (const [k, v] of Object.entries(result.counts)) report.counts[k as keyof DeletionCounts] += v;
    report.datasets.push(...result.datasets);
    report.models.push(...result.models);
  };
  // On PostgreSQL, whole months first (dropped, not deleted row by row); what is left goes in batches.
  const keep = policy.keepProductionTrainingData;
  for (const partition of await store.deletion.retentionPartitions(projectId, olderThan, keep)) {
    const result = await store.deletion.delete(
      projectId,
      { kind: 'retention', ids: [], olderThan, partition, keepProductionTrainingData: keep },
      actor,
    );
    if (result.auditId !== null) {
      add(result);
      report.partitions.push(partition.name);
    }
  }
  for (;;) {
    const ids = await store.deletion.retentionCandidates(
      projectId,
      olderThan,
      policy.keepProductionTrainingData,
      RETENTION_BATCH,
    );
    if (
      ids.length === 0 &&
      (report.batches > 0 || !(await store.deletion.hasOldUnlinked(projectId, olderThan)))
    )
      break;
    add(await store.deletion.delete(projectId, { kind: 'retention', ids, olderThan }, actor));
    if (ids.length < RETENTION_BATCH) break;
  }
  if (report.batches > 0) report.scrubbed = await scrubDeletedData(store, projectId, actor);
  return report;
}

/** Applies every project's retention policy (what `ratchet serve` runs on its schedule). */
export async function applyRetentionToAll(
  store: Store,
  options: { now?: number } = {},
): Promise<RetentionReport[]> {
  const reports: RetentionReport[] = [];
  for (const project of await store.projects.list()) {
    const report = await applyRetention(store, project.id, options);
    if (report && report.batches > 0) reports.push(report);
  }
  return reports;
}
