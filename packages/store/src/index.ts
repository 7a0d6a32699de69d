import './regexp-engine.js';

export {
  csrfTokenOf,
  hashSecret,
  type Member,
  type NewSession,
  type SessionGrant,
  secretMatches,
  type User,
} from './accounts.js';
export type {
  BreakdownDimension,
  CriterionBreakdownRow,
  CriterionPair,
  FeedbackText,
  PromptSummary,
} from './analysis.js';
export {
  type Adjudication,
  type AnnotationClaim,
  type AnnotatorProgress,
  type AnnotatorRating,
  type AssignmentTerms,
  comparedKinds,
  type Disagreement,
} from './annotation.js';
export type { AuditEntry } from './audit.js';
export type {
  CalibrationRun,
  ItemRewardColumns,
  ItemRewardRow,
  RaterCalibrationRow,
  ScalarRatingRow,
} from './calibration.js';
export * from './connection.js';
export type {
  ActivityBucket,
  LearnedFrom,
  ModelHealthBucket,
  ModelHealthQuery,
  ModelHealthSeries,
  ModelSatisfactionRow,
  QueueCandidate,
} from './dashboard.js';
export type { DatasetVersion, RatedInteraction, RatedInteractionText } from './datasets.js';
export {
  type DeadLetter,
  type DeadLetterReason,
  MAX_DEAD_LETTER_PAYLOAD,
  type NewDeadLetter,
} from './dead-letters.js';
export {
  type DeletionCounts,
  type DeletionResult,
  type DeletionSubject,
  deletionSubjectHash,
  emptyDeletionCounts,
} from './deletion.js';
export type { Evaluation, EvaluationItemRow } from './evaluations.js';
export type {
  Experiment,
  ExperimentDecisionEntry,
  NewExperiment,
  VariantFeedbackTotals,
  VariantTotalsOptions,
} from './experiments.js';
export type { FeedbackGate } from './feedback.js';
export type { WriteResult } from './interactions.js';
export { LATENCY_BIN_EDGES, latencyBin } from './latency-bins.js';
export type { LoopApproval, LoopRound, LoopRoundStatus } from './loops.js';
export { openLoopStatuses } from './loops.js';
export type { Model, NewModel, ServedChange } from './models.js';
export type { Page } from './paging.js';
export {
  MONTHS_AHEAD,
  type MonthPartition,
  monthIndexOf,
  monthPartition,
  PARTITIONED_TABLES,
  type PartitionedTable,
} from './partitions.js';
export type { ApiKeyInfo, Principal, Project } from './projects.js';
export type { Rater } from './raters.js';
export type { ResponseLink } from './response-links.js';
export { type RouteChangeListener, type StoredRoute, type StoredVariant, segmentVariants } from './routes.js';
export { type MetricSeries, type NewRun, type Run, type RunStatus, terminalRunStatuses } from './runs.js';
export type { Database } from './schema.js';
export {
  generateApiKey,
  hashApiKey,
  newFeedbackTokenKey,
  signFeedbackToken,
  verifyFeedbackToken,
} from './secrets.js';
export { type GatewayFacts, productionVariant } from './serving.js';
export { Store } from './store.js';
export type { NewUsageRecord, UsageKind, UsageRecord } from './usage-records.js';
export {
  holdbackVariant,
  type PromotionWatch,
  type PromotionWatchLook,
  type RouteWatchPolicy,
  type WatchEvidence,
  watchedVariants,
} from './watches.js';
