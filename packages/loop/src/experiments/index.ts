export {
  type ExperimentMetric,
  ExperimentStartSpec,
  type ExperimentStatus,
  experimentEngines,
  experimentMetrics,
  experimentStatus,
  type GatewayFacts,
  startExperiment,
  stopExperiment,
  type VariantStatus,
} from './experiments.js';
