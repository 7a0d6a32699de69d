export { activeLearning } from './active.js';
export {
  type AnnotationPolicy,
  annotationPolicies,
  defaultAnnotationPolicy,
  lowestConfidence,
  type QueueRequest,
  registerAnnotationPolicy,
  selectForAnnotation,
  unratedRecent,
  unratedThenLowestConfidence,
} from './policy.js';
export { AnnotationQueueTerms } from './types.js';
