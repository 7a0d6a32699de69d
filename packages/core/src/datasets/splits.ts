import { z } from 'zod';
import { sha256 } from '../sha256.js';
import type { Split } from './types.js';

export const SplitSpec = z.discriminatedUnion('by', [
  /** Every prompt (all its answers) lands in one split, chosen by a seeded hash: no leakage. */
  z.strictObject({
    by: z.literal('prompt'),
    testFraction: z.number().min(0).max(0.9).default(0.1),
    seed: z.number().int().default(0),
  }),
  /**
   * The newest `testFraction` of prompts (by first appearance) is the test split, as for a
   * forecast; a prompt seen before the cut stays entirely in train.
   */
  z.strictObject({ by: z.literal('time'), testFraction: z.number().min(0).max(0.9).default(0.1) }),
]);
export type SplitSpec = z.input<typeof SplitSpec>;

function unitHash(key: string, seed: number): number {
  // The first 32 bits of SHA-256 (core's own, so a browser splits alike): uniform and seeded.
  const d = sha256(`${seed}\u0000${key}`);
  return (((d[0]! << 24) | (d[1]! << 16) | (d[2]! << 8) | d[3]!) >>> 0) / 2 ** 32;
}

/** Assigns every prompt group to train or test. Rows with the same promptHash always share a split. */
export function assignSplits(
  rows: Iterable<{ promptHash: string; createdAt: number }>,
  spec: SplitSpec,
): Map<string, Split> {
  const s = SplitSpec.parse(spec);
  const out = new Map<string, Split>();
  if (s.by === 'prompt') {
    let last: string | undefined;
    for (const r of rows) {
      // Answers to one prompt usually sit side by side: skip the map for the repeats.
      if (r.promptHash === last) continue;
      last = r.promptHash;
      if (!out.has(last)) out.set(last, unitHash(last, s.seed) < s.testFraction ? 'test' : 'train');
    }
    return out;
  }
  const firstSeen = new Map<string, number>();
  for (const r of rows)
    firstSeen.set(
      r.promptHash,
      Math.min(firstSeen.get(r.promptHash) ?? Number.POSITIVE_INFINITY, r.createdAt),
    );
  const ordered = [...firstSeen.entries()].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
  const cut = Math.round(ordered.length * (1 - s.testFraction));
  ordered.forEach(([hash], i) => {
    out.set(hash, i < cut ? 'train' : 'test');
  });
  return out;
}
