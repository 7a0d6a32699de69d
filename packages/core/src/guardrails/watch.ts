/**
 * The watch after a promotion. A promoted model serves the route while a small holdback of users
 * (sticky, like an experiment's) stays on the model it replaced; each look compares the two arms
 * on user-level outcomes and guardrail metrics with a one-sided always-valid test, and rolls back
 * when the new model is worse than the policy tolerates. Pure: the store computes the per-user
 * sums (never raw events), this decides.
 *
 * The test is the mSPRT of msprt.ts with a half-normal mixture over the harmful side only. With
 * d the harm (holdback minus new for outcomes where higher is better, new minus holdback for
 * error-like rates) and δ the policy's tolerated harm, the null is d <= δ. Mixing the likelihood
 * ratio of d = δ + θ against d = δ over θ ~ N⁺(0, τ²) gives
 *
 *   Λ⁺ = 2 Φ(Δ'τ / sqrt(V (V + τ²))) · Λ,   Δ' = d̂ - δ,
 *
 * with Λ the two-sided mixture of msprt.ts: a nonnegative supermartingale under every d <= δ, so
 * by Ville's inequality P(Λ⁺ ever reaches 1/α) <= α however often the watch looks. One-sided
 * because only harm acts: a better new model is what the promotion expected.
 *
 * Several metrics are watched; the policy's alpha bounds the chance that a watch of an unchanged
 * model ever rolls back, split over the metrics (Bonferroni, fixed shares below) so the bound
 * holds for all of them together. The user-level outcome gets the largest share: it is the
 * promise (quality), and the holdback is small, so its test needs the power.
 */
import { z } from 'zod';
import { normalCdf } from '../calibration/distributions.js';
import { momentsFromSums } from '../experiments/moments.js';
import { msprtLogLikelihoodRatio } from '../experiments/msprt.js';
import type { UserMetricSums } from '../experiments/users.js';

/** The metrics a watch compares, once each: the name, which way is harm, its share of alpha. */
export const watchMetrics = [
  { name: 'thumbs_up_rate', harmWhen: 'lower', alphaShare: 0.6, threshold: 'thumbsUpDrop' },
  { name: 'reward', harmWhen: 'lower', alphaShare: 0.2, threshold: 'rewardDrop' },
  { name: 'error_rate', harmWhen: 'higher', alphaShare: 0.2 / 3, threshold: 'errorRateRise' },
  { name: 'empty_rate', harmWhen: 'higher', alphaShare: 0.2 / 3, threshold: 'emptyRateRise' },
  { name: 'slow_rate', harmWhen: 'higher', alphaShare: 0.2 / 3, threshold: 'slowRateRise' },
] as const;

export type WatchMetricName = (typeof watchMetrics)[number]['name'];

export const watchPolicySchema = z
  .object({
    /** The watch ends without harm once this many users (both arms) were served... */
    users: z.number().int().min(1).default(10_000),
    /** ...and this many hours passed (both: a quiet night does not end it early). */
    hours: z
      .number()
      .positive()
      .max(24 * 90)
      .default(24),
    /** Share of users that stay on the previous model during the watch. */
    holdbackShare: z.number().gt(0).max(0.5).default(0.05),
    /** Bound on the chance that a watch of an unchanged model ever rolls back. */
    alpha: z.number().gt(0).max(0.5).default(0.05),
    /** No metric is tested before each arm has this many users with it. */
    minUsersPerArm: z.number().int().min(2).default(20),
    /** Mixture scale τ in pooled standard deviations of each metric's user means. */
    tauInStandardDeviations: z.number().positive().default(0.4),
    /** Harm tolerated before a rollback, in each metric's units (rates: absolute points / 100). */
    harm: z
      .object({
        thumbsUpDrop: z.number().min(0).max(1).default(0),
        rewardDrop: z.number().min(0).default(0),
        errorRateRise: z.number().min(0).max(1).default(0.01),
        emptyRateRise: z.number().min(0).max(1).default(0.01),
        /** Rise of the share of calls slower than the holdback's p95 (0.05 of them, unchanged). */
        slowRateRise: z.number().min(0).max(1).default(0.05),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type WatchPolicy = z.infer<typeof watchPolicySchema>;
export type WatchPolicyInput = z.input<typeof watchPolicySchema>;
export const defaultWatchPolicy: WatchPolicy = watchPolicySchema.parse({});

/** One arm of a watch, as the store sums it per user since the watch opened. */
export interface WatchArmEvidence {
  /** Distinct users served (the call's interaction when it named no user). */
  users: number;
  interactions: number;
  /** Each metric's per-user sums: the user's mean outcome, summed over users. */
  metrics: Record<WatchMetricName, UserMetricSums>;
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
}

/** Running minimum of each metric's one-sided p-value over the looks. */
export type WatchState = Partial<Record<WatchMetricName, number>>;

export interface WatchMetricLook {
  metric: WatchMetricName;
  /** Mean of user means per arm (null: no users with it). */
  newMean: number | null;
  holdbackMean: number | null;
  newUsers: number;
  holdbackUsers: number;
  /** Harm estimate, positive = the new model is worse (d̂ above). */
  harm: number | null;
  tolerated: number;
  /** Always-valid one-sided p-value of "harm beyond tolerated" (running minimum). */
  pValue: number;
  alpha: number;
  harmful: boolean;
  /** Why it was not tested, when it was not. */
  skipped?: string;
}

export type WatchDecision = 'continue' | 'rollback' | 'end';

export interface WatchLookResult {
  decision: WatchDecision;
  reasons: string[];
  metrics: WatchMetricLook[];
  /** Users served in both arms together since the watch opened. */
  users: number;
  hoursElapsed: number;
  state: WatchState;
}

export interface WatchLookInput {
  policy: WatchPolicy;
  openedAt: number;
  now: number;
  newArm: WatchArmEvidence;
  holdback: WatchArmEvidence;
  previous?: WatchState;
}

/** Λ⁺ in logs, for observed harm beyond tolerance `excess` with variance `v`, mixture `tau2`. */
export function oneSidedLogLikelihoodRatio(excess: number, v: number, tau2: number): number {
  const z = (excess * Math.sqrt(tau2)) / Math.sqrt(v * (v + tau2));
  return Math.log(2 * normalCdf(z)) + msprtLogLikelihoodRatio(excess, v, tau2);
}

function testMetric(
  spec: (typeof watchMetrics)[number],
  input: WatchLookInput,
  alpha: number,
): WatchMetricLook {
  const { policy } = input;
  const a = input.newArm.metrics[spec.name];
  const b = input.holdback.metrics[spec.name];
  const mNew = momentsFromSums(a.users, a.sum, a.sumOfSquares);
  const mHold = momentsFromSums(b.users, b.sum, b.sumOfSquares);
  const tolerated = policy.harm[spec.threshold];
  const previousP = input.previous?.[spec.name] ?? 1;
  const look: WatchMetricLook = {
    metric: spec.name,
    newMean: a.users > 0 ? mNew.mean : null,
    holdbackMean: b.users > 0 ? mHold.mean : null,
    newUsers: a.users,
    holdbackUsers: b.users,
    harm: a.users > 0 && b.users > 0 ? (spec.harmWhen === 'lower' ? -1 : 1) * (mNew.mean - mHold.mean) : null,
    tolerated,
    pValue: previousP,
    alpha,
    harmful: previousP <= alpha,
  };
  if (Math.min(a.users, b.users) < policy.minUsersPerArm)
    return { ...look, skipped: `fewer than ${policy.minUsersPerArm} users in an arm` };
  // The pooled variance of user means: under the null both arms are one population, and a small
  // holdback with no event yet (variance 0) must not make the new arm's errors look certain.
  const n = a.users + b.users;
  const pooled = momentsFromSums(n, a.sum + b.sum, a.sumOfSquares + b.sumOfSquares).variance;
  const v = pooled / a.users + pooled / b.users;
  if (!(v > 0)) return { ...look, skipped: 'no variation in either arm' };
  const tau = policy.tauInStandardDeviations * Math.sqrt(pooled);
  const logLr = oneSidedLogLikelihoodRatio(look.harm! - tolerated, v, tau * tau);
  const pValue = Math.min(previousP, 1, Math.exp(-logLr));
  return { ...look, pValue, harmful: pValue <= alpha };
}

function describe(m: WatchMetricLook): string {
  const f = (x: number | null) => (x === null ? '-' : x.toFixed(4));
  return `${m.metric}: new ${f(m.newMean)} (${m.newUsers} users) vs holdback ${f(m.holdbackMean)} (${
    m.holdbackUsers
  } users), harm ${f(m.harm)} beyond the tolerated ${m.tolerated} with always-valid p = ${m.pValue.toPrecision(
    3,
  )} <= ${m.alpha.toPrecision(3)}`;
}

/** One look of a watch: roll back on harm, end once its length passed, else keep watching. */
export function lookAtWatch(input: WatchLookInput): WatchLookResult {
  const { policy } = input;
  const metrics = watchMetrics.map((spec) => testMetric(spec, input, policy.alpha * spec.alphaShare));
  const state: WatchState = Object.fromEntries(metrics.map((m) => [m.metric, m.pValue]));
  const users = input.newArm.users + input.holdback.users;
  const hoursElapsed = Math.max(0, input.now - input.openedAt) / 3_600_000;
  const harmful = metrics.filter((m) => m.harmful);
  if (harmful.length > 0)
    return { decision: 'rollback', reasons: harmful.map(describe), metrics, users, hoursElapsed, state };
  if (users >= policy.users && hoursElapsed >= policy.hours)
    return {
      decision: 'end',
      reasons: [
        `no harm after ${users} users and ${hoursElapsed.toFixed(1)} hours (policy: ${policy.users} users, ${policy.hours} hours)`,
      ],
      metrics,
      users,
      hoursElapsed,
      state,
    };
  return {
    decision: 'continue',
    reasons: [`watching: ${users}/${policy.users} users, ${hoursElapsed.toFixed(1)}/${policy.hours} hours`],
    metrics,
    users,
    hoursElapsed,
    state,
  };
}
