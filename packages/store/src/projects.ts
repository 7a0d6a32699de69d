import {
  type ApiKeyKind,
  defaultScoreConfigs,
  generateApiKey,
  hashApiKey,
  newFeedbackTokenKey,
  newId,
  RatchetError,
} from '@ratchet/core';
import type { Kysely } from 'kysely';
import { encodeJson } from './json.js';
import type { Database } from './schema.js';

export interface Project {
  id: string;
  name: string;
  createdAt: number;
}

export interface ApiKeyInfo {
  id: string;
  projectId: string;
  kind: ApiKeyKind;
  displayPrefix: string;
  name: string | null;
  createdAt: number;
  revokedAt: number | null;
}

export interface Principal {
  projectId: string;
  keyId: string;
  kind: ApiKeyKind;
}

export class ProjectRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** Creates a project with the default score configs, in one transaction. */
  async create(name: string): Promise<Project> {
    if (!/^[A-Za-z0-9._-]{1,100}$/.test(name)) {
      throw new RatchetError(
        'invalid_request',
        'name: must be 1-100 letters, digits, dot, dash or underscore',
        'name',
      );
    }
    const project: Project = { id: newId(), name, createdAt: Date.now() };
    await this.db.transaction().execute(async (trx) => {
      const existing = await trx
        .selectFrom('projects')
        .select('id')
        .where('name', '=', name)
        .executeTakeFirst();
      if (existing) throw new RatchetError('conflict', `name: a project named "${name}" exists`, 'name');
      await trx
        .insertInto('projects')
        .values({ id: project.id, name, settings: encodeJson({}), created_at: project.createdAt })
        .execute();
      await trx
        .insertInto('score_configs')
        .values(
          defaultScoreConfigs.map((c) => ({
            project_id: project.id,
            name: c.name,
            usage: c.usage,
            data_type: c.dataType,
            min: c.min,
            max: c.max,
            categories: c.categories ? encodeJson(c.categories) : null,
            weight: c.weight,
            description: c.description,
            created_at: project.createdAt,
          })),
        )
        .execute();
    });
    return project;
  }

  async get(id: string): Promise<Project | undefined> {
    const row = await this.db
      .selectFrom('projects')
      .select(['id', 'name', 'created_at'])
      .where('id', '=', id)
      .executeTakeFirst();
    return row && { id: row.id, name: row.name, createdAt: row.created_at };
  }

  async getByName(name: string): Promise<Project | undefined> {
    const row = await this.db
      .selectFrom('projects')
      .select(['id', 'name', 'created_at'])
      .where('name', '=', name)
      .executeTakeFirst();
    return row && { id: row.id, name: row.name, createdAt: row.created_at };
  }

  async list(): Promise<Project[]> {
    const rows = await this.db
      .selectFrom('projects')
      .select(['id', 'name', 'created_at'])
      .orderBy('created_at')
      .execute();
    return rows.map((r) => ({ id: r.id, name: r.name, createdAt: r.created_at }));
  }

  async getOrCreate(name: string): Promise<Project> {
    return (await this.getByName(name)) ?? this.create(name);
  }

  /** Creates a key and returns its plaintext, which is never stored and cannot be shown again. */
  async createKey(projectId: string, kind: ApiKeyKind, name?: string): Promise<ApiKeyInfo & { key: string }> {
    if (!(await this.get(projectId)))
      throw new RatchetError('not_found', `project ${projectId} not found`, 'projectId');
    const key = generateApiKey(kind);
    const info: ApiKeyInfo = {
      id: newId(),
      projectId,
      kind,
      displayPrefix: key.slice(0, 12),
      name: name ?? null,
      createdAt: Date.now(),
      revokedAt: null,
    };
    await this.db
      .insertInto('api_keys')
      .values({
        id: info.id,
        project_id: projectId,
        kind,
        key_hash: hashApiKey(key),
        display_prefix: info.displayPrefix,
        name: info.name,
        created_at: info.createdAt,
        revoked_at: null,
      })
      .execute();
    return { ...info, key };
  }

  async listKeys(projectId: string): Promise<ApiKeyInfo[]> {
    const rows = await this.db
      .selectFrom('api_keys')
      .selectAll()
      .where('project_id', '=', projectId)
      .orderBy('created_at')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      projectId: r.project_id,
      kind: r.kind,
      displayPrefix: r.display_prefix,
      name: r.name,
      createdAt: r.created_at,
      revokedAt: r.revoked_at,
    }));
  }

  async revokeKey(projectId: string, keyId: string): Promise<void> {
    const result = await this.db
      .updateTable('api_keys')
      .set({ revoked_at: Date.now() })
      .where('project_id', '=', projectId)
      .where('id', '=', keyId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (result.numUpdatedRows === 0n)
      throw new RatchetError('not_found', `key ${keyId} not found or already revoked`, 'keyId');
  }

  /** The project and kind a presented key grants, or undefined when unknown or revoked. */
  async authenticate(key: string): Promise<Principal | undefined> {
    const row = await this.db
      .selectFrom('api_keys')
      .select(['id', 'project_id', 'kind'])
      .where('key_hash', '=', hashApiKey(key))
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return row && { projectId: row.project_id, keyId: row.id, kind: row.kind };
  }

  /**
   * The project's HMAC key for feedback tokens, created on first use. Two servers asking at once
   * both insert-if-absent and then read, so they agree on the one key that was stored.
   */
  async feedbackTokenKey(projectId: string): Promise<string> {
    const read = () =>
      this.db
        .selectFrom('feedback_token_keys')
        .select('key')
        .where('project_id', '=', projectId)
        .executeTakeFirst();
    const existing = await read();
    if (existing) return existing.key;
    await this.db
      .insertInto('feedback_token_keys')
      .values({ project_id: projectId, key: newFeedbackTokenKey(), created_at: Date.now() })
      .onConflict((oc) => oc.column('project_id').doNothing())
      .execute();
    return (await read())!.key;
  }
}
