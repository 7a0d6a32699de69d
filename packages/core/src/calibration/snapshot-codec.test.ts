import { describe, expect, it } from 'vitest';
import { calibrateWithSnapshot, recalibrateSnapshot } from './recalibrate.js';
import {
  calibrationSnapshotParts,
  decodeCalibrationSnapshot,
  encodeCalibrationSnapshot,
} from './snapshot-codec.js';
import { laterRatingsScenario } from './test-utils/synthetic.js';

describe('calibration snapshot bytes', () => {
  const s = laterRatingsScenario({
    seed: 5,
    items: 6_000,
    raters: 1_200,
    ratingsPerItem: 3,
    adversarialShare: 0.1,
    constantShare: 0.02,
    output: 'stars',
  });

  it('a decoded snapshot recalibrates exactly as the one kept in memory, and carries its meta', () => {
    const previous = calibrateWithSnapshot(s.before);
    const bytes = encodeCalibrationSnapshot(previous.snapshot, { runId: 'run-1', items: ['a', 'b'] });
    // As a file reads back: a Node Buffer at an offset into a larger pool.
    const pooled = Buffer.alloc(bytes.length + 24);
    pooled.set(bytes, 24);
    const decoded = decodeCalibrationSnapshot(pooled.subarray(24));
    expect(decoded.meta).toEqual({ runId: 'run-1', items: ['a', 'b'] });
    const fromMemory = recalibrateSnapshot(previous.snapshot, s.later);
    const fromBytes = recalibrateSnapshot(decoded.snapshot, s.later);
    expect(fromBytes.result.mode).toBe('incremental');
    expect(Array.from(fromBytes.result.items.reward)).toEqual(Array.from(fromMemory.result.items.reward));
    expect(Array.from(fromBytes.result.items.sd)).toEqual(Array.from(fromMemory.result.items.sd));
    expect(Array.from(fromBytes.result.raters.flagged)).toEqual(Array.from(fromMemory.result.raters.flagged));
    expect(fromBytes.result.raters.flagReason).toEqual(fromMemory.result.raters.flagReason);
    // NaN entries (items without an interval yet) survive as NaN, not as null or 0.
    expect(Array.from(decoded.snapshot.stats.correlation)).toEqual(
      Array.from(previous.snapshot.stats.correlation),
    );
  });

  it('reads arrays in place where aligned and copies them where not; its parts are its bytes', () => {
    const { snapshot } = calibrateWithSnapshot(s.before);
    const meta = { ids: 'a\nb', stored: new Float64Array([0.5, Number.NaN]) };
    const bytes = encodeCalibrationSnapshot(snapshot, meta);
    const parts = calibrationSnapshotParts(snapshot, meta);
    const joined = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let at = 0;
    for (const p of parts) {
      joined.set(p, at);
      at += p.byteLength;
    }
    expect(joined.length).toBe(bytes.length);
    expect(joined.every((b, k) => b === bytes[k])).toBe(true);
    for (const offset of [0, 8, 4, 3]) {
      const buffer = new Uint8Array(bytes.length + offset);
      buffer.set(bytes, offset);
      const view = buffer.subarray(offset);
      const decoded = decodeCalibrationSnapshot(view);
      const value = decoded.snapshot.data.value;
      // In place (sharing the bytes' memory) exactly where a Float64Array can start there.
      expect(value.buffer === buffer.buffer).toBe(offset % 8 === 0);
      expect(Array.from(value)).toEqual(Array.from(snapshot.data.value));
      expect(Array.from(decoded.snapshot.state.itemPostMean)).toEqual(
        Array.from(snapshot.state.itemPostMean),
      );
      const m = decoded.meta as typeof meta;
      expect(m.ids).toBe('a\nb');
      expect(Array.from(m.stored)).toEqual([0.5, Number.NaN]);
    }
  });

  it('refuses bytes that are not a snapshot or were cut short', () => {
    const bytes = encodeCalibrationSnapshot(calibrateWithSnapshot(s.before).snapshot, null);
    expect(() => decodeCalibrationSnapshot(new TextEncoder().encode('hello world'))).toThrow(RangeError);
    expect(() => decodeCalibrationSnapshot(bytes.subarray(0, bytes.length - 100))).toThrow(/truncated/);
    expect(() => decodeCalibrationSnapshot(bytes.subarray(0, 20))).toThrow(RangeError);
  });
});
