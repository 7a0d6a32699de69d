import { type ActiveLearningObjective, RatchetError } from '@ratchet/core';
import type { QueueCandidate, Store } from '@ratchet/store';
import { activeLearning } from './active.js';
import type { AnnotationPolicy, QueueRequest } from './types.js';

export type { AnnotationPolicy, QueueRequest } from './types.js';

/** Fresh traffic nobody has rated yet, newest first. */
export const unratedRecent: AnnotationPolicy = {
  name: 'unrated-recent',
  description: 'Unrated interactions, newest first.',
  select: (store, r) =>
    store.dashboard.unratedRecent(r.projectId, { limit: r.limit, ...(r.route ? { route: r.route } : {}) }),
};

/** Rated interactions whose calibrated reward has the widest interval. */
export const lowestConfidence: AnnotationPolicy = {
  name: 'lowest-confidence',
  description: 'Rated interactions whose calibrated reward is least certain (widest interval).',
  select: (store, r) => store.dashboard.leastCertain(r.projectId, r),
};

/** The default: unrated items first; when none are left, the least certain rated ones. */
export const unratedThenLowestConfidence: AnnotationPolicy = {
  name: 'unrated-then-lowest-confidence',
  description: 'Unrated interactions newest first, then the least certain rated ones.',
  async select(store, r) {
    const fresh = await unratedRecent.select(store, r);
    if (fresh.length >= r.limit) return fresh;
    const more = await lowestConfidence.select(store, { ...r, limit: r.limit - fresh.length });
    return [...fresh, ...more];
  },
};

const policies = new Map<string, AnnotationPolicy>(
  [unratedThenLowestConfidence, unratedRecent, lowestConfidence, activeLearning].map((p) => [p.name, p]),
);

export const defaultAnnotationPolicy = unratedThenLowestConfidence.name;

export function registerAnnotationPolicy(policy: AnnotationPolicy): void {
  policies.set(policy.name, policy);
}

export function annotationPolicies(): AnnotationPolicy[] {
  return [...policies.values()];
}

/** The next items to rate under the named policy (the default when none is named). */
export async function selectForAnnotation(
  store: Store,
  request: QueueRequest,
  policyName: string = defaultAnnotationPolicy,
): Promise<{ policy: string; items: QueueCandidate[] }> {
  const policy = policies.get(policyName);
  if (!policy)
    throw new RatchetError(
      'invalid_request',
      `policy: unknown annotation policy "${policyName}" (known: ${[...policies.keys()].join(', ')})`,
      'policy',
    );
  return { policy: policy.name, items: await policy.select(store, request) };
}
