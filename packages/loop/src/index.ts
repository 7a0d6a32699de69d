export { type AnalysisReport, analyzeProject } from './analyze.js';
export { type CalibrateProjectOptions, type CalibrationSummary, calibrateProject } from './calibrate.js';
export {
  type BuildDatasetOptions,
  buildDatasetVersion,
  DatasetBuildSpec,
  type DatasetInputs,
  type DatasetMethod,
  datasetMethods,
  loadDatasetInputs,
} from './datasets.js';
export { type ExportFormat, exportDataset, exportFormats } from './exports.js';
export * from './imports/index.js';
export * from './labelstudio/index.js';
export * from './training/index.js';
export * from './annotation/index.js';
