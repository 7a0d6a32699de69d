import type { ActiveLearningObjective } from '@ratchet/core';
import type { QueueCandidate, Store } from '@ratchet/store';
import { z } from 'zod';

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

/**
 * How a route's annotation team shares its queue (a loop policy's `annotation`): each item goes to
 * `overlap` annotators (one at a time, so their ratings can be compared and split items
 * adjudicated), and a claimed item stays locked to its annotator for `lockMinutes` unless they
 * submit, skip or release it first.
 */
export const AnnotationQueueTerms = z.strictObject({
  overlap: z.number().int().min(1).max(10).default(1),
  lockMinutes: z
    .number()
    .positive()
    .max(24 * 60)
    .default(15),
});
export type AnnotationQueueTerms = z.output<typeof AnnotationQueueTerms>;
