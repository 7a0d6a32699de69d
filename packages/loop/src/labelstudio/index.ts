export {
  LabelStudioClient,
  type LabelStudioClientOptions,
  LabelStudioProject,
  type LabelStudioResultInput,
} from './client.js';
export { type LabelingMode, labelingConfig, taskDataKeys } from './config.js';
export {
  createLabelStudioProject,
  type PullSummary,
  type PushOptions,
  type PushSummary,
  pullFromLabelStudio,
  pushToLabelStudio,
} from './connector.js';
export { addLabelStudioTask, type LabelStudioMappingOptions } from './results.js';
