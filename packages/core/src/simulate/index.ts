export * from './domain.js';
export * from './personas.js';
export * from './rate.js';
