import { newId, RatchetError } from '@ratchet/core';
import { type Kysely, type Selectable, sql } from 'kysely';
import type { DialectName } from './connection.js';
import { decodeJson, encodeJson } from './json.js';
import { keysetPage, type Page } from './paging.js';
import type { Database, RunStatus, RunsTable } from './schema.js';

export type { RunStatus };

/** Metric series of a run: name -> [[step, value], ...] in step order. */
export type MetricSeries = Record<string, [number, number][]>;

export interface Run {
  id: string;
  projectId: string;
  method: string;
  baseModel: string;
  datasetId: string | null;
  /** The worker's job spec. */
  spec: Record<string, unknown>;
  /** The train request as resolved (model name, route, dataset ref). */
  request: Record<string, unknown>;
  status: RunStatus;
  /** The latest progress line: step, total, loss, learning rate, eta... */
  progress: Record<string, unknown>;
  metrics: MetricSeries;
  artifacts: Record<string, unknown> | null;
  error: string | null;
  outputDir: string;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  heartbeatAt: number | null;
  cancelRequestedAt: number | null;
  attempts: number;
  worker: string | null;
}

export interface NewRun {
  id?: string;
  method: string;
  baseModel: string;
  datasetId: string | null;
  spec: Record<string, unknown>;
  request: Record<string, unknown>;
  outputDir: string;
}

export const terminalRunStatuses: readonly RunStatus[] = ['succeeded', 'failed', 'cancelled'];

/**
 * Training runs. A run is `queued` until a process claims it; that process owns it while its
 * heartbeat is fresh. A run left `running` with a stale heartbeat was orphaned by a crash and may
 * be claimed again (to resume). Every transition is one conditional UPDATE, so two processes can
 * never both own a run.
 */
export class RunRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
  ) {}

  async create(projectId: string, r: NewRun): Promise<Run> {
    const now = Date.now();
    const id = r.id ?? newId(now);
    await this.db
      .insertInto('runs')
      .values({
        id,
        project_id: projectId,
        method: r.method,
        base_model: r.baseModel,
        dataset_id: r.datasetId,
        spec: encodeJson(r.spec),
        request: encodeJson(r.request),
        status: 'queued',
        progress: encodeJson({}),
        metrics: encodeJson({}),
        output_dir: r.outputDir,
        created_at: now,
      })
      .execute();
    return (await this.get(id))!;
  }

  /** A run by id; with `projectId`, only if it belongs to that project. */
  async get(id: string, projectId?: string): Promise<Run | undefined> {
    let q = this.db.selectFrom('runs').selectAll().where('id', '=', id);
    if (projectId !== undefined) q = q.where('project_id', '=', projectId);
    const row = await q.executeTakeFirst();
    return row && this.toRun(row);
  }

  /** The first page only (internal callers that want a few recent rows). */
  async list(
    projectId: string,
    filter: { status?: RunStatus; limit?: number; cursor?: string } = {},
  ): Promise<Run[]> {
    return (await this.page(projectId, filter)).items;
  }

  /** Newest first, a page at a time (see paging.ts). */
  async page(
    projectId: string,
    filter: { status?: RunStatus; limit?: number; cursor?: string } = {},
  ): Promise<Page<Run>> {
    let q = this.db.selectFrom('runs').selectAll().where('project_id', '=', projectId);
    if (filter.status !== undefined) q = q.where('status', '=', filter.status);
    return keysetPage(
      q,
      { at: 'created_at', id: 'id' },
      { limit: filter.limit ?? 100, cursor: filter.cursor },
      (r) => [Number(r.created_at), r.id],
      (r) => this.toRun(r),
    );
  }

  /** Ids of queued runs across projects, oldest first: the embedded job queue. */
  async queuedIds(limit = 10): Promise<string[]> {
    const rows = await this.db
      .selectFrom('runs')
      .select('id')
      .where('status', '=', 'queued')
      .orderBy('created_at')
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map((r) => r.id);
  }

  /**
   * Takes a run to execute: a queued run, or (with `staleMs`) a running one whose heartbeat is
   * older than that, which a crashed process left behind. Returns the run as claimed, or
   * undefined when it is not claimable (another process has it, it finished, or it is cancelled).
   */
  async claim(id: string, worker: string, options: { staleMs?: number } = {}): Promise<Run | undefined> {
    const now = Date.now();
    const row = await this.db
      .updateTable('runs')
      .set({
        status: 'running',
        worker,
        heartbeat_at: now,
        started_at: sql<number>`coalesce(started_at, ${now})`,
        attempts: sql<number>`attempts + 1`,
      })
      .where('id', '=', id)
      .where('cancel_requested_at', 'is', null)
      .where((eb) =>
        options.staleMs === undefined
          ? eb('status', '=', 'queued')
          : eb.or([
              eb('status', '=', 'queued'),
              eb.and([eb('status', '=', 'running'), eb('heartbeat_at', '<', now - options.staleMs)]),
            ]),
      )
      .returningAll()
      .executeTakeFirst();
    return row && this.toRun(row);
  }

  /** The latest progress line; also a heartbeat. The caller throttles (the worker logs every step). */
  async updateProgress(id: string, progress: Record<string, unknown>): Promise<void> {
    await this.db
      .updateTable('runs')
      .set({ progress: encodeJson(progress), heartbeat_at: Date.now() })
      .where('id', '=', id)
      .execute();
  }

  /** Appends points to the run's metric series (read and written in one transaction). */
  async appendMetrics(id: string, points: MetricSeries): Promise<void> {
    if (Object.keys(points).length === 0) return;
    await this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('runs').select('metrics').where('id', '=', id).executeTakeFirst();
      if (!row) throw new RatchetError('not_found', `run "${id}" not found`, 'run');
      const series = decodeJson<MetricSeries>(this.dialect, row.metrics) ?? {};
      for (const [name, values] of Object.entries(points)) {
        const existing = series[name] ?? [];
        // A resumed run repeats the steps after its last checkpoint: newer values replace them.
        const firstNew = values[0]?.[0] ?? Number.POSITIVE_INFINITY;
        series[name] = [...existing.filter(([step]) => step < firstNew), ...values];
      }
      await trx
        .updateTable('runs')
        .set({ metrics: encodeJson(series) })
        .where('id', '=', id)
        .execute();
    });
  }

  /** A sign of life; answers whether a cancel was requested, so the owner can stop the worker. */
  async heartbeat(id: string): Promise<{ cancelRequested: boolean }> {
    const row = await this.db
      .updateTable('runs')
      .set({ heartbeat_at: Date.now() })
      .where('id', '=', id)
      .returning('cancel_requested_at')
      .executeTakeFirst();
    return { cancelRequested: row?.cancel_requested_at != null };
  }

  /**
   * Cancels a run: a queued run is cancelled at once; a running one is flagged, and the process
   * that owns it stops the worker and records `cancelled`. A finished run cannot be cancelled.
   */
  async requestCancel(id: string, projectId?: string): Promise<Run> {
    const run = await this.get(id, projectId);
    if (!run) throw new RatchetError('not_found', `run "${id}" not found`, 'run');
    const now = Date.now();
    if (run.status === 'queued') {
      const done = await this.finish(id, 'cancelled', { error: 'cancelled before it started' });
      if (done) return (await this.get(id))!;
    }
    await this.db
      .updateTable('runs')
      .set({ cancel_requested_at: now })
      .where('id', '=', id)
      .where('status', 'in', ['queued', 'running'])
      .where('cancel_requested_at', 'is', null)
      .execute();
    const after = (await this.get(id))!;
    if (terminalRunStatuses.includes(after.status) && after.status !== 'cancelled')
      throw new RatchetError('conflict', `run: ${id} already ${after.status}`, 'run');
    return after;
  }

  /**
   * Records the end of a run. Only a run that has not finished yet changes; returns whether this
   * call was the one that finished it.
   */
  async finish(
    id: string,
    status: 'succeeded' | 'failed' | 'cancelled',
    outcome: { artifacts?: Record<string, unknown>; error?: string } = {},
  ): Promise<boolean> {
    const now = Date.now();
    const result = await this.db
      .updateTable('runs')
      .set({
        status,
        finished_at: now,
        heartbeat_at: now,
        artifacts: outcome.artifacts === undefined ? null : encodeJson(outcome.artifacts),
        error: outcome.error ?? null,
      })
      .where('id', '=', id)
      .where('status', 'in', ['queued', 'running'])
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Runs left `running` whose heartbeat is older than `staleMs`: their process died. */
  async findOrphaned(staleMs: number, projectId?: string): Promise<Run[]> {
    let q = this.db
      .selectFrom('runs')
      .selectAll()
      .where('status', '=', 'running')
      .where((eb) => eb.or([eb('heartbeat_at', 'is', null), eb('heartbeat_at', '<', Date.now() - staleMs)]));
    if (projectId !== undefined) q = q.where('project_id', '=', projectId);
    const rows = await q.orderBy('created_at').execute();
    return rows.map((r) => this.toRun(r));
  }

  private toRun(r: Selectable<RunsTable>): Run {
    return {
      id: r.id,
      projectId: r.project_id,
      method: r.method,
      baseModel: r.base_model,
      datasetId: r.dataset_id,
      spec: decodeJson(this.dialect, r.spec),
      request: decodeJson(this.dialect, r.request) ?? {},
      status: r.status,
      progress: decodeJson(this.dialect, r.progress),
      metrics: decodeJson(this.dialect, r.metrics),
      artifacts: r.artifacts === null ? null : decodeJson(this.dialect, r.artifacts),
      error: r.error,
      outputDir: r.output_dir,
      createdAt: r.created_at,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
      heartbeatAt: r.heartbeat_at,
      cancelRequestedAt: r.cancel_requested_at,
      attempts: r.attempts,
      worker: r.worker,
    };
  }
}
