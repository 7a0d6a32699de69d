export * from './dataset-inputs.js';
export * from './filters.js';
export { linearRegExp } from './linear-regexp.js';
export * from './messages.js';
export * from './near-duplicates.js';
export * from './pii.js';
export * from './pipeline.js';
export * from './safety.js';
