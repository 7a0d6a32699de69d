/**
 * Seeded simulations of experiments, to show what the tests promise: the false positive rate of
 * A/A experiments looked at after every batch of users (sequential test against a fixed-horizon
 * t-test looked at the same way), the power to detect a lift against sample size, and the sample
 * ratio check on a route that loses part of one arm's logs. Users are simulated one by one:
 * random assignment, then a thumbs up with the arm's rate; in the clustered A/A runs each user
 * rates several answers with a propensity of their own.
 */

import { SeededRandom } from '../random.js';
import {
  decideExperiment,
  ExperimentDecisionConfig,
  type ExperimentDecisionConfigInput,
  type ExperimentState,
} from './decision.js';
import { momentsFromSums, proportionMoments } from './moments.js';
import { type MsprtState, msprtTest } from './msprt.js';
import { twoProportionPower } from './power.js';
import { type SampleRatioMismatchResult, sampleRatioMismatch } from './srm.js';
import { welchTTest } from './t-test.js';
import { emptyUserMetricSums, type UserMetricSums, userMeanMetric } from './users.js';

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

export interface ClusteredAaOptions {
  experiments: number;
  /** Users per experiment (both arms together). */
  usersPerExperiment: number;
  /** Look after every this many users. */
  peekEvery: number;
  /** Mean thumbs-up propensity of both arms. */
  rate: number;
  /**
   * Each user's own propensity is Beta(rate · c, (1 - rate) · c): the smaller c, the more users
   * differ, and the more one user's ratings agree with each other (intra-user correlation
   * 1 / (c + 1)).
   */
  concentration: number;
  /** Each user rates a uniform whole number of answers in [1, maxRatingsPerUser]. */
  maxRatingsPerUser: number;
  /** The decision rule, as an experiment's `decisionRule` (primary metric `thumbs_up_rate`). */
  decisionRule?: Omit<ExperimentDecisionConfigInput, 'primaryMetric'>;
  seed: number;
}

export interface ClusteredAaResult {
  experiments: number;
  looksPerExperiment: number;
  meanRatingsPerUser: number;
  /** Share of A/A experiments whose per-user analysis (the product's) was ever significant. */
  userLevelFalsePositiveRate: number;
  /** The same with every rating taken as an independent unit (a proportion over ratings). */
  eventLevelFalsePositiveRate: number;
}

interface ClusteredArm {
  users: UserMetricSums;
  up: number;
}

/** One user arrives with all their ratings, from their own propensity. */
function addClusteredUser(arm: ClusteredArm, rng: SeededRandom, o: ClusteredAaOptions): void {
  const p = rng.beta(o.rate * o.concentration, (1 - o.rate) * o.concentration);
  const ratings = 1 + rng.int(o.maxRatingsPerUser);
  let up = 0;
  for (let k = 0; k < ratings; k++) if (rng.uniform() < p) up++;
  const mean = up / ratings;
  arm.users.users++;
  arm.users.events += ratings;
  arm.users.sum += mean;
  arm.users.sumOfSquares += mean * mean;
  arm.up += up;
}

/** decideExperiment at one look, as a recorded look of the product makes it: the primary metric's p. */
function userLevelLook(
  arms: [ClusteredArm, ClusteredArm],
  previous: ExperimentState | undefined,
  rule: ClusteredAaOptions['decisionRule'],
): { pValue: number; state: ExperimentState } {
  const d = decideExperiment(
    {
      control: 'a',
      variants: arms.map((a, i) => ({
        name: i === 0 ? 'a' : 'b',
        weight: 1,
        users: a.users.users,
        metrics: { thumbs_up_rate: userMeanMetric(a.users) },
      })),
      ...(previous ? { previous } : {}),
    },
    { ...rule, primaryMetric: 'thumbs_up_rate' },
  );
  return { pValue: d.comparisons[0]?.sequentialPValue ?? 1, state: d.state };
}

/**
 * The same look over ratings, each taken as an independent unit: a proportion, as
 * decideExperiment compares it (proportionMoments, then the mSPRT). The call is made directly
 * because decideExperiment's exact beta-binomial integrals on every look of a thousand
 * experiments would take hours and do not change the p-value.
 */
function eventLevelLook(
  arms: [ClusteredArm, ClusteredArm],
  previous: MsprtState | undefined,
  rule: ExperimentDecisionConfig,
): MsprtState | undefined {
  if (Math.min(arms[0].users.events, arms[1].users.events) < Math.max(2, rule.minObservationsPerArm))
    return previous;
  return msprtTest(
    proportionMoments(arms[0].up, arms[0].users.events),
    proportionMoments(arms[1].up, arms[1].users.events),
    {
      alpha: rule.alpha,
      tauInStandardDeviations: rule.tauInStandardDeviations,
      ...(previous ? { previous } : {}),
    },
  ).state;
}

/**
 * A/A experiments whose users rate 1 to `maxRatingsPerUser` answers with their own propensity,
 * looked at after every `peekEvery` users by the product's decision code twice: over users (each
 * user's mean, userMeanMetric, what experimentStatus passes) and over ratings as if each were an
 * independent unit (what it passed before the user became the unit). A false positive is an
 * experiment whose always-valid p-value of the primary metric ever reaches alpha.
 */
export function simulateClusteredAa(o: ClusteredAaOptions): ClusteredAaResult {
  const rng = new SeededRandom(o.seed);
  const rule = ExperimentDecisionConfig.parse({ ...o.decisionRule, primaryMetric: 'thumbs_up_rate' });
  const looks = Math.floor(o.usersPerExperiment / o.peekEvery);
  let userHits = 0;
  let eventHits = 0;
  let ratings = 0;
  let users = 0;
  for (let e = 0; e < o.experiments; e++) {
    const arms: [ClusteredArm, ClusteredArm] = [
      { users: { ...emptyUserMetricSums }, up: 0 },
      { users: { ...emptyUserMetricSums }, up: 0 },
    ];
    let userState: ExperimentState | undefined;
    let eventState: MsprtState | undefined;
    let userHit = false;
    let eventHit = false;
    for (let look = 0; look < looks; look++) {
      for (let u = 0; u < o.peekEvery; u++) addClusteredUser(arms[rng.uniform() < 0.5 ? 0 : 1], rng, o);
      // The running minimum p-value only falls: once significant, later looks change nothing.
      if (!userHit) {
        const r = userLevelLook(arms, userState, o.decisionRule);
        userState = r.state;
        userHit = r.pValue <= rule.alpha;
      }
      if (!eventHit) {
        eventState = eventLevelLook(arms, eventState, rule);
        eventHit = (eventState?.pValue ?? 1) <= rule.alpha;
      }
    }
    if (userHit) userHits++;
    if (eventHit) eventHits++;
    ratings += arms[0].users.events + arms[1].users.events;
    users += arms[0].users.users + arms[1].users.users;
  }
  return {
    experiments: o.experiments,
    looksPerExperiment: looks,
    meanRatingsPerUser: ratings / users,
    userLevelFalsePositiveRate: userHits / o.experiments,
    eventLevelFalsePositiveRate: eventHits / o.experiments,
  };
}
