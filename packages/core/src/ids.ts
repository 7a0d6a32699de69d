import { toHex } from './sha256.js';

// Random bytes come from Web Crypto's getRandomValues (synchronous, in browsers and in Node 20),
// so core needs no Node module. They are drawn 4 KiB at a time: one call per 256 ids instead of
// one per id (at ingest rates, the per-call overhead was a visible share of a write's CPU time).
const pool = new Uint8Array(4096);
let poolOffset = pool.length;

function randomInto(target: Uint8Array): void {
  if (poolOffset + target.length > pool.length) {
    globalThis.crypto.getRandomValues(pool);
    poolOffset = 0;
  }
  target.set(pool.subarray(poolOffset, poolOffset + target.length));
  poolOffset += target.length;
}

let lastMs = 0;
let counter = 0;

/**
 * A UUIDv7 (RFC 9562): time-ordered, so ids sort by creation time, which keeps B-tree inserts
 * append-only and lets cursor pagination break ties on id. A 12-bit counter keeps ids created in
 * the same millisecond by this process in order; when it runs out, the timestamp moves on by a
 * millisecond (RFC 9562, 6.2 method 1), so ids never go backwards.
 */
export function newId(now: number = Date.now()): string {
  const bytes = new Uint8Array(16);
  randomInto(bytes);
  // A random start leaves room to count up within the millisecond.
  let seq = ((bytes[14]! << 8) | bytes[15]!) & 0x7ff;
  if (now > lastMs) {
    lastMs = now;
    counter = seq;
  } else if (lastMs - now < 1000) {
    // The same millisecond (or a clock that stepped back a little): count on from the last id.
    counter++;
    if (counter > 0xfff) {
      lastMs++;
      counter = 0;
    }
    now = lastMs;
    seq = counter;
  }
  // (An id for a time well in the past, e.g. an imported event, keeps that time and a random seq.)
  // The 48-bit millisecond time, big-endian (above 2^32, so by division rather than shifts).
  const high = Math.floor(now / 2 ** 32);
  const low = now >>> 0;
  bytes[0] = (high >>> 8) & 0xff;
  bytes[1] = high & 0xff;
  bytes[2] = low >>> 24;
  bytes[3] = (low >>> 16) & 0xff;
  bytes[4] = (low >>> 8) & 0xff;
  bytes[5] = low & 0xff;
  bytes[6] = 0x70 | (seq >> 8);
  bytes[7] = seq & 0xff;
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = toHex(bytes);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
