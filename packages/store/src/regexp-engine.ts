import { setFlagsFromString } from 'node:v8';

/**
 * Turns on V8's linear-time regexp engine (the `l` flag), which core's `linearRegExp` compiles
 * other people's patterns with (custom PII patterns, gateway guardrails). Core cannot set a V8
 * flag and stay loadable in a browser, so every Node process that uses Ratchet's store (the
 * server, the loop, the CLI) sets it here. The flag only changes how `l` regexps compile.
 */
export function enableLinearRegExpEngine(): void {
  try {
    setFlagsFromString('--enable-experimental-regexp-engine');
  } catch {
    // No such flag: core refuses every custom pattern (fails closed).
  }
}

enableLinearRegExpEngine();
