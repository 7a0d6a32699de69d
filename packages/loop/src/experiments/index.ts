export {
  type ExperimentMetric,
  ExperimentStartSpec,
  type ExperimentStatus,
  experimentEngines,
  experimentMetrics,
  experimentStatus,
  type GatewayFacts,
  type OtherSourceStatus,
  startExperiment,
  stopExperiment,
  type VariantMetricStatus,
  type VariantStatus,
} from './experiments.js';
