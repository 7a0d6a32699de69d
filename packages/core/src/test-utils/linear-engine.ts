import { setFlagsFromString } from 'node:v8';

// What the store does when it loads (store/src/regexp-engine.ts), for core's tests of custom
// patterns, which run without the store: V8's linear-time regexp engine on.
setFlagsFromString('--enable-experimental-regexp-engine');
