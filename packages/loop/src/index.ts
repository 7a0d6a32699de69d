export * from './ai-feedback/index.js';
export { type AnalysisReport, analyzeProject } from './analyze.js';
export * from './annotation/index.js';
export * from './augment/dataset.js';
export * from './augment/paraphrase.js';
export {
  type CalibrateProjectOptions,
  type CalibrationReference,
  type CalibrationSummary,
  calibrateProject,
  calibrationReferences,
} from './calibrate.js';
export {
  type BuildDatasetOptions,
  buildDatasetVersion,
  DatasetBuildSpec,
  type DatasetInputs,
  type DatasetMethod,
  datasetMethods,
  groupSimilarPrompts,
  loadDatasetInputs,
} from './datasets.js';
export * from './deploy/index.js';
export * from './eval/index.js';
export * from './experiments/index.js';
export { type ExportFormat, exportDataset, exportFormats } from './exports.js';
export * from './guardrails/index.js';
export * from './imports/index.js';
export * from './labelstudio/index.js';
export * from './orchestrator/index.js';
export * from './personalize/index.js';
export * from './privacy/index.js';
export * from './tracking/index.js';
export * from './training/index.js';
