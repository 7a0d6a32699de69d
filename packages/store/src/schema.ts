import type { ModelStage, PromotionWatchStatus } from '@ratchet/core';
import type { ColumnType, Generated } from 'kysely';

export type { ModelStage, PromotionWatchStatus } from '@ratchet/core';

/**
 * JSON columns are jsonb on PostgreSQL and text on SQLite. Writes always pass a JSON string (both
 * accept it); reads come back parsed from PostgreSQL and as text from SQLite, and `decodeJson`
 * in the store evens that out.
 */
export type Json = ColumnType<unknown, string, string>;

export interface ProjectsTable {
  id: string;
  name: string;
  settings: Json;
  created_at: number;
}

export interface ApiKeysTable {
  id: string;
  project_id: string;
  kind: 'secret' | 'public';
  key_hash: string;
  /** The first characters of the key, shown in listings so people can tell keys apart. */
  display_prefix: string;
  name: string | null;
  created_at: number;
  revoked_at: number | null;
  /** Space-separated scopes (core `encodeScopes`). */
  scopes: string;
}

export interface InteractionsTable {
  project_id: string;
  id: string;
  route: string | null;
  model: string;
  variant: string | null;
  messages: Json;
  output: Json;
  parameters: Json;
  latency_ms: number | null;
  input_tokens: number | null;
  output_tokens: number | null;
  total_tokens: number | null;
  session_id: string | null;
  user_id: string | null;
  metadata: Json;
  tags: Json;
  status: 'ok' | 'error' | 'aborted';
  error: string | null;
  trace_id: string | null;
  span_id: string | null;
  source: string;
  prompt_hash: string;
  created_at: number;
  received_at: number;
}

/** One row per (interaction, tag): filtering and grouping by tag stay plain, indexed SQL on both databases. */
export interface InteractionTagsTable {
  project_id: string;
  interaction_id: string;
  tag: string;
}

export interface FeedbackTable {
  id: string;
  project_id: string;
  interaction_id: string;
  rater_id: string;
  source: string;
  kind: string;
  value: number | null;
  label: string | null;
  text: string | null;
  data: Json | null;
  idempotency_key: string | null;
  metadata: Json;
  created_at: number;
  received_at: number;
}

/**
 * The latest event per (interaction, rater, kind): the one that counts. History stays in
 * `feedback`; this table is what aggregation joins against, kept up to date in the same
 * transaction as every feedback write.
 */
export interface FeedbackCurrentTable {
  project_id: string;
  interaction_id: string;
  rater_id: string;
  kind: string;
  feedback_id: string;
  created_at: number;
  /** The current event's value and label, copied so calibration needs no join. */
  value: number | null;
  label: string | null;
}

export interface RatersTable {
  project_id: string;
  id: string;
  source: string;
  feedback_count: number;
  first_seen_at: number;
  last_seen_at: number;
  /** Calibration state, written by the calibration pipeline. */
  bias: number | null;
  scale: number | null;
  reliability: number | null;
  flagged: ColumnType<number, number | undefined, number>;
  flag_reason: string | null;
  calibrated_at: number | null;
  noise_sd: number | null;
  /** Correlation with the consensus of the other raters on the same items. */
  consensus_corr: number | null;
  /** Weight on item scores after flagging: 1, a down-weight, or 0 when excluded. */
  influence: number | null;
}

export interface CalibrationRunsTable {
  id: string;
  project_id: string;
  options: Json;
  stats: Json;
  created_at: number;
}

export interface InteractionRewardsTable {
  project_id: string;
  interaction_id: string;
  calibration_id: string;
  n: number;
  raw_mean: number;
  reward: number;
  sd: number;
  lower: number;
  upper: number;
}

export interface DatasetsTable {
  id: string;
  project_id: string;
  name: string;
  version: number;
  method: string;
  spec: Json;
  content_hash: string;
  row_count: number;
  manifest: Json;
  /** Folder holding rows.jsonl, lineage.jsonl and manifest.json. */
  path: string;
  calibration_id: string | null;
  created_at: number;
  /** Interactions of this version deleted since it was built (deletion.ts). */
  deleted_interactions: ColumnType<number, number | undefined, number>;
  /** Rows its files lost to deletions. */
  deleted_rows: ColumnType<number, number | undefined, number>;
  /** When data in it was last deleted; null when never. */
  data_deleted_at: ColumnType<number | null, number | null | undefined, number | null>;
}

export interface DatasetInteractionsTable {
  dataset_id: string;
  project_id: string;
  interaction_id: string;
  split: 'train' | 'test';
}

export interface ScoreConfigsTable {
  project_id: string;
  name: string;
  usage: 'stars' | 'criterion';
  data_type: 'numeric' | 'categorical';
  min: number | null;
  max: number | null;
  categories: Json | null;
  weight: number;
  description: string | null;
  created_at: number;
}

export interface FeedbackScoresTable {
  feedback_id: string;
  project_id: string;
  interaction_id: string;
  /** Criterion name. */
  name: string;
  /** The score as given (a categorical criterion's category index). */
  value: number;
  /** The score mapped to [-1, 1] on its scale at the time of rating. */
  reward: number;
  /** A categorical criterion's category. */
  label: string | null;
}

export type RunStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface RunsTable {
  id: string;
  project_id: string;
  method: string;
  base_model: string;
  dataset_id: string | null;
  /** The worker's job spec. */
  spec: Json;
  status: RunStatus;
  /** The latest progress line (step, total, loss, eta). */
  progress: Json;
  /** Metric series: name -> [[step, value], ...]. */
  metrics: Json;
  artifacts: Json | null;
  error: string | null;
  output_dir: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  /** Last sign of life from the process running it (to find runs orphaned by a crash). */
  heartbeat_at: number | null;
  /** The train request as resolved (model name, route, dataset ref); null on rows before 0006. */
  request: Json | null;
  /** Set by a cancel; the process running the job polls it and stops the worker. */
  cancel_requested_at: number | null;
  /** Times the job was started (a resume after a crash adds one). */
  attempts: Generated<number>;
  /** `host:pid` of the process that runs it. */
  worker: string | null;
}

export interface ModelsTable {
  id: string;
  project_id: string;
  /** Unique in the project, e.g. `support-bot-kto-3`. */
  name: string;
  /** The gateway route it serves or would serve. */
  route: string | null;
  base_model: string;
  adapter_path: string | null;
  run_id: string | null;
  dataset_id: string | null;
  stage: ModelStage;
  metrics: Json;
  created_at: number;
  updated_at: number;
  /** When data it was trained on was deleted (its dataset version lost interactions); null when never. */
  data_deleted_at: ColumnType<number | null, number | null | undefined, number | null>;
}

export interface AuditLogTable {
  id: string;
  project_id: string;
  /** Who did it: `cli`, `api:<key id>`, `loop`, ... */
  actor: string;
  action: string;
  subject_type: string;
  subject_id: string;
  details: Json;
  created_at: number;
}

export type EvaluationStatus = 'running' | 'succeeded' | 'failed';

export interface EvaluationsTable {
  id: string;
  project_id: string;
  name: string | null;
  candidate_model_id: string | null;
  baseline_model_id: string | null;
  /** Endpoints (without secrets), suites, judge and gate configuration. */
  spec: Json;
  status: EvaluationStatus;
  summary: Json | null;
  gate: Json | null;
  /** 1 when every gate passed, 0 when one failed, null while running. */
  passed: number | null;
  error: string | null;
  created_at: number;
  finished_at: number | null;
}

export interface EvaluationItemsTable {
  evaluation_id: string;
  idx: number;
  suite: string;
  item_id: string;
  category: string | null;
  /** The judge's verdict over both orders: candidate, baseline or tie. */
  judge: string | null;
  /** The whole per-item result (outputs, scores, segments). */
  result: Json;
}

export interface GatewayRoutesTable {
  project_id: string;
  name: string;
  /** [{ name, upstream, model, weight, modelId? }] */
  variants: Json;
  updated_at: number;
}

/** One row (id 1): bumped by every write to gateway_routes. */
export interface GatewayRouteVersionTable {
  id: number;
  version: number;
}

export type ExperimentStatus = 'running' | 'stopped';

export interface ExperimentsTable {
  id: string;
  project_id: string;
  name: string;
  route: string;
  control: string;
  /** The variants and weights the experiment started with. */
  variants: Json;
  /** Primary metric: thumbs_up_rate, mean_reward or stars. */
  metric: string;
  engine: string;
  decision_rule: Json;
  /** 1 when Thompson sampling sets the weights. */
  bandit: number;
  status: ExperimentStatus;
  /** The sequential test's state carried from one look to the next. */
  state: Json | null;
  /** Every decision taken, oldest first. */
  history: Json;
  started_at: number;
  stopped_at: number | null;
}

/** A promotion's watch: `watching` until it ends without harm, rolls back, or another change replaces it. */

export interface PromotionWatchesTable {
  id: string;
  project_id: string;
  route: string;
  /** The promoted model, served to all but the holdback. */
  model_id: string;
  /** The model it replaced, served to the holdback share. */
  holdback_model_id: string;
  status: PromotionWatchStatus;
  policy: Json;
  /** The sequential tests' running p-values, carried from one look to the next. */
  state: Json;
  opened_by: string;
  opened_at: number;
  closed_at: number | null;
  /** How it closed: by whom and why. */
  outcome: Json | null;
}

export interface PromotionWatchLooksTable {
  id: string;
  watch_id: string;
  decision: string;
  reasons: Json;
  evidence: Json;
  actor: string;
  created_at: number;
}

/**
 * `running` and `awaiting_approval` are open (the route's current round); the rest are final.
 * `awaiting_approval`: the experiment shipped, the policy wants a person to say yes or no.
 */
export type LoopRoundStatus =
  | 'running'
  | 'awaiting_approval'
  | 'succeeded'
  | 'rejected'
  | 'rolled_back'
  | 'failed';

export interface LoopRoundsTable {
  id: string;
  project_id: string;
  route: string;
  round: number;
  /** The next stage to run (or `done`). */
  stage: string;
  status: LoopRoundStatus;
  /** What the stages produced so far (ids of calibration, dataset, run, model, evaluation, experiment). */
  state: Json;
  /** The policy the round runs under, as resolved when it started. */
  policy: Json;
  error: string | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

/** What the gateway's log writer could not store as it was (see `dead-letters.ts`). */
export interface DeadLettersTable {
  id: string;
  project_id: string;
  interaction_id: string;
  source: string;
  /** `nul_character`, `lone_surrogate`, `too_deep` (the storable rule) or `write_failed` (the database refused it). */
  reason: string;
  error: string;
  /** The interaction as it arrived, as JSON text (escaped, so it stores anywhere); cut at a limit. */
  payload: string;
  payload_truncated: number;
  /** 1 when a repaired copy of the interaction was stored under the same id. */
  repaired: number;
  created_at: number;
}

/** A project's HMAC key for feedback tokens (migration 0012); never returned by an API. */
export interface FeedbackTokenKeysTable {
  project_id: string;
  key: string;
  created_at: number;
}

/** Gateway calls logged as usage, never as interactions (migration 0019; see `usage-records.ts`). */
export interface UsageRecordsTable {
  id: string;
  project_id: string;
  kind: string;
  route: string | null;
  variant: string | null;
  model: string;
  upstream: string;
  user_id: string | null;
  inputs: number;
  input_tokens: number | null;
  total_tokens: number | null;
  latency_ms: number;
  status: string;
  error: string | null;
  created_at: number;
}

/** A Responses API answer's interaction and conversation (migration 0034; see `response-links.ts`). */
export interface GatewayResponsesTable {
  project_id: string;
  response_id: string;
  interaction_id: string;
  conversation_id: string;
  session_id: string | null;
  created_at: number;
}

/** A route's watch policy: what its next promotion's watch uses (defaults without a row). */
export interface RouteWatchPoliciesTable {
  project_id: string;
  route: string;
  policy: Json;
  updated_by: string;
  updated_at: number;
}

export interface RoundLeasesTable {
  project_id: string;
  route: string;
  holder: string;
  expires_at: number;
  acquired_at: number;
}

export interface RateLimitWindowsTable {
  key: string;
  window_start: number;
  hits: number;
}

export interface UsersTable {
  id: string;
  /** Lowercase; one account per address. */
  email: string;
  name: string | null;
  /** argon2id (PHC string); null for an account that signs in only with OpenID Connect. */
  password_hash: string | null;
  oidc_issuer: string | null;
  oidc_subject: string | null;
  created_at: number;
}

export interface ProjectMembersTable {
  project_id: string;
  user_id: string;
  /** core `projectRoles`. */
  role: string;
  created_at: number;
}

export interface SessionsTable {
  /** SHA-256 of the session id the cookie holds. */
  id_hash: string;
  user_id: string;
  project_id: string;
  /** SHA-256 of the CSRF token a cookie-authenticated write must echo in a header. */
  csrf_hash: string;
  created_at: number;
  expires_at: number;
}

/** An item someone is rating: one row per item, so the primary key is the lock. */
export interface AnnotationLocksTable {
  project_id: string;
  interaction_id: string;
  annotator_id: string;
  claimed_at: number;
  expires_at: number;
}

/** An annotator finished with an item: `submitted` (counts towards its overlap) or `skipped`. */
export interface AnnotationAssignmentsTable {
  project_id: string;
  interaction_id: string;
  annotator_id: string;
  status: 'submitted' | 'skipped';
  /** The overlap the queue asked for when the item was claimed. */
  overlap: number;
  finished_at: number;
}

/** The final label an admin recorded for an item its annotators disagreed on, per kind. */
export interface AnnotationAdjudicationsTable {
  project_id: string;
  interaction_id: string;
  kind: string;
  value: Json;
  note: string | null;
  decided_by: string;
  decided_at: number;
}

/**
 * The dashboard's figures per project, hour, route and model (rollups.ts): recomputed from the
 * raw rows of an hour whenever a write logs that hour in `rollup_log`.
 */
export interface RollupHoursTable {
  project_id: string;
  /** Start of the UTC hour, epoch ms. */
  hour: number;
  /** '' for calls on no route (a primary key column cannot be null on PostgreSQL). */
  route: string;
  model: string;
  calls: number;
  errors: number;
  input_tokens: number;
  output_tokens: number;
  /** Answered calls with a latency, and their latencies as `[[bin, count], ...]` (latency-bins.ts). */
  latency_n: number;
  latency_bins: string;
  /** Current thumbs and stars on the hour's calls (by the call's time). */
  thumbs_up: number;
  thumbs_down: number;
  stars_n: number;
  stars_sum: number;
  stars_sum_sq: number;
}

/** The same figures per UTC day (`day`: its start, epoch ms), merged from the day's hourly rows. */
export type RollupDaysTable = Omit<RollupHoursTable, 'hour'> & { day: number };

/** Feedback events per project and hour of the event. */
export interface RollupFeedbackHoursTable {
  project_id: string;
  hour: number;
  events: number;
}

/** Hours whose rollups are stale: one row per write (insert-only, so writers never wait on each other). */
export interface RollupLogTable {
  project_id: string;
  id: string;
  hour: number;
}

export interface Database {
  rollup_hours: RollupHoursTable;
  rollup_days: RollupDaysTable;
  rollup_feedback_hours: RollupFeedbackHoursTable;
  rollup_log: RollupLogTable;
  users: UsersTable;
  project_members: ProjectMembersTable;
  sessions: SessionsTable;
  annotation_locks: AnnotationLocksTable;
  annotation_assignments: AnnotationAssignmentsTable;
  annotation_adjudications: AnnotationAdjudicationsTable;
  round_leases: RoundLeasesTable;
  rate_limit_windows: RateLimitWindowsTable;
  usage_records: UsageRecordsTable;
  gateway_responses: GatewayResponsesTable;
  feedback_token_keys: FeedbackTokenKeysTable;
  dead_letters: DeadLettersTable;
  loop_rounds: LoopRoundsTable;
  projects: ProjectsTable;
  api_keys: ApiKeysTable;
  interactions: InteractionsTable;
  interaction_tags: InteractionTagsTable;
  feedback: FeedbackTable;
  feedback_current: FeedbackCurrentTable;
  raters: RatersTable;
  score_configs: ScoreConfigsTable;
  calibration_runs: CalibrationRunsTable;
  interaction_rewards: InteractionRewardsTable;
  /** An incremental calibration's rewrites of existing rewards (migration 0040). */
  interaction_reward_changes: InteractionRewardsTable;
  /** A view: each reward with its latest change (what every reader reads). */
  current_rewards: InteractionRewardsTable;
  datasets: DatasetsTable;
  dataset_interactions: DatasetInteractionsTable;
  feedback_scores: FeedbackScoresTable;
  runs: RunsTable;
  models: ModelsTable;
  audit_log: AuditLogTable;
  evaluations: EvaluationsTable;
  evaluation_items: EvaluationItemsTable;
  gateway_routes: GatewayRoutesTable;
  gateway_route_version: GatewayRouteVersionTable;
  api_key_version: GatewayRouteVersionTable;
  experiments: ExperimentsTable;
  promotion_watches: PromotionWatchesTable;
  promotion_watch_looks: PromotionWatchLooksTable;
  route_watch_policies: RouteWatchPoliciesTable;
}

export type { Generated };
