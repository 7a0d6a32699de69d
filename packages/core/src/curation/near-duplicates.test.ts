import { describe, expect, it } from 'vitest';
import { findDuplicates, lshBands, MinHasher, shingles } from './near-duplicates.js';

const base = [
  'To reset your password open Settings then Security and choose Reset password, we email you a link that expires in 30 minutes.',
  'Refunds are possible within 30 days of delivery: open Orders, pick the order and choose Request refund.',
  'Track your parcel from the Orders page where the carrier and the latest scan are shown for every shipment.',
  'You can cancel the subscription under Settings then Billing and you keep access until the paid period ends.',
];

describe('near-duplicate detection', () => {
  it('estimates Jaccard similarity close to the true value', () => {
    const h = new MinHasher(256, 7);
    const a = shingles(base[0]!, 3);
    const b = shingles(`${base[0]!} Thanks for waiting.`, 3);
    const inter = [...a].filter((x) => b.has(x)).length;
    const truth = inter / (a.size + b.size - inter);
    const sa = h.signature(a);
    const sb = h.signature(b);
    let same = 0;
    for (let i = 0; i < sa.length; i++) if (sa[i] === sb[i]) same++;
    expect(Math.abs(same / sa.length - truth)).toBeLessThan(0.1);
  });

  it('catches exact (after normalization) and near duplicates in a test corpus, and nothing else', () => {
    const corpus = [
      ...base,
      base[0]!.toUpperCase().replace(/,/g, ''), // 4: exact after normalization
      base[1]!.replace('Request refund', 'Request a refund'), // 5: near
      `${base[2]!} Let us know if it helps.`, // 6: near
      'Our office is closed on public holidays and reopens the next working day at nine.', // 7: distinct
      base[3]!.split(' ').slice(0, 8).join(' '), // 8: only a fragment: not a near duplicate
    ];
    const { representative, reason } = findDuplicates(corpus, { threshold: 0.7 });
    expect(representative).toEqual([0, 1, 2, 3, 0, 1, 2, 7, 8]);
    expect(reason[4]).toMatchObject({ kind: 'exact', of: 0 });
    expect(reason[5]).toMatchObject({ kind: 'near', of: 1 });
    expect(reason[5]!.similarity).toBeGreaterThanOrEqual(0.7);
  });

  it('picks LSH bands whose S-curve sits near the threshold', () => {
    const { bands, rows } = lshBands(128, 0.8);
    expect(bands * rows).toBe(128);
    expect((1 / bands) ** (1 / rows)).toBeGreaterThan(0.6);
    expect((1 / bands) ** (1 / rows)).toBeLessThan(0.85);
  });
});
