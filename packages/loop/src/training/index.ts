export {
  createTrainingQueue,
  LocalTrainingQueue,
  PgBossTrainingQueue,
  type QueueOptions,
  type TrainingQueue,
  trainingQueueName,
} from './queue.js';
export {
  type RunOutcome,
  type RunTracker,
  resumeOrphanedRuns,
  runTraining,
  startTrainingRun,
  type TrainingOptions,
} from './runs.js';
export { TrainingService, type TrainingServiceOptions } from './service.js';
export { type RunProgress, RunTelemetry } from './telemetry.js';
export { TrainWorker, type WorkerEvent, workerCommand } from './worker.js';
