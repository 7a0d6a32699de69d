import { describe, expect, it } from 'vitest';
import { agreementByPerson } from './people.js';
import type { UnitRating } from './summary.js';

const r = (unitId: string, raterId: string, value: string): UnitRating => ({ unitId, raterId, value });

describe('agreement per person', () => {
  // ann and bob agree on three of four shared units; cy, on the same units, says the opposite of ann.
  const ratings = [
    ...['u1', 'u2', 'u3'].flatMap((u) => [r(u, 'ann', 'up'), r(u, 'bob', 'up')]),
    r('u4', 'ann', 'down'),
    r('u4', 'bob', 'up'),
    r('u5', 'ann', 'down'),
    r('u5', 'bob', 'down'),
    r('u1', 'cy', 'down'),
    r('u4', 'cy', 'up'),
    r('u5', 'cy', 'up'),
    // Rated by one person only: counts for them, not for agreement.
    r('u6', 'ann', 'up'),
  ];
  const team = agreementByPerson(ratings);

  it('gives each pair its observed agreement and kappa on the units both rated', () => {
    const pair = (a: string, b: string) => team.pairs.find((p) => p.raterA === a && p.raterB === b);
    expect(pair('ann', 'bob')).toMatchObject({ n: 5, agreement: 4 / 5 });
    // 2x2 table ann x bob: (up,up)=3, (down,up)=1, (down,down)=1: po=0.8, pe=(3/5)(4/5)+(2/5)(1/5)=0.56.
    expect(pair('ann', 'bob')?.kappa).toBeCloseTo((0.8 - 0.56) / (1 - 0.56), 10);
    expect(pair('ann', 'cy')).toMatchObject({ n: 3, agreement: 0 });
  });

  it('singles out the person who disagrees with everyone', () => {
    const person = (id: string) => team.people.find((p) => p.raterId === id)!;
    expect(person('ann')).toMatchObject({ units: 6, sharedUnits: 5, agreement: 4 / 8 });
    expect(person('bob')).toMatchObject({ units: 5, sharedUnits: 5, agreement: 5 / 8 });
    expect(person('cy')).toMatchObject({ units: 3, sharedUnits: 3, agreement: 1 / 6 });
    expect(person('cy').meanKappa!).toBeLessThan(person('ann').meanKappa!);
    expect(team.alpha).not.toBeNull();
    expect(team.alpha!).toBeLessThan(0.5);
  });

  it('has no agreement to report for a person nobody overlaps with', () => {
    const alone = agreementByPerson([r('u1', 'ann', 'up'), r('u2', 'bob', 'down')]);
    expect(alone.alpha).toBeNull();
    expect(alone.pairs).toEqual([]);
    expect(alone.people.map((p) => p.agreement)).toEqual([null, null]);
  });
});
