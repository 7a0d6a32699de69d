import { newId, storableString } from '@ratchet/core';
import { type Kysely, type Selectable, sql } from 'kysely';
import { keysetPage, type Page } from './paging.js';
import type { Database, UsageRecordsTable } from './schema.js';

/** The gateway calls logged as usage only (no answer to rate): today `embeddings`. */
export type UsageKind = 'embeddings';

export interface NewUsageRecord {
  kind: UsageKind;
  route?: string | undefined;
  variant?: string | undefined;
  /** The model the upstream was asked for. */
  model: string;
  upstream: string;
  userId?: string | undefined;
  /** How many inputs the call embedded. */
  inputs: number;
  inputTokens?: number | undefined;
  totalTokens?: number | undefined;
  latencyMs: number;
  status: 'ok' | 'error' | 'aborted';
  error?: string | undefined;
  createdAt: number;
}

export interface UsageRecord extends NewUsageRecord {
  id: string;
  projectId: string;
}

const MAX_ERROR = 4000;

/**
 * Gateway calls that are usage, not interactions: what was called, for whom, how many tokens.
 * Kept apart from `interactions` on purpose: feedback, the annotation queue, curation, analysis
 * and every dataset builder read `interactions`, so a record here can never be rated or trained
 * on, by construction rather than by a filter each of those (and any added later) must remember.
 */
export class UsageRecordRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(
    projectId: string,
    record: NewUsageRecord,
    id: string = newId(record.createdAt),
  ): Promise<UsageRecord> {
    const stored: UsageRecord = { ...record, id, projectId };
    await this.db
      .insertInto('usage_records')
      .values({
        id,
        project_id: projectId,
        kind: record.kind,
        route: record.route ?? null,
        variant: record.variant ?? null,
        model: storableString(record.model),
        upstream: record.upstream,
        user_id: record.userId === undefined ? null : storableString(record.userId),
        inputs: record.inputs,
        input_tokens: record.inputTokens ?? null,
        total_tokens: record.totalTokens ?? null,
        latency_ms: record.latencyMs,
        status: record.status,
        error: record.error === undefined ? null : storableString(record.error.slice(0, MAX_ERROR)),
        created_at: record.createdAt,
      })
      .execute();
    return stored;
  }

  /** Newest first, with a cursor that stays stable while new records arrive. */
  async list(
    projectId: string,
    page: { limit?: number; cursor?: string; kind?: UsageKind } = {},
  ): Promise<Page<UsageRecord>> {
    let q = this.db.selectFrom('usage_records').selectAll().where('project_id', '=', projectId);
    if (page.kind) q = q.where('kind', '=', page.kind);
    return keysetPage(
      q,
      { at: 'created_at', id: 'id' },
      page,
      (r) => [Number(r.created_at), r.id],
      toUsageRecord,
    );
  }

  /** Calls and tokens by kind and model: what the usage costs. */
  async totals(
    projectId: string,
  ): Promise<{ kind: string; model: string; calls: number; inputTokens: number }[]> {
    const rows = await this.db
      .selectFrom('usage_records')
      .select([
        'kind',
        'model',
        sql<number>`count(*)`.as('calls'),
        sql<number>`coalesce(sum(input_tokens), 0)`.as('input_tokens'),
      ])
      .where('project_id', '=', projectId)
      .groupBy(['kind', 'model'])
      .orderBy('kind')
      .orderBy('model')
      .execute();
    return rows.map((r) => ({
      kind: r.kind,
      model: r.model,
      calls: Number(r.calls),
      inputTokens: Number(r.input_tokens),
    }));
  }
}

function toUsageRecord(r: Selectable<UsageRecordsTable>): UsageRecord {
  const record: UsageRecord = {
    id: r.id,
    projectId: r.project_id,
    kind: r.kind as UsageKind,
    model: r.model,
    upstream: r.upstream,
    inputs: Number(r.inputs),
    latencyMs: Number(r.latency_ms),
    status: r.status as UsageRecord['status'],
    createdAt: Number(r.created_at),
  };
  if (r.route !== null) record.route = r.route;
  if (r.variant !== null) record.variant = r.variant;
  if (r.user_id !== null) record.userId = r.user_id;
  if (r.input_tokens !== null) record.inputTokens = Number(r.input_tokens);
  if (r.total_tokens !== null) record.totalTokens = Number(r.total_tokens);
  if (r.error !== null) record.error = r.error;
  return record;
}
