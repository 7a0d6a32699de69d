import { type CreateTableBuilder, type Kysely, type Migration, sql } from 'kysely';
import type { DialectName } from './connection.js';
import {
  createMonthPartition,
  MONTHS_AHEAD,
  monthIndexOf,
  monthPartition,
  PARTITIONED_TABLES,
} from './partitions.js';

// Migrations are code, not files, so the store works from a bundled build and both databases run
// the same steps. The column types that differ by database come from `types(dialect)`.
// biome-ignore lint/suspicious/noExplicitAny: migrations run before the typed schema exists.
type AnyDb = Kysely<any>;

/**
 * On SQLite, tables keyed by a composite primary key are stored in key order (WITHOUT ROWID):
 * one B-tree instead of a rowid table plus an index, so walks in key order (calibration reads
 * every current rating) are sequential reads and writes touch one tree. PostgreSQL is unchanged.
 */
function clustered(dialect: DialectName) {
  // biome-ignore lint/suspicious/noExplicitAny: applies to any CreateTableBuilder.
  return <B extends { modifyEnd(modifier: any): B }>(builder: B): B =>
    dialect === 'sqlite' ? builder.modifyEnd(sql`without rowid`) : builder;
}

/**
 * A calibrated reward's columns: interaction_rewards (0002) and interaction_reward_changes (0040)
 * hold the same, so that current_rewards reads either alike.
 */
function rewardColumns(dialect: DialectName) {
  const real = types(dialect).real;
  // biome-ignore lint/suspicious/noExplicitAny: applies to any CreateTableBuilder.
  return (builder: CreateTableBuilder<any, any>) =>
    builder
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('interaction_id', 'text', (c) => c.notNull())
      .addColumn('calibration_id', 'text', (c) => c.notNull())
      .addColumn('n', 'integer', (c) => c.notNull())
      .addColumn('raw_mean', real, (c) => c.notNull())
      .addColumn('reward', real, (c) => c.notNull())
      .addColumn('sd', real, (c) => c.notNull())
      .addColumn('lower', real, (c) => c.notNull())
      .addColumn('upper', real, (c) => c.notNull());
}

function types(dialect: DialectName) {
  return {
    json: dialect === 'postgres' ? ('jsonb' as const) : ('text' as const),
    time: 'bigint' as const,
    real: 'double precision' as const,
  };
}

function initial(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('projects')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('settings', t.json, (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('api_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('key_hash', 'text', (c) => c.notNull().unique())
        .addColumn('display_prefix', 'text', (c) => c.notNull())
        .addColumn('name', 'text')
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addColumn('revoked_at', t.time)
        .execute();
      await db.schema.createIndex('api_keys_project').on('api_keys').column('project_id').execute();

      await db.schema
        .createTable('interactions')
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('id', 'text', (c) => c.notNull())
        .addColumn('route', 'text')
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('variant', 'text')
        .addColumn('messages', t.json, (c) => c.notNull())
        .addColumn('output', t.json, (c) => c.notNull())
        .addColumn('parameters', t.json, (c) => c.notNull())
        .addColumn('latency_ms', t.real)
        .addColumn('input_tokens', 'integer')
        .addColumn('output_tokens', 'integer')
        .addColumn('total_tokens', 'integer')
        .addColumn('session_id', 'text')
        .addColumn('user_id', 'text')
        .addColumn('metadata', t.json, (c) => c.notNull())
        .addColumn('tags', t.json, (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('error', 'text')
        .addColumn('trace_id', 'text')
        .addColumn('span_id', 'text')
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('prompt_hash', 'text', (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addColumn('received_at', t.time, (c) => c.notNull())
        .addPrimaryKeyConstraint('interactions_pk', ['project_id', 'id'])
        .execute();
      const interactionIndexes: [string, string[]][] = [
        ['interactions_time', ['project_id', 'created_at', 'id']],
        ['interactions_route', ['project_id', 'route', 'created_at']],
        ['interactions_model', ['project_id', 'model', 'created_at']],
        ['interactions_user', ['project_id', 'user_id']],
        ['interactions_session', ['project_id', 'session_id']],
        ['interactions_prompt', ['project_id', 'prompt_hash']],
      ];
      for (const [name, columns] of interactionIndexes) {
        await db.schema.createIndex(name).on('interactions').columns(columns).execute();
      }

      await db.schema
        .createTable('interaction_tags')
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('interaction_id', 'text', (c) => c.notNull())
        .addColumn('tag', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('interaction_tags_pk', ['project_id', 'tag', 'interaction_id'])
        .addForeignKeyConstraint(
          'interaction_tags_fk',
          ['project_id', 'interaction_id'],
          'interactions',
          ['project_id', 'id'],
          (c) => c.onDelete('cascade'),
        )
        .$call(clustered(dialect))
        .execute();
      await db.schema
        .createIndex('interaction_tags_interaction')
        .on('interaction_tags')
        .columns(['project_id', 'interaction_id'])
        .execute();

      await db.schema
        .createTable('feedback')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('interaction_id', 'text', (c) => c.notNull())
        .addColumn('rater_id', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('value', t.real)
        .addColumn('label', 'text')
        .addColumn('text', 'text')
        .addColumn('data', t.json)
        .addColumn('idempotency_key', 'text')
        .addColumn('metadata', t.json, (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addColumn('received_at', t.time, (c) => c.notNull())
        .addForeignKeyConstraint(
          'feedback_interaction_fk',
          ['project_id', 'interaction_id'],
          'interactions',
          ['project_id', 'id'],
          (c) => c.onDelete('cascade'),
        )
        .execute();
      await db.schema
        .createIndex('feedback_interaction')
        .on('feedback')
        .columns(['project_id', 'interaction_id', 'created_at'])
        .execute();
      await db.schema
        .createIndex('feedback_rater')
        .on('feedback')
        .columns(['project_id', 'rater_id'])
        .execute();
      await db.schema
        .createIndex('feedback_time')
        .on('feedback')
        .columns(['project_id', 'created_at'])
        .execute();
      await db.schema
        .createIndex('feedback_idempotency')
        .on('feedback')
        .columns(['project_id', 'idempotency_key'])
        .unique()
        .where('idempotency_key', 'is not', null)
        .execute();

      await db.schema
        .createTable('feedback_current')
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('interaction_id', 'text', (c) => c.notNull())
        .addColumn('rater_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('feedback_id', 'text', (c) => c.notNull().references('feedback.id').onDelete('cascade'))
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addPrimaryKeyConstraint('feedback_current_pk', ['project_id', 'interaction_id', 'rater_id', 'kind'])
        .$call(clustered(dialect))
        .execute();
      await db.schema
        .createIndex('feedback_current_kind')
        .on('feedback_current')
        .columns(['project_id', 'kind'])
        .execute();

      await db.schema
        .createTable('raters')
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('id', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('feedback_count', 'integer', (c) => c.notNull())
        .addColumn('first_seen_at', t.time, (c) => c.notNull())
        .addColumn('last_seen_at', t.time, (c) => c.notNull())
        .addColumn('bias', t.real)
        .addColumn('scale', t.real)
        .addColumn('reliability', t.real)
        .addColumn('flagged', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('flag_reason', 'text')
        .addColumn('calibrated_at', t.time)
        .addPrimaryKeyConstraint('raters_pk', ['project_id', 'id'])
        .execute();

      await db.schema
        .createTable('score_configs')
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('usage', 'text', (c) => c.notNull())
        .addColumn('data_type', 'text', (c) => c.notNull())
        .addColumn('min', t.real)
        .addColumn('max', t.real)
        .addColumn('categories', t.json)
        .addColumn('weight', t.real, (c) => c.notNull())
        .addColumn('description', 'text')
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addPrimaryKeyConstraint('score_configs_pk', ['project_id', 'name'])
        .execute();
    },
  };
}

/** Calibration results and dataset versions (issue "From ratings to training data"). */
function calibrationAndDatasets(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      for (const [column, type] of [
        ['noise_sd', t.real],
        ['consensus_corr', t.real],
        ['influence', t.real],
      ] as const) {
        await db.schema.alterTable('raters').addColumn(column, type).execute();
      }

      await db.schema
        .createTable('calibration_runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('options', t.json, (c) => c.notNull())
        .addColumn('stats', t.json, (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('calibration_runs_project')
        .on('calibration_runs')
        .columns(['project_id', 'created_at'])
        .execute();

      // The latest calibrated reward per interaction; replaced by each calibration run.
      await db.schema
        .createTable('interaction_rewards')
        .$call(rewardColumns(dialect))
        .addPrimaryKeyConstraint('interaction_rewards_pk', ['project_id', 'interaction_id'])
        .addForeignKeyConstraint(
          'interaction_rewards_fk',
          ['project_id', 'interaction_id'],
          'interactions',
          ['project_id', 'id'],
          (c) => c.onDelete('cascade'),
        )
        .$call(clustered(dialect))
        .execute();

      await db.schema
        .createTable('datasets')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('method', 'text', (c) => c.notNull())
        .addColumn('spec', t.json, (c) => c.notNull())
        .addColumn('content_hash', 'text', (c) => c.notNull())
        .addColumn('row_count', 'integer', (c) => c.notNull())
        .addColumn('manifest', t.json, (c) => c.notNull())
        .addColumn('path', 'text', (c) => c.notNull())
        .addColumn('calibration_id', 'text')
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addUniqueConstraint('datasets_version', ['project_id', 'name', 'version'])
        .execute();

      // Which interactions a dataset version used, and in which split ("dataset membership").
      await db.schema
        .createTable('dataset_interactions')
        .addColumn('dataset_id', 'text', (c) => c.notNull().references('datasets.id').onDelete('cascade'))
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('interaction_id', 'text', (c) => c.notNull())
        .addColumn('split', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('dataset_interactions_pk', ['dataset_id', 'interaction_id'])
        .$call(clustered(dialect))
        .execute();
      await db.schema
        .createIndex('dataset_interactions_interaction')
        .on('dataset_interactions')
        .columns(['project_id', 'interaction_id'])
        .execute();
    },
  };
}

/**
 * One row per criterion of each criteria event, so breakdowns (by model, route, tag) and
 * correlations between criteria are plain SQL on both databases instead of JSON functions.
 */
function feedbackScores(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('feedback_scores')
        .addColumn('feedback_id', 'text', (c) => c.notNull().references('feedback.id').onDelete('cascade'))
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('interaction_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('value', t.real, (c) => c.notNull())
        .addColumn('reward', t.real, (c) => c.notNull())
        .addColumn('label', 'text')
        .addPrimaryKeyConstraint('feedback_scores_pk', ['feedback_id', 'name'])
        .$call(clustered(dialect))
        .execute();
      await db.schema
        .createIndex('feedback_scores_name')
        .on('feedback_scores')
        .columns(['project_id', 'name'])
        .execute();
    },
  };
}

/** Training runs, the model registry and the audit log (issues "Model worker" and "Evaluate"). */
function runsAndRegistry(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('method', 'text', (c) => c.notNull())
        .addColumn('base_model', 'text', (c) => c.notNull())
        .addColumn('dataset_id', 'text', (c) => c.references('datasets.id'))
        .addColumn('spec', t.json, (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('progress', t.json, (c) => c.notNull())
        .addColumn('metrics', t.json, (c) => c.notNull())
        .addColumn('artifacts', t.json)
        .addColumn('error', 'text')
        .addColumn('output_dir', 'text', (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addColumn('started_at', t.time)
        .addColumn('finished_at', t.time)
        .addColumn('heartbeat_at', t.time)
        .execute();
      await db.schema.createIndex('runs_project').on('runs').columns(['project_id', 'created_at']).execute();

      await db.schema
        .createTable('models')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('route', 'text')
        .addColumn('base_model', 'text', (c) => c.notNull())
        .addColumn('adapter_path', 'text')
        .addColumn('run_id', 'text', (c) => c.references('runs.id'))
        .addColumn('dataset_id', 'text', (c) => c.references('datasets.id'))
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('metrics', t.json, (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addColumn('updated_at', t.time, (c) => c.notNull())
        .addUniqueConstraint('models_name', ['project_id', 'name'])
        .execute();
      await db.schema
        .createIndex('models_route_stage')
        .on('models')
        .columns(['project_id', 'route', 'stage'])
        .execute();

      await db.schema
        .createTable('audit_log')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('subject_type', 'text', (c) => c.notNull())
        .addColumn('subject_id', 'text', (c) => c.notNull())
        .addColumn('details', t.json, (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('audit_log_subject')
        .on('audit_log')
        .columns(['project_id', 'subject_type', 'subject_id', 'created_at'])
        .execute();
      await db.schema
        .createIndex('audit_log_time')
        .on('audit_log')
        .columns(['project_id', 'created_at'])
        .execute();
    },
  };
}

/**
 * The current event's value and label beside its pointer: calibration reads millions of current
 * ratings, and a join back to `feedback` for each (random reads by id) cost more than the rest.
 */
/** The loop's rounds: one row per round of a route, its stage and what each stage produced. */
function loopRounds(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('loop_rounds')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('route', 'text', (c) => c.notNull())
        .addColumn('round', 'integer', (c) => c.notNull())
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('state', t.json, (c) => c.notNull())
        .addColumn('policy', t.json, (c) => c.notNull())
        .addColumn('error', 'text')
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addColumn('updated_at', t.time, (c) => c.notNull())
        .addColumn('finished_at', t.time)
        .addUniqueConstraint('loop_rounds_round', ['project_id', 'route', 'round'])
        .execute();
    },
  };
}

/**
 * Ingest cost: every secondary index on `feedback` is paid on each event, and nothing reads
 * feedback by rater through `feedback_rater` (per-rater views use `feedback_current` and `raters`).
 * Measured on SQLite, dropping it cut the insert's CPU per event by about a third.
 */
function feedbackWritePath(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema.dropIndex('feedback_rater').ifExists().execute();
    },
  };
}

function currentValues(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema.alterTable('feedback_current').addColumn('value', t.real).execute();
      await db.schema.alterTable('feedback_current').addColumn('label', 'text').execute();
      await sql`update feedback_current set value = (select f.value from feedback f where f.id = feedback_current.feedback_id), label = (select f.label from feedback f where f.id = feedback_current.feedback_id)`.execute(
        db,
      );
    },
  };
}

/**
 * Training jobs: the request a run was made from (model name, route, dataset ref), a cancel flag
 * that whichever process runs the job polls (it may be a remote `ratchet worker`), and how many
 * times it was started, so a resume after a crash is visible.
 */
function jobs(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema.alterTable('runs').addColumn('request', t.json).execute();
      await db.schema.alterTable('runs').addColumn('cancel_requested_at', t.time).execute();
      await db.schema
        .alterTable('runs')
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.alterTable('runs').addColumn('worker', 'text').execute();
      await db.schema.createIndex('runs_status').on('runs').columns(['status', 'heartbeat_at']).execute();
    },
  };
}

/**
 * Evaluations with their per-item results, routes kept in the database (the gateway consults them
 * beside its file), and experiments with their decision history (issue 6).
 */
function evaluationsAndExperiments(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('evaluations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('name', 'text')
        .addColumn('candidate_model_id', 'text', (c) => c.references('models.id'))
        .addColumn('baseline_model_id', 'text', (c) => c.references('models.id'))
        .addColumn('spec', t.json, (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('summary', t.json)
        .addColumn('gate', t.json)
        .addColumn('passed', 'integer')
        .addColumn('error', 'text')
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addColumn('finished_at', t.time)
        .execute();
      await db.schema
        .createIndex('evaluations_project')
        .on('evaluations')
        .columns(['project_id', 'created_at'])
        .execute();
      await db.schema
        .createTable('evaluation_items')
        .addColumn('evaluation_id', 'text', (c) =>
          c.notNull().references('evaluations.id').onDelete('cascade'),
        )
        .addColumn('idx', 'integer', (c) => c.notNull())
        .addColumn('suite', 'text', (c) => c.notNull())
        .addColumn('item_id', 'text', (c) => c.notNull())
        .addColumn('category', 'text')
        .addColumn('judge', 'text')
        .addColumn('result', t.json, (c) => c.notNull())
        .addPrimaryKeyConstraint('evaluation_items_pk', ['evaluation_id', 'idx'])
        .$call(clustered(dialect))
        .execute();

      await db.schema
        .createTable('gateway_routes')
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('variants', t.json, (c) => c.notNull())
        .addColumn('updated_at', t.time, (c) => c.notNull())
        .addPrimaryKeyConstraint('gateway_routes_pk', ['project_id', 'name'])
        .$call(clustered(dialect))
        .execute();

      await db.schema
        .createTable('experiments')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('route', 'text', (c) => c.notNull())
        .addColumn('control', 'text', (c) => c.notNull())
        .addColumn('variants', t.json, (c) => c.notNull())
        .addColumn('metric', 'text', (c) => c.notNull())
        .addColumn('engine', 'text', (c) => c.notNull())
        .addColumn('decision_rule', t.json, (c) => c.notNull())
        .addColumn('bandit', 'integer', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('state', t.json)
        .addColumn('history', t.json, (c) => c.notNull())
        .addColumn('started_at', t.time, (c) => c.notNull())
        .addColumn('stopped_at', t.time)
        .execute();
      await db.schema
        .createIndex('experiments_route')
        .on('experiments')
        .columns(['project_id', 'route', 'status'])
        .execute();
    },
  };
}

/**
 * The dashboard's reads (bench/dashboard-load.ts): criteria aggregates join `feedback_scores` to
 * the current events by `feedback_id`, which without this index scanned `feedback_current` once
 * per score (seconds on a few thousand ratings).
 */
function dashboardIndexes(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .createIndex('feedback_current_feedback')
        .on('feedback_current')
        .column('feedback_id')
        .execute();
    },
  };
}

/**
 * Gateway interactions the log writer could not store as they were. `payload` is text, not
 * JSON: it holds JSON text with every NUL escaped, which PostgreSQL's jsonb would refuse.
 */
function deadLetters(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('dead_letters')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('interaction_id', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('error', 'text', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('payload_truncated', 'integer', (c) => c.notNull())
        .addColumn('repaired', 'integer', (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('dead_letters_project_created')
        .on('dead_letters')
        .columns(['project_id', 'created_at', 'id'])
        .execute();
    },
  };
}

/**
 * Each project's HMAC key for feedback tokens. Stored in the database (not per process) so every
 * server on it verifies the tokens any of them issued. An HMAC key cannot be hashed like an API
 * key: the server needs it to sign. No API returns it.
 */
function feedbackTokens(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('feedback_token_keys')
        .addColumn('project_id', 'text', (c) => c.primaryKey().references('projects.id').onDelete('cascade'))
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .execute();
    },
  };
}

/**
 * A counter that every write to `gateway_routes` bumps in the same transaction: a gateway in
 * another process on the same SQLite file notices a change by reading one number (see
 * GatewayRouteRepository.subscribe), and PostgreSQL gateways use it when LISTEN was down.
 */
function servedRoutes(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('gateway_route_version')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('version', 'bigint', (c) => c.notNull())
        .execute();
      await db.insertInto('gateway_route_version').values({ id: 1, version: 0 }).execute();
    },
  };
}

/**
 * Gateway calls that are usage only (embeddings): a table of their own, so nothing that reads
 * interactions (feedback, the annotation queue, curation, datasets) can ever see them.
 */
function gatewaySurface(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('usage_records')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('route', 'text')
        .addColumn('variant', 'text')
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('upstream', 'text', (c) => c.notNull())
        .addColumn('user_id', 'text')
        .addColumn('inputs', 'integer', (c) => c.notNull())
        .addColumn('input_tokens', 'integer')
        .addColumn('total_tokens', 'integer')
        .addColumn('latency_ms', t.real, (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('error', 'text')
        .addColumn('created_at', t.time, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('usage_records_project_created')
        .on('usage_records')
        .columns(['project_id', 'created_at', 'id'])
        .execute();
    },
  };
}

/**
 * A watch per promotion (see watches.ts): the route serves the new model with the previous one
 * as a small sticky holdback until the watch ends or rolls back; every look is kept with its
 * evidence. Apart from `experiments`: an experiment blocks stage changes on its route and a loop
 * round waits on it, while a watch must let a rollback (its own, or a person's) through.
 */
function promotionWatches(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('promotion_watches')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('route', 'text', (c) => c.notNull())
        .addColumn('model_id', 'text', (c) => c.notNull())
        .addColumn('holdback_model_id', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('policy', t.json, (c) => c.notNull())
        .addColumn('state', t.json, (c) => c.notNull())
        .addColumn('opened_by', 'text', (c) => c.notNull())
        .addColumn('opened_at', t.time, (c) => c.notNull())
        .addColumn('closed_at', t.time)
        .addColumn('outcome', t.json)
        .execute();
      await db.schema
        .createIndex('promotion_watches_project_status')
        .on('promotion_watches')
        .columns(['project_id', 'status', 'route'])
        .execute();
      await db.schema
        .createTable('promotion_watch_looks')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('watch_id', 'text', (c) =>
          c.notNull().references('promotion_watches.id').onDelete('cascade'),
        )
        .addColumn('decision', 'text', (c) => c.notNull())
        .addColumn('reasons', t.json, (c) => c.notNull())
        .addColumn('evidence', t.json, (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('promotion_watch_looks_watch')
        .on('promotion_watch_looks')
        .columns(['watch_id', 'created_at'])
        .execute();
    },
  };
}

/**
 * The guardrail's watch policy per route (see WatchRepository.setPolicy): what the next promotion
 * on the route is watched with, set by the API or the CLI. One row per route, the whole parsed
 * policy, so a watch opened later reads exactly what was validated.
 */
function deployHealth(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('route_watch_policies')
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('route', 'text', (c) => c.notNull())
        .addColumn('policy', t.json, (c) => c.notNull())
        .addColumn('updated_by', 'text', (c) => c.notNull())
        .addColumn('updated_at', t.time, (c) => c.notNull())
        .addPrimaryKeyConstraint('route_watch_policies_pk', ['project_id', 'route'])
        .execute();
    },
  };
}

/**
 * Scopes per key (space-separated, see core `apiKeyScopes`): an existing secret key keeps doing
 * everything, a public key keeps its token-bound feedback. And a counter every key change bumps,
 * so servers in other processes on one SQLite file drop their cached keys (PostgreSQL also
 * NOTIFYs; see ChangeSignal).
 */
function keyScopes(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .alterTable('api_keys')
        .addColumn('scopes', 'text', (c) => c.notNull().defaultTo(''))
        .execute();
      await db
        .updateTable('api_keys')
        .set({ scopes: 'ingest public read admin' })
        .where('kind', '=', 'secret')
        .execute();
      await db.updateTable('api_keys').set({ scopes: 'public' }).where('kind', '=', 'public').execute();
      await db.schema
        .createTable('api_key_version')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('version', 'bigint', (c) => c.notNull())
        .execute();
      await db.insertInto('api_key_version').values({ id: 1, version: 0 }).execute();
    },
  };
}

/**
 * Marks left by deleting people's data (deletion.ts): a dataset version counts the interactions
 * and file rows it lost and when; a model trained on such a version says when its data was
 * later deleted (the registry shows it).
 */
function deletion(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .alterTable('datasets')
        .addColumn('deleted_interactions', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .alterTable('datasets')
        .addColumn('deleted_rows', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.alterTable('datasets').addColumn('data_deleted_at', 'bigint').execute();
      await db.schema.alterTable('models').addColumn('data_deleted_at', 'bigint').execute();
    },
  };
}

/** Which server runs a route's loop round: one lease row per route (leases.ts). */
function roundLeases(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('round_leases')
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('route', 'text', (c) => c.notNull())
        .addColumn('holder', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('acquired_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('round_leases_pk', ['project_id', 'route'])
        .execute();
    },
  };
}

/** Per-key request counts shared by the servers on one PostgreSQL (leases.ts, RateWindowRepository). */
function rateLimits(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('rate_limit_windows')
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('window_start', 'bigint', (c) => c.notNull())
        .addColumn('hits', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('rate_limit_windows_pk', ['key', 'window_start'])
        .execute();
    },
  };
}

/**
 * People (accounts.ts): accounts with an argon2 password hash and/or an OpenID Connect subject,
 * their role in each project, and sign-in sessions stored by the SHA-256 of their id (the cookie
 * holds the id; a leaked table cannot be replayed).
 */
function accounts(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('users')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('email', 'text', (c) => c.notNull().unique())
        .addColumn('name', 'text')
        .addColumn('password_hash', 'text')
        .addColumn('oidc_issuer', 'text')
        .addColumn('oidc_subject', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('users_oidc_idx')
        .on('users')
        .columns(['oidc_issuer', 'oidc_subject'])
        .unique()
        .execute();
      await db.schema
        .createTable('project_members')
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('project_members_pk', ['project_id', 'user_id'])
        .execute();
      await db.schema
        .createIndex('project_members_user_idx')
        .on('project_members')
        .column('user_id')
        .execute();
      await db.schema
        .createTable('sessions')
        .addColumn('id_hash', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('csrf_hash', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('sessions_user_idx').on('sessions').column('user_id').execute();
    },
  };
}

/** The annotation team's queue: item locks, who finished what, adjudicated labels (annotation.ts). */
function annotationAssignments(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      // One row per item being rated: the primary key is the lock, so two claims cannot both hold it.
      await db.schema
        .createTable('annotation_locks')
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('interaction_id', 'text', (c) => c.notNull())
        .addColumn('annotator_id', 'text', (c) => c.notNull())
        .addColumn('claimed_at', t.time, (c) => c.notNull())
        .addColumn('expires_at', t.time, (c) => c.notNull())
        .addPrimaryKeyConstraint('annotation_locks_pk', ['project_id', 'interaction_id'])
        .execute();
      await db.schema
        .createTable('annotation_assignments')
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('interaction_id', 'text', (c) => c.notNull())
        .addColumn('annotator_id', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('overlap', 'integer', (c) => c.notNull())
        .addColumn('finished_at', t.time, (c) => c.notNull())
        .addPrimaryKeyConstraint('annotation_assignments_pk', [
          'project_id',
          'interaction_id',
          'annotator_id',
        ])
        .execute();
      await db.schema
        .createIndex('annotation_assignments_annotator')
        .on('annotation_assignments')
        .columns(['project_id', 'annotator_id'])
        .execute();
      await db.schema
        .createTable('annotation_adjudications')
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('interaction_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('value', t.json, (c) => c.notNull())
        .addColumn('note', 'text')
        .addColumn('decided_by', 'text', (c) => c.notNull())
        .addColumn('decided_at', t.time, (c) => c.notNull())
        .addPrimaryKeyConstraint('annotation_adjudications_pk', ['project_id', 'interaction_id', 'kind'])
        .execute();
    },
  };
}

/**
 * The figures an hourly or daily rollup row holds per route and model (rollups.ts reads both
 * tables alike), after the table's own key columns.
 */
function rollupFigures<N extends string, C extends string>(
  table: CreateTableBuilder<N, C>,
  t: ReturnType<typeof types>,
) {
  return table
    .addColumn('route', 'text', (c) => c.notNull())
    .addColumn('model', 'text', (c) => c.notNull())
    .addColumn('calls', 'bigint', (c) => c.notNull())
    .addColumn('errors', 'bigint', (c) => c.notNull())
    .addColumn('input_tokens', 'bigint', (c) => c.notNull())
    .addColumn('output_tokens', 'bigint', (c) => c.notNull())
    .addColumn('latency_n', 'bigint', (c) => c.notNull())
    .addColumn('latency_bins', 'text', (c) => c.notNull())
    .addColumn('thumbs_up', 'bigint', (c) => c.notNull())
    .addColumn('thumbs_down', 'bigint', (c) => c.notNull())
    .addColumn('stars_n', 'bigint', (c) => c.notNull())
    .addColumn('stars_sum', t.real, (c) => c.notNull())
    .addColumn('stars_sum_sq', t.real, (c) => c.notNull());
}

/**
 * The dashboard's rollups (rollups.ts). Every hour that already holds interactions or feedback is
 * logged as stale, so the first roll-forward (or `ratchet rollups rebuild`) fills them.
 */
function rollups(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await clustered(dialect)(
        rollupFigures(
          db.schema
            .createTable('rollup_hours')
            .addColumn('project_id', 'text', (c) => c.notNull())
            .addColumn('hour', t.time, (c) => c.notNull()),
          t,
        ).addPrimaryKeyConstraint('rollup_hours_pk', ['project_id', 'hour', 'route', 'model']),
      ).execute();
      await clustered(dialect)(
        db.schema
          .createTable('rollup_feedback_hours')
          .addColumn('project_id', 'text', (c) => c.notNull())
          .addColumn('hour', t.time, (c) => c.notNull())
          .addColumn('events', 'bigint', (c) => c.notNull())
          .addPrimaryKeyConstraint('rollup_feedback_hours_pk', ['project_id', 'hour']),
      ).execute();
      await db.schema
        .createTable('rollup_log')
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('id', 'text', (c) => c.notNull())
        .addColumn('hour', t.time, (c) => c.notNull())
        .addPrimaryKeyConstraint('rollup_log_pk', ['project_id', 'id'])
        .execute();
      for (const table of ['interactions', 'feedback'])
        await sql`insert into rollup_log (project_id, id, hour)
          select project_id, ${`migration:${table}:`} || cast(hour as text), hour
          from (select distinct project_id, (created_at / 3600000) * 3600000 as hour from ${sql.table(table)}) h`.execute(
          db,
        );
    },
  };
}

/**
 * Daily rollups (rollups.ts): a row per project, UTC day, route and model, merged from the day's
 * hourly rows by the same roll-forward, so long windows read a row per day instead of 24. One
 * hour per day that already has rollups is logged as stale: its roll-forward refills that day.
 * Also an index of current ratings by rater (project, rater) for the explorer's rater filter.
 */
function rollupsDaily(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await clustered(dialect)(
        rollupFigures(
          db.schema
            .createTable('rollup_days')
            .addColumn('project_id', 'text', (c) => c.notNull())
            .addColumn('day', t.time, (c) => c.notNull()),
          t,
        ).addPrimaryKeyConstraint('rollup_days_pk', ['project_id', 'day', 'route', 'model']),
      ).execute();
      // The explorer filtered by rater (and rating) found that rater's current ratings by reading
      // every current rating of the project: at 20 million, seconds. Through this, a few thousand.
      await db.schema
        .createIndex('feedback_current_rater')
        .on('feedback_current')
        .columns(['project_id', 'rater_id'])
        .execute();
      await sql`insert into rollup_log (project_id, id, hour)
        select project_id, 'migration-days:' || cast(day as text), min(hour)
        from (select project_id, hour, (hour / 86400000) * 86400000 as day from rollup_hours) h
        group by project_id, day`.execute(db);
    },
  };
}

/**
 * Which interaction a Responses API answer was logged as (see response-links.ts): an upstream
 * that speaks Responses keeps the conversation, and a later turn names it only by
 * `previous_response_id`, so the gateway needs this to link the turn to the earlier one.
 */
function responsesStore(dialect: DialectName): Migration {
  const t = types(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('gateway_responses')
        .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('response_id', 'text', (c) => c.notNull())
        .addColumn('interaction_id', 'text', (c) => c.notNull())
        .addColumn('conversation_id', 'text', (c) => c.notNull())
        .addColumn('session_id', 'text')
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addPrimaryKeyConstraint('gateway_responses_pk', ['project_id', 'response_id'])
        .execute();
      // Deleting an interaction deletes its link (deletion.ts looks it up by interaction).
      await db.schema
        .createIndex('gateway_responses_interaction')
        .on('gateway_responses')
        .columns(['project_id', 'interaction_id'])
        .execute();
    },
  };
}

/**
 * PostgreSQL only (SQLite unchanged): `interactions` and `feedback` become range partitioned on
 * `created_at` by UTC month plus a default partition (partitions.ts), so retention can drop a
 * month instead of deleting its rows. A partitioned table's primary key must hold the partition
 * key, so uniqueness that spans months moves to two small unpartitioned tables, written by
 * triggers in the same statement (every write path, COPY included, keeps them):
 * - `interaction_ids (project_id, id)`: an interaction id is unique per project; the tables that
 *   pointed at `interactions` (tags, rewards, feedback, current values, criterion scores) now
 *   reference it, and deleting an interaction deletes its id row, which cascades as before;
 * - `feedback_keys (project_id, idempotency_key)`: an idempotency key is unique per project.
 * Existing rows are copied into the new tables and the names swapped, in the migration's
 * transaction (a large database migrates offline; see docs/architecture.md).
 */
function partitions(dialect: DialectName): Migration {
  return {
    async up(db: AnyDb) {
      if (dialect !== 'postgres') return;
      const run = (q: string) => sql.raw(q).execute(db);
      await run(`create table interaction_ids (
        project_id text not null references projects(id) on delete cascade,
        id text not null,
        created_at bigint not null,
        constraint interaction_ids_pk primary key (project_id, id))`);
      await run('create index interaction_ids_time on interaction_ids (project_id, created_at)');
      await run(
        'insert into interaction_ids (project_id, id, created_at) select project_id, id, created_at from interactions',
      );

      // The new tables, their partitions (every month that holds rows, from 2000 on, and the
      // months ahead), then the rows; indexes are built after the copy, which is faster.
      const { rows } = await sql<{ month: number }>`
        select distinct (extract(year from t) * 12 + extract(month from t) - 1)::int as month
        from (select to_timestamp(created_at / 1000.0) at time zone 'UTC' as t from interactions
              union all select to_timestamp(created_at / 1000.0) at time zone 'UTC' from feedback) x
        where t >= '2000-01-01' and t < now() + interval '10 years'`.execute(db);
      const now = monthIndexOf(Date.now());
      const months = new Set(rows.map((r) => r.month));
      for (let m = now; m <= now + MONTHS_AHEAD; m++) months.add(m);
      for (const table of PARTITIONED_TABLES) {
        await run(
          `create table ${table}_next (like ${table} including defaults) partition by range (created_at)`,
        );
        await run(`create table ${table}_default partition of ${table}_next default`);
        for (const month of [...months].sort((a, b) => a - b)) {
          await createMonthPartition(db, monthPartition(table, month), `${table}_next`);
        }
        await run(`insert into ${table}_next select * from ${table}`);
      }
      // Dropping the old tables drops the foreign keys into them (tags, rewards, current values,
      // scores); they are made again below, against interaction_ids.
      await run('drop table feedback cascade');
      await run('drop table interactions cascade');
      for (const table of PARTITIONED_TABLES) await run(`alter table ${table}_next rename to ${table}`);

      await run(
        'alter table interactions add constraint interactions_pk primary key (project_id, id, created_at)',
      );
      await run(
        'alter table interactions add constraint interactions_project_fk foreign key (project_id) references projects(id) on delete cascade',
      );
      for (const [name, columns] of [
        ['interactions_time', 'project_id, created_at, id'],
        ['interactions_route', 'project_id, route, created_at'],
        ['interactions_model', 'project_id, model, created_at'],
        ['interactions_user', 'project_id, user_id'],
        ['interactions_session', 'project_id, session_id'],
        ['interactions_prompt', 'project_id, prompt_hash'],
      ])
        await run(`create index ${name} on interactions (${columns})`);
      await run('alter table feedback add constraint feedback_pk primary key (id, created_at)');
      await run('create index feedback_interaction on feedback (project_id, interaction_id, created_at)');
      await run('create index feedback_time on feedback (project_id, created_at)');
      // Not unique per partition any more (feedback_keys is); kept for reading a repeat's event.
      await run(
        'create index feedback_idempotency on feedback (project_id, idempotency_key) where idempotency_key is not null',
      );
      for (const [table, name] of [
        ['feedback', 'feedback_interaction_fk'],
        ['interaction_tags', 'interaction_tags_fk'],
        ['interaction_rewards', 'interaction_rewards_fk'],
        ['feedback_current', 'feedback_current_interaction_fk'],
        ['feedback_scores', 'feedback_scores_interaction_fk'],
      ])
        await run(
          `alter table ${table} add constraint ${name} foreign key (project_id, interaction_id) references interaction_ids (project_id, id) on delete cascade`,
        );
      await run('create index feedback_scores_interaction on feedback_scores (project_id, interaction_id)');

      await run(`create table feedback_keys (
        project_id text not null,
        idempotency_key text not null,
        feedback_id text not null,
        interaction_id text not null,
        constraint feedback_keys_pk primary key (project_id, idempotency_key),
        constraint feedback_keys_interaction_fk foreign key (project_id, interaction_id)
          references interaction_ids (project_id, id) on delete cascade)`);
      await run('create index feedback_keys_interaction on feedback_keys (project_id, interaction_id)');
      await run(`insert into feedback_keys (project_id, idempotency_key, feedback_id, interaction_id)
        select project_id, idempotency_key, id, interaction_id from feedback where idempotency_key is not null`);

      // A repeated id (or key) skips the row, as "on conflict do nothing" did: the row trigger
      // returns null, so "returning" leaves it out. Moving rows between partitions
      // (partitions.ts) sets ratchet.partition_move and leaves the id tables alone.
      await run(`create function interactions_keep_id() returns trigger language plpgsql as $$
        begin
          if coalesce(current_setting('ratchet.partition_move', true), '') = 'on' then return new; end if;
          insert into interaction_ids (project_id, id, created_at) values (new.project_id, new.id, new.created_at)
            on conflict do nothing;
          if not found then return null; end if;
          return new;
        end $$`);
      await run(`create function interactions_drop_id() returns trigger language plpgsql as $$
        begin
          if coalesce(current_setting('ratchet.partition_move', true), '') = 'on' then return old; end if;
          delete from interaction_ids where project_id = old.project_id and id = old.id;
          return old;
        end $$`);
      await run(`create function feedback_keep_key() returns trigger language plpgsql as $$
        begin
          if new.idempotency_key is null or coalesce(current_setting('ratchet.partition_move', true), '') = 'on' then
            return new;
          end if;
          insert into feedback_keys (project_id, idempotency_key, feedback_id, interaction_id)
            values (new.project_id, new.idempotency_key, new.id, new.interaction_id) on conflict do nothing;
          if not found then return null; end if;
          return new;
        end $$`);
      await run(`create function feedback_drop_key() returns trigger language plpgsql as $$
        begin
          if old.idempotency_key is null or coalesce(current_setting('ratchet.partition_move', true), '') = 'on' then
            return old;
          end if;
          delete from feedback_keys where project_id = old.project_id and idempotency_key = old.idempotency_key
            and feedback_id = old.id;
          return old;
        end $$`);
      await run(
        'create trigger interactions_keep_id before insert on interactions for each row execute function interactions_keep_id()',
      );
      await run(
        'create trigger interactions_drop_id after delete on interactions for each row execute function interactions_drop_id()',
      );
      await run(
        'create trigger feedback_keep_key before insert on feedback for each row execute function feedback_keep_key()',
      );
      await run(
        'create trigger feedback_drop_key after delete on feedback for each row execute function feedback_drop_key()',
      );
      for (const table of ['interaction_ids', 'feedback_keys', 'interactions', 'feedback'])
        await run(`analyze ${table}`);
    },
  };
}

/**
 * Calibration rewrites interaction_rewards in place (a full run every row, an incremental run the
 * rewards that moved). On full pages no update is HOT, so each one also inserts a primary-key
 * entry and leaves a dead one behind. Room on each page keeps the new version beside the old one:
 * 100,000 updates of a million rows took 0.56 s at fillfactor 70 against 0.85 s at 100 (this
 * machine's PostgreSQL 15, two runs each). Pages written from now on get the room; SQLite has no
 * such setting.
 */
function rewardsFillfactor(dialect: DialectName): Migration {
  return {
    async up(db: AnyDb) {
      if (dialect === 'postgres')
        await sql`alter table interaction_rewards set (fillfactor = 70)`.execute(db);
    },
  };
}

/**
 * An incremental calibration's rewards go to interaction_reward_changes, not into
 * interaction_rewards: 1% new ratings move about 7% of the rewards by more than the write
 * tolerance, scattered over nearly every page of a large table, and rewriting them in place logged
 * each such page whole after a checkpoint (1.28 GB of WAL for 390,000 rows at 10M calls); a newly
 * rated item's row cost more still (200,000 at 10M: 6.3 s, 3.7 s of it the foreign-key check,
 * which locks the interaction's id row and so writes its page too, against 0.9 s as changes).
 * Appended to a narrow table they are a few thousand new pages. A full refit rewrites every row and
 * empties the project's changes.
 *
 * current_rewards is what readers read: every interaction with a row or a change, the change's
 * values first. It is a plain view of left joins from the ids (interaction_ids on PostgreSQL, one
 * row per interaction; interactions on SQLite), so the database plans it into the query that reads
 * it: an index probe of each table per interaction in a join. The changes table has no foreign key
 * (its check would lock and write the id's page, as above); triggers drop a change with its
 * interaction or its reward row.
 */
function rewardChanges(dialect: DialectName): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('interaction_reward_changes')
        .$call(rewardColumns(dialect))
        .addPrimaryKeyConstraint('interaction_reward_changes_pk', ['project_id', 'interaction_id'])
        .$call(clustered(dialect))
        .execute();
      if (dialect === 'postgres')
        await sql`alter table interaction_reward_changes set (fillfactor = 70)`.execute(db);
      // The table whose rows are the interactions (one per id).
      const ids = dialect === 'postgres' ? 'interaction_ids' : 'interactions';
      for (const [table, column] of [
        [ids, 'id'],
        ['interaction_rewards', 'interaction_id'],
      ] as const) {
        const name = sql.raw(`${table}_drop_change`);
        const drop = sql`delete from interaction_reward_changes
          where project_id = old.project_id and interaction_id = old.${sql.raw(column)}`;
        if (dialect === 'postgres') {
          await sql`create function ${name}() returns trigger language plpgsql as $$
            begin ${drop}; return old; end $$`.execute(db);
          await sql`create trigger ${name} after delete on ${sql.table(table)}
            for each row execute function ${name}()`.execute(db);
        } else
          await sql`create trigger ${name} after delete on ${sql.table(table)}
            for each row begin ${drop}; end`.execute(db);
      }
      const latest = (column: string) => sql.raw(`coalesce(c.${column}, r.${column}) as ${column}`);
      await sql`create view current_rewards as
        select i.project_id, i.id as interaction_id, ${sql.join(
          ['calibration_id', 'n', 'raw_mean', 'reward', 'sd', 'lower', 'upper'].map(latest),
        )}
        from ${sql.table(ids)} i
        left join interaction_rewards r on r.project_id = i.project_id and r.interaction_id = i.id
        left join interaction_reward_changes c on c.project_id = i.project_id and c.interaction_id = i.id
        where r.interaction_id is not null or c.interaction_id is not null`.execute(db);
    },
  };
}

export function migrations(dialect: DialectName): Record<string, Migration> {
  return {
    '0001_initial': initial(dialect),
    '0002_calibration_datasets': calibrationAndDatasets(dialect),
    '0003_feedback_scores': feedbackScores(dialect),
    '0004_runs_registry': runsAndRegistry(dialect),
    '0005_current_values': currentValues(dialect),
    '0006_jobs': jobs(dialect),
    '0007_evaluations_experiments': evaluationsAndExperiments(dialect),
    '0008_dashboard_indexes': dashboardIndexes(),
    '0009_feedback_write_path': feedbackWritePath(),
    '0010_loop_rounds': loopRounds(dialect),
    '0011_dead_letters': deadLetters(dialect),
    '0012_feedback_tokens': feedbackTokens(dialect),
    '0015_served_routes': servedRoutes(),
    '0017_promotion_watch': promotionWatches(dialect),
    '0019_gateway_surface': gatewaySurface(dialect),
    '0020_deploy_health': deployHealth(dialect),
    '0021_key_scopes': keyScopes(),
    '0022_deletion': deletion(),
    '0026_round_leases': roundLeases(),
    '0027_rate_limits': rateLimits(),
    '0028_accounts': accounts(),
    '0029_annotation_assignments': annotationAssignments(dialect),
    '0030_rollups': rollups(dialect),
    '0034_responses_store': responsesStore(dialect),
    '0037_partitions': partitions(dialect),
    '0038_rollups_daily': rollupsDaily(dialect),
    '0039_rewards_fillfactor': rewardsFillfactor(dialect),
    '0040_reward_changes': rewardChanges(dialect),
  };
}
