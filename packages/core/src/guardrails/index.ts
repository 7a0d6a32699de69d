export * from './watch.js';
