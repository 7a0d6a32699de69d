import {
  type ApiKeyKind,
  type ApiKeyScope,
  decodeScopes,
  defaultScoreConfigs,
  encodeScopes,
  kindOfScopes,
  newId,
  type ProjectRole,
  parseInput,
  RatchetError,
  RetentionPolicy,
  scopesOfKind,
} from '@ratchet/core';
import type { Kysely } from 'kysely';
import type { AuditLog } from './audit.js';
import { type ChangeListener, ChangeSignal } from './change-signal.js';
import type { DatabaseConfig, DialectName } from './connection.js';
import { decodeJson, encodeJson } from './json.js';
import type { Database } from './schema.js';
import { generateApiKey, hashApiKey, newFeedbackTokenKey } from './secrets.js';

/** The PostgreSQL channel every key change notifies, at commit. */
const keysChannel = 'ratchet_api_keys';

export interface Project {
  id: string;
  name: string;
  createdAt: number;
}

export interface ApiKeyInfo {
  id: string;
  projectId: string;
  kind: ApiKeyKind;
  scopes: ApiKeyScope[];
  displayPrefix: string;
  name: string | null;
  createdAt: number;
  revokedAt: number | null;
}

/** Who is calling: a key, or a person signed in with a session (then `user` is set). */
export interface Principal {
  projectId: string;
  /** The key's id; for a person, `user:<userId>` (what rate limits count by). */
  keyId: string;
  kind: ApiKeyKind;
  scopes: ApiKeyScope[];
  /** Who the audit log names: `api:<keyId>` for a key, `user:<userId>` for a person. */
  actor: string;
  /** The person and their role in the project, for a session-authenticated call. */
  user?: { id: string; email: string; role: ProjectRole };
}

export class ProjectRepository {
  private readonly keyChanges: ChangeSignal;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    database: DatabaseConfig,
    private readonly audit: AuditLog,
  ) {
    this.keyChanges = new ChangeSignal(db, dialect, database, keysChannel, 'api_key_version');
  }

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

  /**
   * Creates a key and returns its plaintext, which is never stored and cannot be shown again.
   * `access` is a kind (a secret key gets every scope, a public key `public`) or the scopes.
   */
  async createKey(
    projectId: string,
    access: ApiKeyKind | readonly ApiKeyScope[],
    name?: string,
    actor = 'system',
  ): Promise<ApiKeyInfo & { key: string }> {
    if (!(await this.get(projectId)))
      throw new RatchetError('not_found', `project ${projectId} not found`, 'projectId');
    const scopes = typeof access === 'string' ? scopesOfKind(access) : decodeScopes(encodeScopes(access));
    if (scopes.length === 0)
      throw new RatchetError('invalid_request', 'scopes: name at least one scope', 'scopes');
    const kind = kindOfScopes(scopes);
    const key = generateApiKey(kind);
    const info: ApiKeyInfo = {
      id: newId(),
      projectId,
      kind,
      scopes,
      displayPrefix: key.slice(0, 12),
      name: name ?? null,
      createdAt: Date.now(),
      revokedAt: null,
    };
    await this.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('api_keys')
        .values({
          id: info.id,
          project_id: projectId,
          kind,
          scopes: encodeScopes(scopes),
          key_hash: hashApiKey(key),
          display_prefix: info.displayPrefix,
          name: info.name,
          created_at: info.createdAt,
          revoked_at: null,
        })
        .execute();
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'key.created',
          subjectType: 'api_key',
          subjectId: info.id,
          details: { scopes, name: info.name },
        },
        trx,
      );
    });
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
      scopes: decodeScopes(r.scopes),
      displayPrefix: r.display_prefix,
      name: r.name,
      createdAt: r.created_at,
      revokedAt: r.revoked_at,
    }));
  }

  /**
   * Revokes a key. Every server drops its cached keys when this commits: this process's at once
   * (before this returns), other PostgreSQL servers by NOTIFY, other processes on one SQLite file
   * by the version they poll.
   */
  async revokeKey(projectId: string, keyId: string, actor = 'system'): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const result = await trx
        .updateTable('api_keys')
        .set({ revoked_at: Date.now() })
        .where('project_id', '=', projectId)
        .where('id', '=', keyId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (result.numUpdatedRows === 0n)
        throw new RatchetError('not_found', `id: key ${keyId} not found or already revoked`, 'id');
      await this.audit.record(
        { projectId, actor, action: 'key.revoked', subjectType: 'api_key', subjectId: keyId, details: {} },
        trx,
      );
      await this.keyChanges.markChanged(trx);
    });
    await this.keyChanges.notifyLocal();
  }

  /** Calls `listener` whenever a key is revoked, from this process or any other on the database. */
  subscribeKeys(
    listener: ChangeListener,
    options: { pollMs?: number; onError?: (err: unknown) => void } = {},
  ): () => Promise<void> {
    return this.keyChanges.subscribe(listener, options);
  }

  /** The project, kind and scopes a presented key grants, or undefined when unknown or revoked. */
  async authenticate(key: string): Promise<Principal | undefined> {
    const row = await this.db
      .selectFrom('api_keys')
      .select(['id', 'project_id', 'kind', 'scopes'])
      .where('key_hash', '=', hashApiKey(key))
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return (
      row && {
        projectId: row.project_id,
        keyId: row.id,
        kind: row.kind,
        scopes: decodeScopes(row.scopes),
        actor: `api:${row.id}`,
      }
    );
  }

  /** The project's retention policy (in `projects.settings`), or undefined when it keeps everything. */
  async retention(projectId: string): Promise<RetentionPolicy | undefined> {
    const row = await this.db
      .selectFrom('projects')
      .select('settings')
      .where('id', '=', projectId)
      .executeTakeFirst();
    if (!row) throw new RatchetError('not_found', `project ${projectId} not found`, 'projectId');
    const settings = decodeJson<{ retention?: unknown }>(this.dialect, row.settings) ?? {};
    return settings.retention === undefined ? undefined : RetentionPolicy.parse(settings.retention);
  }

  /** Sets (or with null, removes) the retention policy; audited. */
  async setRetention(projectId: string, given: RetentionPolicy | null, actor: string): Promise<void> {
    const policy = given === null ? null : parseInput(RetentionPolicy, given);
    await this.db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('projects')
        .select('settings')
        .where('id', '=', projectId)
        .executeTakeFirst();
      if (!row) throw new RatchetError('not_found', `project ${projectId} not found`, 'projectId');
      const { retention: _, ...rest } = decodeJson<Record<string, unknown>>(this.dialect, row.settings) ?? {};
      const settings = policy === null ? rest : { ...rest, retention: policy };
      await trx
        .updateTable('projects')
        .set({ settings: encodeJson(settings) })
        .where('id', '=', projectId)
        .execute();
      await this.audit.record(
        {
          projectId,
          actor,
          action: policy === null ? 'retention.removed' : 'retention.set',
          subjectType: 'project',
          subjectId: projectId,
          details: policy === null ? {} : { ...policy },
        },
        trx,
      );
    });
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
