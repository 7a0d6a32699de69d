import { newId } from '@ratchet/core';
import type { Kysely } from 'kysely';
import type { DialectName } from './connection.js';
import { decodeJson, encodeJson } from './json.js';
import { keysetPage, type Page } from './paging.js';
import type { Database } from './schema.js';

export interface AuditEntry {
  id: string;
  projectId: string;
  actor: string;
  action: string;
  subjectType: string;
  subjectId: string;
  details: Record<string, unknown>;
  createdAt: number;
}

/** Every change to models, routes and loop state, in order; written in the caller's transaction. */
export class AuditLog {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
  ) {}

  async record(
    entry: Omit<AuditEntry, 'id' | 'createdAt'>,
    db: Kysely<Database> = this.db,
  ): Promise<AuditEntry> {
    const full: AuditEntry = { ...entry, id: newId(), createdAt: Date.now() };
    await db
      .insertInto('audit_log')
      .values({
        id: full.id,
        project_id: full.projectId,
        actor: full.actor,
        action: full.action,
        subject_type: full.subjectType,
        subject_id: full.subjectId,
        details: encodeJson(full.details),
        created_at: full.createdAt,
      })
      .execute();
    return full;
  }

  /** The first page only (internal callers that want a few recent rows). */
  async list(
    projectId: string,
    filter: {
      subjectType?: string;
      subjectId?: string;
      action?: string;
      limit?: number;
      cursor?: string;
    } = {},
  ): Promise<AuditEntry[]> {
    return (await this.page(projectId, filter)).items;
  }

  /** Newest first, a page at a time (see paging.ts). */
  async page(
    projectId: string,
    filter: {
      subjectType?: string;
      subjectId?: string;
      action?: string;
      limit?: number;
      cursor?: string;
    } = {},
  ): Promise<Page<AuditEntry>> {
    let q = this.db.selectFrom('audit_log').selectAll().where('project_id', '=', projectId);
    if (filter.subjectType) q = q.where('subject_type', '=', filter.subjectType);
    if (filter.subjectId) q = q.where('subject_id', '=', filter.subjectId);
    if (filter.action) q = q.where('action', '=', filter.action);
    return keysetPage(
      q,
      { at: 'created_at', id: 'id' },
      { limit: filter.limit ?? 100, cursor: filter.cursor },
      (r) => [Number(r.created_at), r.id],
      (r) => ({
        id: r.id,
        projectId: r.project_id,
        actor: r.actor,
        action: r.action,
        subjectType: r.subject_type,
        subjectId: r.subject_id,
        details: decodeJson(this.dialect, r.details),
        createdAt: r.created_at,
      }),
    );
  }
}
