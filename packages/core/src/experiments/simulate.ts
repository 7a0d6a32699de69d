/**
 * Seeded simulations of experiments, to show what the tests promise: the false positive rate of
 * A/A experiments looked at after every batch of users (sequential test against a fixed-horizon
 * t-test looked at the same way), the power to detect a lift against sample size, and the sample
 * ratio check on a route that loses part of one arm's logs. Users are simulated one by one:
 * random assignment, then a thumbs up with the arm's rate.
 */

import { SeededRandom } from '../random.js';
import { momentsFromSums, proportionMoments } from './moments.js';
import { msprtTest } from './msprt.js';
import { twoProportionPower } from './power.js';
import { type SampleRatioMismatchResult, sampleRatioMismatch } from './srm.js';
import { welchTTest } from './t-test.js';

interface Tally {
  users: [number, number];
  ups: [number, number];
}

function newTally(): Tally {
  return { users: [0, 0], ups: [0, 0] };
}

/** Adds `count` users split 50/50 at random, each giving a thumbs up with its arm's rate. */
function addUsers(t: Tally, rng: SeededRandom, count: number, rates: [number, number]): void {
  for (let i = 0; i < count; i++) {
    const arm = rng.uniform() < 0.5 ? 0 : 1;
    t.users[arm]++;
    if (rng.uniform() < rates[arm]) t.ups[arm]++;
  }
}

/** The always-valid p-value of this look, the running minimum carried in `previous`. */
function sequentialLook(
  t: Tally,
  tau: number,
  alpha: number,
  previous?: { pValue: number; lower: number; upper: number },
) {
  return msprtTest(proportionMoments(t.ups[0], t.users[0]), proportionMoments(t.ups[1], t.users[1]), {
    alpha,
    tauInStandardDeviations: tau,
    ...(previous ? { previous } : {}),
  });
}

/** The fixed-horizon Welch t-test on the 0/1 thumbs, as if this look were the planned one. */
function naiveLook(t: Tally) {
  // For 0/1 data the sum of squares is the number of ups.
  return welchTTest(
    momentsFromSums(t.users[0], t.ups[0], t.ups[0]),
    momentsFromSums(t.users[1], t.ups[1], t.ups[1]),
  );
}

export interface AaSimulationOptions {
  experiments: number;
  /** Users per experiment (both arms together). */
  usersPerExperiment: number;
  /** Look after every this many users. */
  peekEvery: number;
  /** Thumbs-up rate of both arms. */
  rate: number;
  alpha?: number;
  tauInStandardDeviations?: number;
  seed: number;
}

export interface AaSimulationResult {
  experiments: number;
  looksPerExperiment: number;
  sequentialFalsePositives: number;
  naiveFalsePositives: number;
  /** Share of A/A experiments the sequential test ever called significant. */
  sequentialFalsePositiveRate: number;
  /** Share the t-test, looked at the same way, ever called significant. */
  naiveFalsePositiveRate: number;
}

/** A/A experiments (no true difference), each looked at after every `peekEvery` users. */
export function simulateAaPeeking(o: AaSimulationOptions): AaSimulationResult {
  const rng = new SeededRandom(o.seed);
  const alpha = o.alpha ?? 0.05;
  const tau = o.tauInStandardDeviations ?? 0.1;
  const looks = Math.floor(o.usersPerExperiment / o.peekEvery);
  let sequential = 0;
  let naive = 0;
  for (let e = 0; e < o.experiments; e++) {
    const t = newTally();
    let seqHit = false;
    let naiveHit = false;
    for (let look = 0; look < looks && !(seqHit && naiveHit); look++) {
      addUsers(t, rng, o.peekEvery, [o.rate, o.rate]);
      if (Math.min(t.users[0], t.users[1]) < 2) continue;
      if (!seqHit && sequentialLook(t, tau, alpha).significant) seqHit = true;
      if (!naiveHit && naiveLook(t).pValue < alpha) naiveHit = true;
    }
    if (seqHit) sequential++;
    if (naiveHit) naive++;
  }
  return {
    experiments: o.experiments,
    looksPerExperiment: looks,
    sequentialFalsePositives: sequential,
    naiveFalsePositives: naive,
    sequentialFalsePositiveRate: sequential / o.experiments,
    naiveFalsePositiveRate: naive / o.experiments,
  };
}

export interface PowerSimulationOptions {
  control: number;
  treatment: number;
  /** Users per arm at which power is reported, ascending. */
  usersPerArm: number[];
  simulations: number;
  peekEvery: number;
  alpha?: number;
  tauInStandardDeviations?: number;
  seed: number;
}

export interface PowerRow {
  usersPerArm: number;
  /** Share of experiments whose sequential test, looked at every `peekEvery` users, found the lift by then. */
  sequentialPower: number;
  /** Share whose single t-test at exactly this size found it (simulated). */
  fixedHorizonPower: number;
  /** The z-test's power by formula (twoProportionPower). */
  fixedHorizonPowerFormula: number;
}

/** Power to detect control -> treatment, sequential (continuous looks) and fixed-horizon. */
export function simulatePower(o: PowerSimulationOptions): PowerRow[] {
  const rng = new SeededRandom(o.seed);
  const alpha = o.alpha ?? 0.05;
  const tau = o.tauInStandardDeviations ?? 0.1;
  const maxUsers = 2 * Math.max(...o.usersPerArm);
  const checkpoints = new Set(o.usersPerArm.map((n) => 2 * n));
  const seqAt = new Map<number, number>(o.usersPerArm.map((n) => [n, 0]));
  const fixedAt = new Map<number, number>(o.usersPerArm.map((n) => [n, 0]));
  for (let s = 0; s < o.simulations; s++) {
    const t = newTally();
    let firstWin = Number.POSITIVE_INFINITY;
    let total = 0;
    let state: { pValue: number; lower: number; upper: number } | undefined;
    while (total < maxUsers) {
      addUsers(t, rng, o.peekEvery, [o.control, o.treatment]);
      total += o.peekEvery;
      if (Math.min(t.users[0], t.users[1]) < 2) continue;
      if (firstWin === Number.POSITIVE_INFINITY) {
        const r = sequentialLook(t, tau, alpha, state);
        state = r.state;
        if (r.interval.lower > 0) firstWin = total;
      }
      if (checkpoints.has(total)) {
        const n = total / 2;
        const tt = naiveLook(t);
        if (tt.pValue < alpha && tt.difference > 0) fixedAt.set(n, fixedAt.get(n)! + 1);
      }
    }
    for (const n of o.usersPerArm) if (firstWin <= 2 * n) seqAt.set(n, seqAt.get(n)! + 1);
  }
  return o.usersPerArm.map((n) => ({
    usersPerArm: n,
    sequentialPower: seqAt.get(n)! / o.simulations,
    fixedHorizonPower: fixedAt.get(n)! / o.simulations,
    fixedHorizonPowerFormula: twoProportionPower({ control: o.control, treatment: o.treatment, alpha }, n),
  }));
}

export interface SrmSimulationOptions {
  /** Logged users to simulate. */
  users: number;
  /** Configured weights of the route. */
  weights: number[];
  /** Probability that a user of each variant is logged (1 = no loss). */
  loggingRates: number[];
  threshold?: number;
  seed: number;
}

/** A route that assigns by `weights` but loses some users' logs; the SRM check on what was logged. */
export function simulateSampleRatio(o: SrmSimulationOptions): SampleRatioMismatchResult {
  const rng = new SeededRandom(o.seed);
  const total = o.weights.reduce((s, w) => s + w, 0);
  const counts = o.weights.map(() => 0);
  let logged = 0;
  while (logged < o.users) {
    let u = rng.uniform() * total;
    let arm = 0;
    while (arm < o.weights.length - 1 && u >= o.weights[arm]!) u -= o.weights[arm++]!;
    if (rng.uniform() < o.loggingRates[arm]!) {
      counts[arm]!++;
      logged++;
    }
  }
  return sampleRatioMismatch(
    o.weights.map((weight, i) => ({ name: `v${i}`, weight, users: counts[i]! })),
    o.threshold === undefined ? {} : { threshold: o.threshold },
  );
}
