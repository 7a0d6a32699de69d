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
  const out = new Uint8Array(start + body);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(4, headerBytes.length, true);
  out.set(headerBytes, 8);
  views.forEach((view, k) => {
    out.set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength), start + arrays[k]!.offset);
  });
  return out;
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
  const decoded = JSON.parse(header, (_key, value: unknown) => {
    if (value === null || typeof value !== 'object' || !('$array' in value)) return value;
    const entry = arrays[(value as { $array: number }).$array];
    if (!entry || !(entry.type in ARRAY_TYPES)) throw new RangeError('corrupt calibration snapshot');
    const Type = ARRAY_TYPES[entry.type];
    const from = start + entry.offset;
    const byteLength = entry.length * Type.BYTES_PER_ELEMENT;
    if (from + byteLength > bytes.length) throw new RangeError('truncated calibration snapshot');
    // A copy: the arrays must own aligned memory that outlives the file's buffer (a Node Buffer's
    // slice is a view into a shared pool, hence Uint8Array's own slice).
    return new Type(Uint8Array.prototype.slice.call(bytes, from, from + byteLength).buffer);
  }) as { snapshot: CalibrationSnapshot; meta: unknown };
  const snapshot = decoded.snapshot;
  // JSON has no NaN or Infinity: the only non-array numbers are counts and priors, which are finite.
  const options = CalibrationOptions.safeParse(snapshot?.options);
  if (!options.success || !snapshot.data || !snapshot.state || !snapshot.byRater) {
    throw new RangeError('corrupt calibration snapshot');
  }
  return { snapshot: { ...snapshot, options: options.data }, meta: decoded.meta };
}
