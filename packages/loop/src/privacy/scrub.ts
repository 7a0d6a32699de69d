import { once } from 'node:events';
import { createReadStream, createWriteStream, existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { DatasetVersion, Store } from '@ratchet/store';
import { exportDataset } from '../exports.js';

/** What a scrub took out of one dataset version's files. */
export interface ScrubbedVersion {
  datasetId: string;
  name: string;
  version: number;
  rowsRemoved: number;
  curationLinesRemoved: number;
  /** Training runs whose exported data was written again from the scrubbed version. */
  runsRewritten: string[];
}

interface Lineage {
  interactionIds: string[];
  feedbackIds: string[];
}

async function readLines(path: string): Promise<string[]> {
  if (!existsSync(path)) return [];
  const lines: string[] = [];
  for await (const line of createInterface({
    input: createReadStream(path),
    crlfDelay: Number.POSITIVE_INFINITY,
  }))
    if (line) lines.push(line);
  return lines;
}

/** Writes lines to a temporary file beside `path` and renames it into place (never half a file). */
async function replaceLines(path: string, lines: readonly string[]): Promise<void> {
  const temporary = `${path}.scrub-${process.pid}`;
  const out = createWriteStream(temporary);
  for (const line of lines) if (!out.write(`${line}\n`)) await once(out, 'drain');
  await new Promise<void>((res, rej) => out.end((err?: Error) => (err ? rej(err) : res())));
  renameSync(temporary, path);
}

/**
 * Takes deleted people's data out of one version's files: a row goes when any interaction or
 * feedback event it was made of no longer exists (lineage line i describes row i), and so does
 * every curation decision about one. Existence, not a list of what was deleted, decides, so a
 * scrub that a crash interrupted is finished by the next one.
 */
async function scrubVersion(
  store: Store,
  version: DatasetVersion,
): Promise<Omit<ScrubbedVersion, 'runsRewritten'> | undefined> {
  const lineagePath = join(version.path, 'lineage.jsonl');
  const lineageLines = await readLines(lineagePath);
  const lineage = lineageLines.map((l) => JSON.parse(l) as Lineage);
  const curationPath = join(version.path, 'curation.jsonl');
  const curationLines = await readLines(curationPath);
  const curation = curationLines.map((l) => JSON.parse(l) as { id: string; subject: string });
  const interactionIds = new Set(lineage.flatMap((l) => l.interactionIds));
  const feedbackIds = new Set(lineage.flatMap((l) => l.feedbackIds));
  for (const c of curation) (c.subject === 'feedback' ? feedbackIds : interactionIds).add(c.id);
  const existing = await store.deletion.existing(version.projectId, [...interactionIds], [...feedbackIds]);
  const exists = (kind: 'i' | 'f', id: string) => existing.has(`${kind}:${id}`);
  const keepRow = lineage.map(
    (l) => l.interactionIds.every((id) => exists('i', id)) && l.feedbackIds.every((id) => exists('f', id)),
  );
  const keepCuration = curation.map((c) => exists(c.subject === 'feedback' ? 'f' : 'i', c.id));
  const rowsRemoved = keepRow.filter((k) => !k).length;
  const curationLinesRemoved = keepCuration.filter((k) => !k).length;
  if (rowsRemoved === 0 && curationLinesRemoved === 0) return undefined;
  if (rowsRemoved > 0) {
    const rowsPath = join(version.path, 'rows.jsonl');
    const rows = await readLines(rowsPath);
    await replaceLines(
      rowsPath,
      rows.filter((_, i) => keepRow[i] !== false),
    );
    await replaceLines(
      lineagePath,
      lineageLines.filter((_, i) => keepRow[i]),
    );
  }
  if (curationLinesRemoved > 0)
    await replaceLines(
      curationPath,
      curationLines.filter((_, i) => keepCuration[i]),
    );
  return {
    datasetId: version.id,
    name: version.name,
    version: version.version,
    rowsRemoved,
    curationLinesRemoved,
  };
}

/**
 * After a deletion: every dataset version of the project loses the rows made of deleted data
 * (versions are immutable otherwise; the registry marks them and the models trained on them),
 * and each training run's exported copy of a scrubbed version (`<run>/data`) is written again
 * from it. A run's adapter keeps what it learned; the mark on the model says so.
 */
export async function scrubDeletedData(
  store: Store,
  projectId: string,
  actor: string,
): Promise<ScrubbedVersion[]> {
  const scrubbed: ScrubbedVersion[] = [];
  const runs = await store.runs.list(projectId, { limit: 100_000 });
  for (const version of await store.datasets.list(projectId)) {
    if (!existsSync(version.path)) continue;
    const result = await scrubVersion(store, version);
    if (!result) continue;
    await store.deletion.markScrubbed(projectId, version.id, result.rowsRemoved, actor);
    const runsRewritten: string[] = [];
    for (const run of runs.filter((r) => r.datasetId === version.id)) {
      const data = join(run.outputDir, 'data');
      if (!existsSync(data)) continue;
      rmSync(data, { recursive: true, force: true });
      await exportDataset(version, 'trl', data);
      runsRewritten.push(run.id);
    }
    scrubbed.push({ ...result, runsRewritten });
  }
  return scrubbed;
}
