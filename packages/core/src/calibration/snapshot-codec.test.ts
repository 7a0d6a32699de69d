import { describe, expect, it } from 'vitest';
import { calibrateWithSnapshot, recalibrateSnapshot } from './recalibrate.js';
import { decodeCalibrationSnapshot, encodeCalibrationSnapshot } from './snapshot-codec.js';
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

  it('refuses bytes that are not a snapshot or were cut short', () => {
    const bytes = encodeCalibrationSnapshot(calibrateWithSnapshot(s.before).snapshot, null);
    expect(() => decodeCalibrationSnapshot(new TextEncoder().encode('hello world'))).toThrow(RangeError);
    expect(() => decodeCalibrationSnapshot(bytes.subarray(0, bytes.length - 100))).toThrow(/truncated/);
    expect(() => decodeCalibrationSnapshot(bytes.subarray(0, 20))).toThrow(RangeError);
  });
});
