/**
 * Seeded experiments on users who were there before the experiment: each user has a propensity
 * of their own (to give a thumbs up, or to regenerate an answer) that persists, rates some answers in a pre-period (none for a new user)
 * and some during the experiment. Every look runs the product's decision code (decideExperiment
 * on userMeanMetric of the per-user sums, after cupedAdjust when the configuration adjusts), for
 * several analysis configurations on the same simulated users, so their power and A/A
 * false-positive rates compare like for like.
 */
import { SeededRandom } from '../random.js';
import { type CupedArmSums, cupedAdjust, emptyUserCovariateSums } from './cuped.js';
import { decideExperiment, type ExperimentDecisionConfigInput, type ExperimentState } from './decision.js';
import { type ExperimentMetricName, experimentMetric } from './metrics.js';
import { emptyUserMetricSums, userMeanMetric } from './users.js';

export interface CupedPopulation {
  /** Mean propensity of the control's users: their thumbs-up rate, or regenerate rate... */
  rate: number;
  /**
   * Each user's propensity is Beta(rate · c, (1 - rate) · c): one user's ratings correlate with
   * each other (intra-user correlation 1 / (c + 1)), before and during the experiment alike.
   */
  concentration: number;
  /** Ratings (answers, for an implicit rate) per user during the experiment: uniform in [1, this]. */
  maxRatingsPerUser: number;
  /** Ratings (answers) per user in the pre-period: uniform in [0, this]; 0 is a new user. */
  maxPrePeriodRatingsPerUser: number;
}

/**
 * Answers as the demo's simulated people treat them (core simulate/rate.ts): a user's propensity
 * is the chance they like an answer; an answer they do not rate (most) is copied now and then when
 * liked and regenerated now and then when not. The metric's outcome per answer is then what its
 * definition reads: for `regenerate_rate` 1 when regenerated, for `copy_rate` 1 when copied, for
 * `net_dissatisfaction` +1 regenerated, -1 copied, 0 neither. The treatment raises the liking
 * propensity (true quality), and every metric moves only as far as these signals carry it, so
 * metrics compare at one true improvement on the same users.
 */
export interface ImplicitAnswerModel {
  /** Share of answers the user leaves unrated: implicit signals come from these. */
  unratedShare: number;
  copyIfLiked: number;
  regenerateIfDisliked: number;
}

/** One answer's outcome on `metric` under the answer model (liked: did the user like it). */
function answerOutcome(
  rng: SeededRandom,
  model: ImplicitAnswerModel,
  metric: ExperimentMetricName,
  liked: boolean,
): number {
  // The same three draws whatever the metric, so two metrics' runs with one seed see the same answers.
  const unrated = rng.uniform() < model.unratedShare;
  const copyDraw = rng.uniform();
  const regenerateDraw = rng.uniform();
  const copied = unrated && liked && copyDraw < model.copyIfLiked;
  const regenerated = unrated && !liked && regenerateDraw < model.regenerateIfDisliked;
  if (metric === 'regenerate_rate') return regenerated ? 1 : 0;
  if (metric === 'copy_rate') return copied ? 1 : 0;
  if (metric === 'net_dissatisfaction') return regenerated ? 1 : copied ? -1 : 0;
  throw new Error(`answer model: no outcome for ${metric}`);
}

export interface CupedAnalysis {
  name: string;
  /** Regress each user's outcome on their pre-period mean (cuped.ts). */
  cuped: boolean;
  /** The decision rule, as an experiment's `decisionRule` (the primary metric is the simulation's). */
  decisionRule?: Omit<ExperimentDecisionConfigInput, 'primaryMetric'>;
}

export interface CupedSimulationOptions {
  population: CupedPopulation;
  /**
   * The metric the outcomes are (default `thumbs_up_rate`): a rate of core's metrics.ts, whose
   * direction says which way the treatment moves it (e.g. `regenerate_rate`: the propensity is
   * the user's chance to regenerate an answer, and a better treatment lowers it).
   */
  metric?: ExperimentMetricName;
  /**
   * Treatment improvement in points of the metric, in its better direction. Higher is better:
   * each treated user's propensity p becomes p + lift (1 - p) / (1 - rate) (a share of their
   * thumbs down turn up); lower is better: p (1 - lift / rate) (a share of their regenerations do
   * not happen). Both keep p in [0, 1] and move the mean by exactly `lift`. 0 is an A/A experiment.
   */
  lift: number;
  /**
   * Draw each answer's outcome from this model of what people do with answers; the propensity
   * and the lift are then the chance to like an answer (true quality), higher is better, whatever
   * the metric's direction. Without it each answer is a draw of the metric itself.
   */
  answers?: ImplicitAnswerModel;
  analyses: CupedAnalysis[];
  experiments: number;
  /** Users (both arms) per experiment at most. */
  usersPerExperiment: number;
  /** Look after every this many users. */
  peekEvery: number;
  seed: number;
}

export interface CupedAnalysisResult {
  name: string;
  /** Per experiment: users per arm (all users / 2) at the first ship decision, or null. */
  shippedAt: (number | null)[];
  /** Share of experiments whose primary always-valid p-value ever reached alpha (either direction). */
  significantRate: number;
  /** Mean variance reduction CUPED reported at the last look (0 without CUPED). */
  meanVarianceReduction: number;
}

export interface CupedSimulationResult {
  experiments: number;
  looksPerExperiment: number;
  /** Sample correlation of users' pre-period and experiment means (users with both), pooled. */
  prePostCorrelation: number;
  analyses: CupedAnalysisResult[];
}

interface Arm extends CupedArmSums {}

function newArm(): Arm {
  return { outcome: { ...emptyUserMetricSums }, covariate: { ...emptyUserCovariateSums } };
}

function ups(rng: SeededRandom, p: number, n: number): number {
  let up = 0;
  for (let k = 0; k < n; k++) if (rng.uniform() < p) up++;
  return up;
}

interface Moments {
  n: number;
  x: number;
  y: number;
  xx: number;
  yy: number;
  xy: number;
}

/** Mean outcome of n answers under the answer model, each liked with chance p. */
function meanOutcome(
  rng: SeededRandom,
  model: ImplicitAnswerModel,
  metric: ExperimentMetricName,
  p: number,
  n: number,
): number {
  let sum = 0;
  for (let k = 0; k < n; k++) sum += answerOutcome(rng, model, metric, rng.uniform() < p);
  return sum / n;
}

function addUser(
  arm: Arm,
  rng: SeededRandom,
  sim: Pick<CupedSimulationOptions, 'population' | 'answers'> & { metric: ExperimentMetricName },
  lift: number,
  higherIsBetter: boolean,
  m: Moments,
): void {
  const pop = sim.population;
  const base = rng.beta(pop.rate * pop.concentration, (1 - pop.rate) * pop.concentration);
  // Under an answer model the propensity is liking, which a better treatment raises.
  const up = higherIsBetter || sim.answers !== undefined;
  const p = up ? base + (lift * (1 - base)) / (1 - pop.rate) : base * (1 - lift / pop.rate);
  const draw = (q: number, n: number) =>
    sim.answers ? meanOutcome(rng, sim.answers, sim.metric, q, n) : ups(rng, q, n) / n;
  const pre = rng.int(pop.maxPrePeriodRatingsPerUser + 1);
  // The pre-period was before the experiment: the user's own propensity, untreated.
  const x = pre > 0 ? draw(base, pre) : null;
  const ratings = 1 + rng.int(pop.maxRatingsPerUser);
  const y = draw(p, ratings);
  const o = arm.outcome;
  o.users++;
  o.events += ratings;
  o.sum += y;
  o.sumOfSquares += y * y;
  if (x === null) return;
  const c = arm.covariate;
  c.users++;
  c.sum += x;
  c.sumOfSquares += x * x;
  c.crossSum += x * y;
  c.outcomeSum += y;
  m.n++;
  m.x += x;
  m.y += y;
  m.xx += x * x;
  m.yy += y * y;
  m.xy += x * y;
}

function look(
  arms: [Arm, Arm],
  metric: ExperimentMetricName,
  analysis: CupedAnalysis,
  previous: ExperimentState | undefined,
): { decision: string; pValue: number; state: ExperimentState; varianceReduction: number } {
  const adjustment = analysis.cuped ? cupedAdjust(arms) : null;
  const sums = adjustment ? adjustment.arms : arms.map((a) => a.outcome);
  const d = decideExperiment(
    {
      control: 'a',
      variants: sums.map((s, i) => ({
        name: i === 0 ? 'a' : 'b',
        weight: 1,
        users: s.users,
        metrics: { [metric]: userMeanMetric(s) },
      })),
      ...(previous ? { previous } : {}),
    },
    { ...analysis.decisionRule, primaryMetric: metric },
  );
  return {
    decision: d.decision,
    pValue: d.comparisons[0]?.sequentialPValue ?? 1,
    state: d.state,
    varianceReduction: adjustment?.varianceReduction ?? 0,
  };
}

/**
 * Experiments on a persistent-propensity population, looked at after every `peekEvery` users by
 * each analysis in turn, on the same users. An analysis ships when decideExperiment says `ship`;
 * it is significant when the primary metric's always-valid p-value reaches alpha at any look.
 */
export function simulateCupedExperiments(o: CupedSimulationOptions): CupedSimulationResult {
  const rng = new SeededRandom(o.seed);
  const metric = o.metric ?? 'thumbs_up_rate';
  const { higherIsBetter } = experimentMetric(metric);
  const looks = Math.floor(o.usersPerExperiment / o.peekEvery);
  const alpha = (a: CupedAnalysis) => a.decisionRule?.alpha ?? 0.05;
  const results = o.analyses.map((a) => ({
    name: a.name,
    shippedAt: [] as (number | null)[],
    significant: 0,
    reduction: 0,
  }));
  const m: Moments = { n: 0, x: 0, y: 0, xx: 0, yy: 0, xy: 0 };
  const userOptions = { population: o.population, answers: o.answers, metric };
  for (let e = 0; e < o.experiments; e++) {
    const arms: [Arm, Arm] = [newArm(), newArm()];
    const state = o.analyses.map(() => ({
      previous: undefined as ExperimentState | undefined,
      shippedAt: null as number | null,
      significant: false,
      reduction: 0,
    }));
    for (let l = 0; l < looks; l++) {
      for (let u = 0; u < o.peekEvery; u++) {
        const arm = rng.uniform() < 0.5 ? 0 : 1;
        addUser(arms[arm], rng, userOptions, arm === 1 ? o.lift : 0, higherIsBetter, m);
      }
      // Users per arm as the design counts them (both arms together / 2), as simulatePower does.
      const perArm = ((l + 1) * o.peekEvery) / 2;
      o.analyses.forEach((a, i) => {
        const s = state[i]!;
        // Once shipped and significant, later looks change nothing (the p-value is a running minimum).
        if (s.shippedAt !== null && s.significant) return;
        const r = look(arms, metric, a, s.previous);
        s.previous = r.state;
        s.reduction = r.varianceReduction;
        if (r.pValue <= alpha(a)) s.significant = true;
        if (s.shippedAt === null && r.decision === 'ship') s.shippedAt = perArm;
      });
    }
    state.forEach((s, i) => {
      const r = results[i]!;
      r.shippedAt.push(s.shippedAt);
      if (s.significant) r.significant++;
      r.reduction += s.reduction;
    });
  }
  const cov = m.xy / m.n - (m.x / m.n) * (m.y / m.n);
  const vx = m.xx / m.n - (m.x / m.n) ** 2;
  const vy = m.yy / m.n - (m.y / m.n) ** 2;
  return {
    experiments: o.experiments,
    looksPerExperiment: looks,
    prePostCorrelation: cov / Math.sqrt(vx * vy),
    analyses: results.map((r) => ({
      name: r.name,
      shippedAt: r.shippedAt,
      significantRate: r.significant / o.experiments,
      meanVarianceReduction: r.reduction / o.experiments,
    })),
  };
}

/** Share of experiments that shipped by `usersPerArm` users per arm. */
export function shippedByRate(r: CupedAnalysisResult, usersPerArm: number): number {
  return r.shippedAt.filter((n) => n !== null && n <= usersPerArm).length / r.shippedAt.length;
}
