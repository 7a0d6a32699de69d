export * from './gates.js';
export * from './judge.js';
export * from './pairwise.js';
export * from './redteam.js';
export * from './summary.js';
