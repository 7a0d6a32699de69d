export {
  chatCompletion,
  completionLogprobs,
  EndpointError,
  EndpointSpec,
  type EndpointSpecInput,
  mapConcurrent,
  rewardScores,
} from './client.js';
export {
  createEvaluation,
  type EvaluationOutcome,
  type EvaluationProgress,
  EvaluationSpec,
  type EvaluationSpecInput,
  type EvaluationStage,
  evaluationSpecWith,
  runEvaluation,
} from './harness.js';
export { assembleSuites, type HeldOutItem, loadHeldOut, type SuiteItem } from './suites.js';
