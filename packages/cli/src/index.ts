// The demo tooling (simulated users, the oracle's true-quality probe), for the benchmarks.
export * from './demo/segment-quality.js';
export * from './demo/traffic.js';
export { buildProgram, main } from './main.js';
