import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CalibrationOptions, DatasetRef, Limit, Offset, RatchetError, RewardMapping } from '@ratchet/core';
import {
  analyzeProject,
  buildDatasetVersion,
  calibrateProject,
  calibrationReferences,
  DatasetBuildSpec,
} from '@ratchet/loop';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import type { RouteTable } from '../routing.js';

async function readRows(path: string, offset: number, limit: number): Promise<unknown[]> {
  const out: unknown[] = [];
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Number.POSITIVE_INFINITY });
  let i = 0;
  for await (const line of lines) {
    if (!line) continue;
    if (i++ < offset) continue;
    out.push(JSON.parse(line));
    if (out.length >= limit) {
      lines.close();
      break;
    }
  }
  return out;
}

/** Ratings to training data: calibration, raters, datasets, error analysis. */
export function registerPipelineRoutes(routes: RouteTable, store: Store, dataDir: string | undefined): void {
  routes.add({
    method: 'POST',
    url: '/api/v1/calibrations',
    access: 'admin',
    tag: 'datasets',
    summary:
      "Calibrate the project's current ratings: rater bias, scale, reliability and flags; calibrated rewards per interaction.",
    body: z
      .strictObject({
        mapping: RewardMapping.optional(),
        calibration: CalibrationOptions.optional(),
        /** `words`: judge raters against a word model of what the others liked (answers with one rating each). */
        reference: z.enum(calibrationReferences).optional(),
      })
      .prefault({}),
    response: { status: 201, description: 'The calibration run and its counts' },
    handler: async ({ principal, body }) => {
      const { run, seconds: _s, ...counts } = await calibrateProject(store, principal.projectId, body);
      return { id: run.id, createdAt: run.createdAt, ...counts };
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/calibrations/latest',
    access: 'read',
    tag: 'datasets',
    summary: 'The latest calibration run.',
    handler: async ({ principal }) => {
      const run = await store.calibration.latestRun(principal.projectId);
      if (!run) throw new RatchetError('not_found', 'no calibration yet');
      return run;
    },
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/datasets',
    access: 'admin',
    tag: 'datasets',
    summary: 'Build an immutable dataset version (sft, kto, dpo, reward, rwsft) from the latest calibration.',
    bodyDoc: DatasetBuildSpec,
    response: { status: 201, description: 'The new version' },
    handler: async ({ principal, request }) =>
      buildDatasetVersion(
        store,
        principal.projectId,
        request.body as DatasetBuildSpec,
        dataDir === undefined ? {} : { dataDir },
      ),
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/datasets',
    access: 'read',
    tag: 'datasets',
    summary: 'Dataset versions, newest first.',
    handler: async ({ principal }) => ({ items: await store.datasets.list(principal.projectId) }),
  });
  const ref = z.strictObject({ ref: DatasetRef });
  routes.add({
    method: 'GET',
    url: '/api/v1/datasets/:ref',
    access: 'read',
    tag: 'datasets',
    summary: 'One version by id, name (latest) or name@version, with its manifest.',
    params: ref,
    handler: async ({ principal, params }) => {
      const v = await store.datasets.get(principal.projectId, params.ref);
      if (!v) throw new RatchetError('not_found', `dataset "${params.ref}" not found`, 'ref');
      return v;
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/datasets/:ref/rows',
    access: 'read',
    tag: 'datasets',
    summary: "A page of a version's rows (TRL format) with their lineage.",
    params: ref,
    query: z.strictObject({
      limit: Limit.default(20),
      offset: Offset.default(0),
    }),
    handler: async ({ principal, params, query }) => {
      const v = await store.datasets.get(principal.projectId, params.ref);
      if (!v) throw new RatchetError('not_found', `dataset "${params.ref}" not found`, 'ref');
      const [rows, lineage] = await Promise.all([
        readRows(join(v.path, 'rows.jsonl'), query.offset, query.limit),
        readRows(join(v.path, 'lineage.jsonl'), query.offset, query.limit),
      ]);
      return { items: rows.map((row, i) => ({ row, lineage: lineage[i] })), total: v.rowCount };
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/analysis',
    access: 'read',
    tag: 'datasets',
    summary:
      'Error analysis: complaint themes, worst prompts, criteria by model/route/variant/tag, correlations, agreement.',
    handler: async ({ principal }) => analyzeProject(store, principal.projectId),
  });
}
