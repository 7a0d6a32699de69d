import type { Interaction, InteractionFilters } from '@ratchet/core';
import type { Store } from '@ratchet/store';
import { ImportBatchBuilder } from '../imports/batch.js';
import { type ImportSummary, type WriteImportOptions, writeImportBatch } from '../imports/write.js';
import type { LabelStudioClient, LabelStudioProject } from './client.js';
import { type LabelingMode, labelingConfig } from './config.js';
import { addLabelStudioTask } from './results.js';
import { comparisonPairs, comparisonTask, interactionTask, taskKey } from './tasks.js';

/**
 * The Label Studio connector: a project whose labeling interface asks for our rating kinds, the
 * annotation queue pushed as tasks, finished annotations pulled back as feedback.
 */

/** Creates a Label Studio project with the labeling config for a Ratchet project's scales. */
export async function createLabelStudioProject(
  client: LabelStudioClient,
  store: Store,
  projectId: string,
  options: { title: string; mode?: LabelingMode; description?: string },
): Promise<LabelStudioProject> {
  const scales = await store.scoreConfigs.list(projectId);
  return client.createProject({
    title: options.title,
    labelConfig: labelingConfig(scales, options.mode ?? 'single'),
    description:
      options.description ??
      (options.mode === 'pairwise' ? 'Ratchet: which answer is better?' : 'Ratchet: rate the answers'),
  });
}

export interface PushOptions {
  /** The interactions to annotate; otherwise those matching `filters`, newest first. */
  interactionIds?: string[];
  filters?: InteractionFilters;
  /** At most this many interactions are read when selecting by filters. */
  limit?: number;
  /** `pairwise` pairs answers to the same prompt; the Label Studio project must be pairwise too. */
  mode?: LabelingMode;
}

export interface PushSummary {
  selected: number;
  /** Tasks created now. */
  pushed: number;
  /** Tasks that were in the Label Studio project already (pushing again adds nothing). */
  alreadyThere: number;
}

/** Pushes interactions as tasks, skipping those the Label Studio project has already. */
export async function pushToLabelStudio(
  client: LabelStudioClient,
  store: Store,
  projectId: string,
  labelStudioProjectId: number,
  options: PushOptions = {},
): Promise<PushSummary> {
  const selected = await selectInteractions(store, projectId, options);
  const tasks =
    options.mode === 'pairwise'
      ? comparisonPairs(selected).map(([a, b]) => comparisonTask(a, b))
      : selected.map(interactionTask);
  const existing = new Set(
    (await client.listTasks(labelStudioProjectId)).map((t) => taskKey(t.data)).filter((k) => k !== undefined),
  );
  const fresh = tasks.filter((t) => !existing.has(taskKey(t.data)!));
  let pushed = 0;
  for (const part of chunks(fresh, 500)) pushed += await client.importTasks(labelStudioProjectId, part);
  return { selected: selected.length, pushed, alreadyThere: tasks.length - fresh.length };
}

async function selectInteractions(
  store: Store,
  projectId: string,
  options: PushOptions,
): Promise<Interaction[]> {
  if (options.interactionIds) {
    const found = await store.interactions.getMany(projectId, options.interactionIds);
    const byId = new Map(found.map((i) => [i.id, i]));
    const missing = options.interactionIds.filter((id) => !byId.has(id));
    if (missing.length) throw new Error(`interactions not in the project: ${missing.slice(0, 5).join(', ')}`);
    return options.interactionIds.map((id) => byId.get(id)!);
  }
  const limit = options.limit ?? 100;
  const out: Interaction[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.interactions.list(projectId, options.filters ?? {}, {
      limit: Math.min(1000, limit - out.length),
      ...(cursor ? { cursor } : {}),
    });
    out.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor && out.length < limit);
  return out;
}

export interface PullSummary extends ImportSummary {
  /** Tasks with at least one annotation. */
  annotatedTasks: number;
}

/**
 * Pulls finished annotations and writes them as feedback from source `annotator`. Idempotent:
 * each event's key comes from its annotation id (and content), so pulling again writes nothing
 * unless an annotator changed an annotation.
 */
export async function pullFromLabelStudio(
  client: LabelStudioClient,
  store: Store,
  projectId: string,
  labelStudioProjectId: number,
  options: WriteImportOptions = {},
): Promise<PullSummary> {
  const scales = await store.scoreConfigs.list(projectId);
  const tasks = await client.exportTasks(labelStudioProjectId);
  const builder = new ImportBatchBuilder();
  tasks.forEach((task, i) => {
    addLabelStudioTask(builder, task, `Label Studio project ${labelStudioProjectId}: tasks.${i}`, { scales });
  });
  const summary = await writeImportBatch(store, projectId, builder.build(), options);
  return { ...summary, annotatedTasks: tasks.length };
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
