import { parseInput, type ScoreConfig, ScoreConfigInput } from '@ratchet/core';
import type { Kysely, Selectable } from 'kysely';
import type { DialectName } from './connection.js';
import { decodeJson, encodeJson } from './json.js';
import type { Database, ScoreConfigsTable } from './schema.js';

export class ScoreConfigRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
  ) {}

  async list(projectId: string, db: Kysely<Database> = this.db): Promise<ScoreConfig[]> {
    const rows = await db
      .selectFrom('score_configs')
      .selectAll()
      .where('project_id', '=', projectId)
      .orderBy('name')
      .execute();
    return rows.map((r) => this.fromRow(r));
  }

  async byName(projectId: string, db: Kysely<Database> = this.db): Promise<Map<string, ScoreConfig>> {
    return new Map((await this.list(projectId, db)).map((c) => [c.name, c]));
  }

  /** Adds or replaces a config. Existing ratings keep the values they were given. */
  async upsert(projectId: string, input: unknown): Promise<ScoreConfig> {
    const c = parseInput(ScoreConfigInput, input);
    const row = {
      project_id: projectId,
      name: c.name,
      usage: c.usage,
      data_type: c.dataType,
      min: c.min ?? null,
      max: c.max ?? null,
      categories: c.categories ? encodeJson(c.categories) : null,
      weight: c.weight,
      description: c.description ?? null,
      created_at: Date.now(),
    };
    const { project_id: _p, name: _n, created_at: _c, ...update } = row;
    await this.db
      .insertInto('score_configs')
      .values(row)
      .onConflict((oc) => oc.columns(['project_id', 'name']).doUpdateSet(update))
      .execute();
    return {
      name: c.name,
      usage: c.usage,
      dataType: c.dataType,
      min: row.min,
      max: row.max,
      categories: c.categories ?? null,
      weight: c.weight,
      description: row.description,
    };
  }

  /** A stored row as a config (also for callers that read the table with their own statement). */
  fromRow(r: Selectable<ScoreConfigsTable>): ScoreConfig {
    return {
      name: r.name,
      usage: r.usage,
      dataType: r.data_type,
      min: r.min,
      max: r.max,
      categories: r.categories === null ? null : decodeJson<string[]>(this.dialect, r.categories),
      weight: r.weight,
      description: r.description,
    };
  }
}
