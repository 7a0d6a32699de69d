export { type CalibrateProjectOptions, type CalibrationSummary, calibrateProject } from './calibrate.js';
export {
  type BuildDatasetOptions,
  buildDatasetVersion,
  DatasetBuildSpec,
  type DatasetMethod,
  datasetMethods,
} from './datasets.js';
