export * from './critique.js';
export * from './label.js';
export * from './reliability.js';
export * from './words.js';
