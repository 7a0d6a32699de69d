export { MlflowError, type MlflowOptions, MlflowTracker, mlflowTrackerFromEnv } from './mlflow.js';
