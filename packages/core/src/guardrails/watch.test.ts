import { describe, expect, it } from 'vitest';
import { emptyUserMetricSums, userMetricSums } from '../experiments/users.js';
import { SeededRandom } from '../random.js';
import { defaultWatchPolicy, lookAtWatch, type WatchArmEvidence, watchPolicySchema } from './watch.js';

/** An arm whose users each rated once with probability `up` of a thumbs up (seeded). */
function arm(users: number, up: number, seed: number): WatchArmEvidence {
  const rng = new SeededRandom(seed);
  const thumbs = userMetricSums(Array.from({ length: users }, () => [rng.uniform() < up ? 1 : 0]));
  const none = { ...emptyUserMetricSums };
  return {
    users,
    interactions: users,
    metrics: { thumbs_up_rate: thumbs, reward: none, error_rate: none, empty_rate: none, slow_rate: none },
    latencyP50Ms: null,
    latencyP95Ms: null,
  };
}

const look = (newArm: WatchArmEvidence, holdback: WatchArmEvidence, now = 0) =>
  lookAtWatch({ policy: defaultWatchPolicy, openedAt: 0, now, newArm, holdback });

describe('lookAtWatch', () => {
  it('rolls back when the new model is clearly worse, and says which metric and by how much', () => {
    const r = look(arm(3800, 0.5, 1), arm(200, 0.8, 2));
    expect(r.decision).toBe('rollback');
    expect(r.reasons).toHaveLength(1);
    expect(r.reasons[0]).toMatch(
      /^thumbs_up_rate: new 0\.\d+ \(3800 users\) vs holdback 0\.\d+ \(200 users\)/,
    );
    expect(r.metrics[0]!.harmful).toBe(true);
  });

  it('is one-sided: a clearly better new model never rolls back', () => {
    expect(look(arm(3800, 0.8, 3), arm(200, 0.5, 4)).decision).toBe('continue');
  });

  it('tests nothing below the minimum users per arm, and ends only after both users and hours', () => {
    const few = look(arm(300, 0, 5), arm(10, 1, 6));
    expect(few.decision).toBe('continue');
    expect(few.metrics[0]!.skipped).toMatch(/fewer than 20 users/);
    const same = [arm(9600, 0.7, 7), arm(500, 0.7, 8)] as const;
    expect(look(...same, 23 * 3_600_000).decision).toBe('continue');
    expect(look(...same, 25 * 3_600_000).decision).toBe('end');
  });

  it('tolerates harm up to the threshold: a 2-point error rise under a 5-point tolerance is not harm', () => {
    const withErrors = (users: number, rate: number, seed: number) => {
      const a = arm(users, 0.7, seed);
      const rng = new SeededRandom(seed + 100);
      a.metrics.error_rate = userMetricSums(
        Array.from({ length: users }, () => [rng.uniform() < rate ? 1 : 0]),
      );
      return a;
    };
    const policy = watchPolicySchema.parse({ harm: { errorRateRise: 0.05 } });
    const input = {
      policy,
      openedAt: 0,
      now: 0,
      newArm: withErrors(20000, 0.06, 9),
      holdback: withErrors(20000, 0.04, 10),
    };
    expect(lookAtWatch(input).decision).toBe('continue');
    expect(lookAtWatch({ ...input, policy: defaultWatchPolicy }).decision).toBe('rollback');
  });

  it('carries the running minimum p-value from look to look', () => {
    const first = look(arm(3800, 0.5, 1), arm(200, 0.8, 2));
    const later = lookAtWatch({
      policy: defaultWatchPolicy,
      openedAt: 0,
      now: 0,
      newArm: arm(3800, 0.7, 11),
      holdback: arm(200, 0.7, 12),
      previous: first.state,
    });
    expect(later.metrics[0]!.pValue).toBe(first.state.thumbs_up_rate);
    expect(later.decision).toBe('rollback');
  });

  it('refuses a policy with a holdback over half, or unknown fields', () => {
    expect(() => watchPolicySchema.parse({ holdbackShare: 0.6 })).toThrow();
    expect(() => watchPolicySchema.parse({ holdback: 0.05 })).toThrow();
  });
});
