export * from './correlation.js';
export * from './themes.js';
