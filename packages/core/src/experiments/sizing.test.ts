import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../random.js';
import { decideExperiment, type ExperimentVariantData } from './decision.js';
import { msprtHalfWidth } from './msprt.js';
import {
  msprtHorizonVariance,
  msprtLookPower,
  pairedAdvantage,
  planCanary,
  usersForVariance,
} from './sizing.js';

describe('msprtHorizonVariance', () => {
  it('is the variance at which one look has the wanted power, and less variance has more', () => {
    const v = msprtHorizonVariance({ effect: 0.1, tau: 0.1 });
    expect(msprtLookPower(0.1, v, 0.1)).toBeCloseTo(0.8, 6);
    expect(msprtLookPower(0.1, v * 0.8, 0.1)).toBeGreaterThan(0.8);
    expect(msprtLookPower(0.1, v * 1.25, 0.1)).toBeLessThan(0.8);
    // At the horizon the half-width leaves 0.84 standard errors of room under the effect.
    expect(0.1 - msprtHalfWidth(v, 0.01, 0.05)).toBeCloseTo(0.8416 * Math.sqrt(v), 3);
  });

  it('needs about four times the information for half the effect, and more for more power', () => {
    const big = msprtHorizonVariance({ effect: 0.1, tau: 0.1 });
    const small = msprtHorizonVariance({ effect: 0.05, tau: 0.05 });
    expect(big / small).toBeGreaterThan(3.5);
    expect(big / small).toBeLessThan(4.5);
    expect(msprtHorizonVariance({ effect: 0.1, tau: 0.1, power: 0.9 })).toBeLessThan(big);
    expect(msprtHorizonVariance({ effect: 0.1, tau: 0.1, alpha: 0.01 })).toBeLessThan(big);
  });

  it('rejects a design that means nothing', () => {
    expect(() => msprtHorizonVariance({ effect: 0, tau: 0.1 })).toThrow(/effect/);
    expect(() => msprtHorizonVariance({ effect: 0.1, tau: -1 })).toThrow(/tau/);
    expect(() => msprtHorizonVariance({ effect: 0.1, tau: 0.1, power: 1 })).toThrow(/power/);
  });

  it('has the stated power when simulated: a true effect ships at the horizon about 80% of the time', () => {
    // Normal per-user outcomes, sd 0.4, 50/50 split; one look at the horizon's users.
    const sd = 0.4;
    const effect = 0.1;
    const v = msprtHorizonVariance({ effect, tau: effect });
    const n = usersForVariance(v, sd, 0.5).candidate;
    const rng = new SeededRandom(5);
    const arm = (mean: number) => {
      let s = 0;
      let q = 0;
      for (let i = 0; i < n; i++) {
        const x = mean + sd * rng.normal();
        s += x;
        q += x * x;
      }
      return { n, mean: s / n, variance: (q - (s * s) / n) / (n - 1) };
    };
    let shipped = 0;
    const trials = 400;
    for (let t = 0; t < trials; t++) {
      const c = arm(0.5);
      const tr = arm(0.5 + effect);
      const se2 = c.variance / n + tr.variance / n;
      if (tr.mean - c.mean > msprtHalfWidth(se2, effect * effect, 0.05)) shipped++;
    }
    expect(shipped / trials).toBeGreaterThan(0.74);
    expect(shipped / trials).toBeLessThan(0.86);
  });
});

describe('usersForVariance', () => {
  it('splits the users by the share: V = sd²/n_candidate + sd²/n_control', () => {
    const u = usersForVariance(0.001, 0.5, 0.5);
    expect(u.total).toBe(1000);
    expect(u.candidate).toBe(500);
    const skew = usersForVariance(0.001, 0.5, 0.2);
    // 0.25/(0.2 N) + 0.25/(0.8 N) = 0.001
    expect(skew.total).toBe(1563);
    expect(() => usersForVariance(0, 0.5, 0.5)).toThrow();
  });
});

describe('pairedAdvantage', () => {
  it('is the difference of like rates a tie-aware judge implies, with the sign interval carried over', () => {
    const a = pairedAdvantage(30, 10, 100, { lower: 0.6, upper: 0.85 })!;
    expect(a.estimate).toBeCloseTo(0.2, 12);
    expect(a.lower).toBeCloseTo((2 * 0.6 - 1) * 0.4, 12);
    expect(a.upper).toBeCloseTo((2 * 0.85 - 1) * 0.4, 12);
    expect(a.items).toBe(100);
    expect(pairedAdvantage(0, 0, 40, { lower: 0, upper: 1 })).toBeNull();
    expect(pairedAdvantage(3, 2, 0, { lower: 0, upper: 1 })).toBeNull();
  });
});

describe('planCanary', () => {
  const base = { minimumEffect: 0.05, metricSd: 0.4, share: 0.5 };

  it('without an offline estimate: the mixture and the horizon at the minimum effect', () => {
    const p = planCanary(base);
    expect(p.expectedEffect).toBe(0.05);
    expect(p.horizonEffect).toBe(0.05);
    expect(p.horizonVariance).toBeCloseTo(msprtHorizonVariance({ effect: 0.05, tau: 0.05 }), 12);
    expect(p.plannedUsers).toEqual(usersForVariance(p.horizonVariance, 0.4, 0.5));
    expect(p.reasons.join(' ')).toMatch(/no offline estimate/);
  });

  it('tunes the mixture to an estimate above the minimum and sizes the horizon for its lower bound', () => {
    const p = planCanary({ ...base, offline: { estimate: 0.15, lower: 0.08, upper: 0.22, items: 80 } });
    expect(p.expectedEffect).toBe(0.15);
    expect(p.horizonEffect).toBe(0.08);
    // A larger effect to find: a shorter canary than the minimum effect's.
    expect(p.plannedUsers.total).toBeLessThan(planCanary(base).plannedUsers.total);
  });

  it('never plans for less than the minimum effect, and the policy names the mixture when it wants to', () => {
    const weak = planCanary({ ...base, offline: { estimate: 0.02, lower: -0.1, upper: 0.14, items: 40 } });
    expect(weak.expectedEffect).toBe(0.05);
    expect(weak.horizonEffect).toBe(0.05);
    const named = planCanary({
      ...base,
      expectedEffect: 0.3,
      offline: { estimate: 0.15, lower: 0.08, upper: 0.22, items: 80 },
    });
    expect(named.expectedEffect).toBe(0.3);
    expect(named.horizonEffect).toBe(0.08);
  });
});

describe('decideExperiment with a horizon', () => {
  const arm = (name: string, n: number, mean: number, sd: number): ExperimentVariantData => ({
    name,
    weight: 1,
    users: n,
    metrics: { m: { kind: 'mean', n, mean, variance: sd * sd } },
  });
  const rule = {
    primaryMetric: 'm',
    minObservationsPerArm: 10,
    expectedEffect: 0.1,
    horizon: { effect: 0.1, power: 0.8 },
  };
  const horizonSe = Math.sqrt(msprtHorizonVariance({ effect: 0.1, tau: 0.1 }));

  it('keeps running short of the horizon, however many users, and ends as no effect past it', () => {
    // 300 users an arm at sd 0.45: standard error 0.037, above the horizon's 0.026.
    const short = decideExperiment(
      { control: 'c', variants: [arm('c', 300, 0.6, 0.45), arm('t', 300, 0.62, 0.45)] },
      rule,
    );
    expect(short.decision).toBe('keep_running');
    expect(short.noEffect).toBe(false);
    // The same users after more outcomes each (sd 0.3): standard error 0.0245, past the horizon.
    const past = decideExperiment(
      { control: 'c', variants: [arm('c', 300, 0.6, 0.3), arm('t', 300, 0.62, 0.3)] },
      rule,
    );
    expect(past.comparisons[0]!.standardError).toBeLessThan(horizonSe);
    expect(past.decision).toBe('keep_running');
    expect(past.noEffect).toBe(true);
    expect(past.reasons.at(-1)).toMatch(/the horizon is reached: t's standard error 0.0245 <= 0.0256/);
  });

  it('ships a clear win before the horizon; the horizon changes nothing about shipping', () => {
    const win = decideExperiment(
      { control: 'c', variants: [arm('c', 300, 0.6, 0.3), arm('t', 300, 0.75, 0.3)] },
      rule,
    );
    expect(win.decision).toBe('ship');
    expect(win.noEffect).toBe(false);
    const { horizon: _, ...without } = rule;
    expect(
      decideExperiment(
        { control: 'c', variants: [arm('c', 300, 0.6, 0.3), arm('t', 300, 0.75, 0.3)] },
        without,
      ).decision,
    ).toBe('ship');
  });

  it('without a horizon the planned maximum of users still ends it', () => {
    const d = decideExperiment(
      { control: 'c', variants: [arm('c', 200, 0.6, 0.45), arm('t', 200, 0.62, 0.45)] },
      { primaryMetric: 'm', maxObservationsPerArm: 200 },
    );
    expect(d.noEffect).toBe(true);
    expect(d.reasons.at(-1)).toMatch(/planned maximum of 200/);
  });
});
