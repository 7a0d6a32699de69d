export * from './errors.js';
export * from './feedback.js';
export * from './hashing.js';
export * from './ids.js';
export * from './schemas/common.js';
export * from './schemas/feedback.js';
export * from './schemas/interaction.js';
export * from './schemas/score-config.js';
