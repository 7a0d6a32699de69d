export * from './canary-plan.js';
export * from './lease.js';
export * from './loop.js';
export * from './model-server.js';
export * from './policy.js';
export * from './routed.js';
