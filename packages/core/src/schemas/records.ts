import type { AgreementSummary } from '../agreement/summary.js';
import type { Theme } from '../analysis/themes.js';
import type { Feedback } from '../feedback-kinds.js';
import type { WatchMetricLook, WatchPolicy } from '../guardrails/watch.js';
import type { ModelStage } from '../registry.js';
import type { Interaction } from './interaction.js';

/**
 * Records as the store keeps them and the HTTP API returns them, declared once so the store, the
 * server and the dashboard (which imports core's types instead of copying them) cannot drift.
 */

export interface Model {
  id: string;
  projectId: string;
  name: string;
  route: string | null;
  baseModel: string;
  adapterPath: string | null;
  runId: string | null;
  datasetId: string | null;
  stage: ModelStage;
  metrics: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
  /** When data it was trained on was later deleted (its dataset version lost interactions); null when never. */
  dataDeletedAt: number | null;
}

export interface Rater {
  id: string;
  source: string;
  feedbackCount: number;
  firstSeenAt: number;
  lastSeenAt: number;
  bias: number | null;
  scale: number | null;
  reliability: number | null;
  noiseSd: number | null;
  consensusCorrelation: number | null;
  /** Weight on item scores after flagging: 1, a down-weight, or 0 when excluded. */
  influence: number | null;
  flagged: boolean;
  flagReason: string | null;
  calibratedAt: number | null;
}

export interface DatasetVersion {
  id: string;
  projectId: string;
  name: string;
  version: number;
  method: string;
  spec: unknown;
  contentHash: string;
  rowCount: number;
  manifest: Record<string, unknown>;
  path: string;
  calibrationId: string | null;
  createdAt: number;
  /** What deletions took from it since it was built (interactions, file rows, when); all 0/null when none. */
  deletedInteractions: number;
  deletedRows: number;
  dataDeletedAt: number | null;
}

/** What a deletion removed (DELETE /end-users/:id, /interactions/:id): counts, never content. */
export interface DeletionSummary<Counts = Record<string, number>> {
  /**
   * The audit entry's id: what was deleted (by kind and a hash of the subject), by whom, counts.
   * Null only for a retention pass that found nothing to delete.
   */
  auditId: string | null;
  counts: Counts;
  /** Dataset versions that held deleted interactions: marked, their files scrubbed after. */
  datasets: { id: string; name: string; version: number; interactions: number }[];
  /** Models trained on those versions: marked as trained on data later deleted. */
  models: { id: string; name: string }[];
}

export type PromotionWatchStatus = 'watching' | 'ended' | 'rolled_back' | 'superseded';

/** GET /api/v1/interactions/:id: the interaction with its feedback, reward and datasets. */
export interface InteractionDetail extends Interaction {
  feedback: Feedback[];
  reward: { reward: number; lower: number; upper: number; n: number; rawMean: number } | null;
  datasets: { datasetId: string; name: string; version: number; split: string }[];
}

/** GET /api/v1/watches: a promotion watch with its models' names, last looks and webhook delivery. */
export interface PromotionWatchView {
  id: string;
  route: string;
  modelName: string;
  holdbackModelName: string;
  status: PromotionWatchStatus;
  policy: WatchPolicy;
  openedBy: string;
  openedAt: number;
  closedAt: number | null;
  outcome: { actor: string; reason: string } | null;
  /** The rollback webhook's delivery, when one was sent. */
  webhook: {
    delivered: boolean;
    status?: number;
    error?: string;
    attempts: { at: number; status?: number; error?: string }[];
  } | null;
  looks: {
    id: string;
    decision: string;
    reasons: string[];
    evidence: {
      metrics?: WatchMetricLook[];
      newArm?: { users: number; latencyP50Ms: number | null; latencyP95Ms: number | null };
      holdback?: { users: number; latencyP50Ms: number | null; latencyP95Ms: number | null };
    };
    actor: string;
    createdAt: number;
  }[];
}

/** GET /api/v1/analysis, the parts the dashboard reads (the loop's AnalysisReport has them all). */
export interface AnalysisView {
  themes: Theme[];
  negativeTexts: number;
  worstPrompts: { promptHash: string; n: number; meanReward: number; exampleId: string; prompt: string }[];
  agreement: { criteria: Record<string, AgreementSummary>; overall: AgreementSummary | null };
}
