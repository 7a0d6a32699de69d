export * from './balance.js';
export * from './builders.js';
export * from './columns.js';
export * from './row-json.js';
export * from './splits.js';
export * from './types.js';
