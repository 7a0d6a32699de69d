import { CalibrationOptions } from './calibrate.js';
import type { CalibrationSnapshot } from './recalibrate.js';

/**
 * A calibration snapshot as bytes, so that a later process (or one after a restart) continues from
 * it instead of reading and fitting every rating again. The typed arrays are stored as they are in
 * memory (one copy, no per-number text), everything else as JSON; `meta` carries what the caller
 * needs to trust the snapshot again (its run, the ids its indices stand for).
 *
 * Layout: "RCS1", a little-endian u32 header length, the JSON header, then each array at an
 * 8-byte-aligned offset (so a Float64Array can be read in place).
 */
const MAGIC = 'RCS1';

const ARRAY_TYPES = {
  Float64Array,
  Int32Array,
  Uint8Array,
} as const;
type ArrayType = keyof typeof ARRAY_TYPES;
type StoredArray = Float64Array | Int32Array | Uint8Array;

interface ArrayEntry {
  type: ArrayType;
  offset: number;
  length: number;
}

const align8 = (n: number) => (n + 7) & ~7;

export function encodeCalibrationSnapshot(snapshot: CalibrationSnapshot, meta: unknown): Uint8Array {
  const parts = calibrationSnapshotParts(snapshot, meta);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/**
 * The bytes of encodeCalibrationSnapshot as consecutive parts: the header, then each array's own
 * memory (a view, not a copy) with the padding after it. Written to a file one after another
 * (a vectored write), a snapshot of millions of ratings is never copied into one buffer first.
 */
export function calibrationSnapshotParts(snapshot: CalibrationSnapshot, meta: unknown): Uint8Array[] {
  const arrays: ArrayEntry[] = [];
  const views: StoredArray[] = [];
  let body = 0;
  const header = JSON.stringify({ snapshot, meta }, (_key, value: unknown) => {
    if (!ArrayBuffer.isView(value)) return value;
    const type = value.constructor.name as ArrayType;
    if (!(type in ARRAY_TYPES)) throw new TypeError(`cannot store a ${type} in a calibration snapshot`);
    const view = value as StoredArray;
    arrays.push({ type, offset: body, length: view.length });
    views.push(view);
    body = align8(body + view.byteLength);
    return { $array: arrays.length - 1 };
  });
  const headerBytes = new TextEncoder().encode(JSON.stringify({ arrays, header }));
  const start = align8(8 + headerBytes.length);
  const head = new Uint8Array(start);
  head.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(head.buffer).setUint32(4, headerBytes.length, true);
  head.set(headerBytes, 8);
  const parts: Uint8Array[] = [head];
  const zeros = new Uint8Array(8);
  views.forEach((view) => {
    parts.push(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    const pad = align8(view.byteLength) - view.byteLength;
    if (pad > 0) parts.push(zeros.subarray(0, pad));
  });
  return parts;
}

/**
 * The snapshot and meta of encodeCalibrationSnapshot's bytes. Throws a RangeError on bytes that
 * are not one (a truncated or foreign file): the caller then refits fully.
 */
export function decodeCalibrationSnapshot(bytes: Uint8Array): {
  snapshot: CalibrationSnapshot;
  meta: unknown;
} {
  if (bytes.length < 8 || new TextDecoder().decode(bytes.subarray(0, 4)) !== MAGIC) {
    throw new RangeError('not a calibration snapshot');
  }
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new RangeError('calibration snapshots are stored little-endian; this machine is not');
  }
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
  if (8 + headerLength > bytes.length) throw new RangeError('truncated calibration snapshot');
  const { arrays, header } = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as {
    arrays: ArrayEntry[];
    header: string;
  };
  const start = align8(8 + headerLength);
  const toArray = (value: { $array: number }) => {
    const entry = arrays[value.$array];
    if (!entry || !(entry.type in ARRAY_TYPES)) throw new RangeError('corrupt calibration snapshot');
    const Type = ARRAY_TYPES[entry.type];
    const from = start + entry.offset;
    const byteLength = entry.length * Type.BYTES_PER_ELEMENT;
    if (from + byteLength > bytes.length) throw new RangeError('truncated calibration snapshot');
    // A view into the bytes where it is aligned (a file read whole has a buffer of its own, and
    // each array starts at an 8-byte offset): a copy of each array doubled the peak memory of a
    // recalibration (the file and the copies). A Node Buffer from the shared pool (small ones) can
    // sit at any offset, so there Uint8Array's own slice copies it into memory of its own.
    const at = bytes.byteOffset + from;
    if (at % Type.BYTES_PER_ELEMENT === 0) return new Type(bytes.buffer as ArrayBuffer, at, entry.length);
    return new Type(Uint8Array.prototype.slice.call(bytes, from, from + byteLength).buffer);
  };
  // Parsed without a reviver, then the array markers replaced: a reviver is called for every
  // value, and the caller's meta may hold a million ids.
  const place = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object') return value;
    if (Array.isArray(value)) {
      for (let k = 0; k < value.length; k++) {
        const x = value[k];
        if (x !== null && typeof x === 'object') value[k] = place(x);
      }
      return value;
    }
    if ('$array' in value) return toArray(value as { $array: number });
    const o = value as Record<string, unknown>;
    for (const key of Object.keys(o)) {
      const x = o[key];
      if (x !== null && typeof x === 'object') o[key] = place(x);
    }
    return o;
  };
  const decoded = place(JSON.parse(header)) as { snapshot: CalibrationSnapshot; meta: unknown };
  const snapshot = decoded.snapshot;
  // JSON has no NaN or Infinity: the only non-array numbers are counts and priors, which are finite.
  const options = CalibrationOptions.safeParse(snapshot?.options);
  if (!options.success || !snapshot.data || !snapshot.state || !snapshot.byRater) {
    throw new RangeError('corrupt calibration snapshot');
  }
  return { snapshot: { ...snapshot, options: options.data }, meta: decoded.meta };
}
