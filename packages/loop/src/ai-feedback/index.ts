export * from './critique.js';
export * from './label.js';
