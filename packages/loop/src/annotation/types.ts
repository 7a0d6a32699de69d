import type { ActiveLearningObjective } from '@ratchet/core';
import type { QueueCandidate, Store } from '@ratchet/store';

/** What an annotator asks the queue for. */
export interface QueueRequest {
  projectId: string;
  limit: number;
  route?: string;
  /** The annotator: items they already rated are skipped where the policy can tell. */
  raterId?: string;
  /**
   * What the ratings are for, where the policy can use it (`active-learning`): `uncertainty` or
   * `positives` (see `activeLearningObjectiveFor`).
   */
  objective?: ActiveLearningObjective;
}

/**
 * How the annotation queue chooses what a person rates next. A policy is a function over the
 * store, so the active-learning policy (expected information gain from a reward model) can plug in
 * later with `registerAnnotationPolicy` without touching the dashboard or the API.
 */
export interface AnnotationPolicy {
  readonly name: string;
  readonly description: string;
  select(store: Store, request: QueueRequest): Promise<QueueCandidate[]>;
}
