import { randomFillSync } from 'node:crypto';

// Random bytes are drawn 4 KiB at a time: one call into OpenSSL per 256 ids instead of one per id
// (at ingest rates, the per-call overhead was a visible share of a write's CPU time).
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;

function randomInto(target: Buffer): void {
  if (poolOffset + target.length > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  pool.copy(target, 0, poolOffset, poolOffset + target.length);
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
  const bytes = Buffer.allocUnsafe(16);
  randomInto(bytes);
  // A random start leaves room to count up within the millisecond.
  let seq = bytes.readUInt16BE(14) & 0x7ff;
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
  bytes.writeUIntBE(now, 0, 6);
  bytes[6] = 0x70 | (seq >> 8);
  bytes[7] = seq & 0xff;
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
