/** The API's shapes as the dashboard reads them (see /openapi.json). */
export interface Message {
  role: string;
  content: unknown;
}

export interface Interaction {
  id: string;
  route: string | null;
  model: string;
  variant: string | null;
  messages: Message[];
  output: Message;
  userId: string | null;
  tags: string[];
  createdAt: number;
  latencyMs: number | null;
}

export interface Feedback {
  id: string;
  raterId: string;
  source: string;
  kind: string;
  value: number | null;
  label: string | null;
  text: string | null;
  data: Record<string, unknown> | null;
  createdAt: number;
  current: boolean;
}

export interface InteractionDetail extends Interaction {
  feedback: Feedback[];
  reward: { reward: number; lower: number; upper: number; n: number; rawMean: number } | null;
  datasets: { datasetId: string; name: string; version: number; split: string }[];
}

export interface Rater {
  id: string;
  source: string;
  feedbackCount: number;
  bias: number | null;
  scale: number | null;
  reliability: number | null;
  noiseSd: number | null;
  consensusCorrelation: number | null;
  influence: number | null;
  flagged: boolean;
  flagReason: string | null;
}

export interface Model {
  id: string;
  name: string;
  route: string | null;
  baseModel: string;
  adapterPath: string | null;
  runId: string | null;
  datasetId: string | null;
  stage: 'candidate' | 'canary' | 'production' | 'archived';
  metrics: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
  /** When data it was trained on was later deleted; null when never. */
  dataDeletedAt: number | null;
}

/** A route's entry in `gateway_routes`: what the gateway serves for it (GET /routes). */
/** One metric of a watch's look: each arm's mean of user means and the one-sided test. */
export interface WatchMetricLook {
  metric: string;
  newMean: number | null;
  holdbackMean: number | null;
  newUsers: number;
  holdbackUsers: number;
  harm: number | null;
  tolerated: number;
  pValue: number;
  alpha: number;
  harmful: boolean;
  skipped?: string;
}

/** A promotion watch (GET /api/v1/watches) with its last looks. */
export interface PromotionWatch {
  id: string;
  route: string;
  modelName: string;
  holdbackModelName: string;
  status: 'watching' | 'ended' | 'rolled_back' | 'superseded';
  policy: { users: number; hours: number; holdbackShare: number; alpha: number };
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

export interface ServedRoute {
  name: string;
  variants: {
    name: string;
    upstream: string;
    model: string;
    weight: number;
    modelId?: string | null;
    segment?: { tag: string } | { metadata: string; equals: string | number | boolean };
  }[];
  updatedAt: number;
}

export interface DatasetVersion {
  id: string;
  name: string;
  version: number;
  method: string;
  spec: unknown;
  contentHash: string;
  rowCount: number;
  manifest: Record<string, unknown>;
  calibrationId: string | null;
  createdAt: number;
  deletedInteractions: number;
  deletedRows: number;
  dataDeletedAt: number | null;
}

/** What a deletion removed (DELETE /end-users/:id, /interactions/:id): counts, never content. */
export interface DeletionReport {
  auditId: string;
  counts: Record<string, number>;
  datasets: { id: string; name: string; version: number; interactions: number }[];
  models: { id: string; name: string }[];
}

export interface ScoreConfig {
  name: string;
  usage: 'stars' | 'criterion';
  dataType: 'numeric' | 'categorical';
  min: number | null;
  max: number | null;
  categories: string[] | null;
}

export interface Theme {
  label: string;
  count: number;
  share: number;
  examples: { id: string; text: string }[];
}

export interface Analysis {
  themes: Theme[];
  negativeTexts: number;
  worstPrompts: { promptHash: string; n: number; meanReward: number; exampleId: string; prompt: string }[];
  agreement: {
    criteria: Record<
      string,
      { level: string; alpha: number; raters: number; units: number; pairableUnits: number }
    >;
    overall: { alpha: number } | null;
  };
}
