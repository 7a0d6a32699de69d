export * from './pairwise.js';
export * from './reward.js';
export * from './reward-mapping.js';
export * from './scales.js';
