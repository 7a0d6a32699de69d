/**
 * Sizing a canary from power: how long the sequential test (msprt.ts) must run before "it found
 * nothing" means "there is no effect worth having", and which mixture it should use.
 *
 * A look of the mSPRT ships when the observed difference clears the always-valid half-width h(V)
 * (V the variance of the difference of the arms' means), so for a true effect δ one look ships
 * with probability about Φ((δ - h(V)) / √V). V falls as evidence comes in, from more users and,
 * for per-user means, from more outcomes per user and from CUPED. The horizon is the variance V*
 * at which that probability reaches the wanted power: stopping there with "no effect" misses an
 * improvement of δ at most 1 - power of the time. It is a horizon in information, not in users, so
 * returning users and variance reduction count (a population that stops growing still gets there),
 * and it changes nothing about when the test ships or stops for harm: the always-valid guarantee
 * is untouched, since ending a test without a win can never add a false win.
 */
import { normalCdf } from '../calibration/distributions.js';
import { msprtHalfWidth } from './msprt.js';

export interface MsprtHorizonDesign {
  /** The smallest improvement worth finding, in metric units. */
  effect: number;
  /** The mixture's standard deviation, in metric units (the test's tau). */
  tau: number;
  /** The test's level (default 0.05). */
  alpha?: number;
  /** Wanted probability that one look at the horizon ships a true `effect` (default 0.8). */
  power?: number;
}

function checkDesign(d: MsprtHorizonDesign): Required<MsprtHorizonDesign> {
  const alpha = d.alpha ?? 0.05;
  const power = d.power ?? 0.8;
  if (!(d.effect > 0) || !Number.isFinite(d.effect)) throw new Error(`effect must be > 0 (got ${d.effect})`);
  if (!(d.tau > 0) || !Number.isFinite(d.tau)) throw new Error(`tau must be > 0 (got ${d.tau})`);
  if (!(alpha > 0 && alpha < 1)) throw new Error(`alpha must be in (0, 1) (got ${alpha})`);
  if (!(power > 0 && power < 1)) throw new Error(`power must be in (0, 1) (got ${power})`);
  return { effect: d.effect, tau: d.tau, alpha, power };
}

/** Probability that one mSPRT look at variance `v` ships a true improvement of `effect`. */
export function msprtLookPower(effect: number, v: number, tau: number, alpha = 0.05): number {
  if (!(v > 0)) return 1;
  return normalCdf((effect - msprtHalfWidth(v, tau * tau, alpha)) / Math.sqrt(v));
}

/**
 * The horizon: the largest variance of the difference at which one look has `power` to ship a
 * true `effect`. The look's power falls as V grows over the range a canary lives in; the search
 * walks up a log grid from a variance far below the effect's square to the first V that falls
 * short, then bisects that step.
 */
export function msprtHorizonVariance(design: MsprtHorizonDesign): number {
  const d = checkDesign(design);
  const ok = (v: number) => msprtLookPower(d.effect, v, d.tau, d.alpha) >= d.power;
  const step = 1.25;
  let lo = d.effect * d.effect * 1e-6;
  if (!ok(lo)) throw new Error(`no variance gives power ${d.power} for effect ${d.effect}`);
  let hi = lo * step;
  while (ok(hi)) {
    lo = hi;
    hi *= step;
  }
  for (let i = 0; i < 60 && hi / lo > 1 + 1e-9; i++) {
    const mid = Math.sqrt(lo * hi);
    if (ok(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * Users a variance of the difference takes, for a metric with per-user standard deviation `sd`
 * and a share `share` of users on the candidate: V = sd²/n_candidate + sd²/n_control.
 */
export function usersForVariance(
  v: number,
  sd: number,
  share: number,
): { total: number; candidate: number; control: number } {
  if (!(v > 0) || !(sd >= 0) || !(share > 0 && share < 1))
    throw new Error(`need v > 0, sd >= 0 and share in (0, 1) (got ${v}, ${sd}, ${share})`);
  const total = Math.ceil(((sd * sd) / v) * (1 / share + 1 / (1 - share)));
  return { total, candidate: Math.ceil(total * share), control: Math.ceil(total * (1 - share)) };
}

/** An offline estimate of the candidate's advantage on the live metric, in metric units. */
export interface OfflineAdvantage {
  estimate: number;
  lower: number;
  upper: number;
  /** Items behind it. */
  items: number;
}

/**
 * The advantage a paired comparison (a judge's or reward model's wins and losses over `items`)
 * implies on a like rate: P(candidate wins) - P(production wins), with the sign test's interval
 * on the decisive share carried over. For a judge that ties two answers it likes (or dislikes)
 * alike, that difference is exactly the difference of the two models' like rates (the rates are
 * P(liked) and the win and loss probabilities differ by them); a judge that breaks every tie
 * overstates it. So it plans the canary (mixture, horizon), and never decides anything.
 */
export function pairedAdvantage(
  wins: number,
  losses: number,
  items: number,
  sign: { lower: number; upper: number },
): OfflineAdvantage | null {
  const decisive = wins + losses;
  if (!(items > 0) || decisive === 0 || decisive > items) return null;
  const scale = decisive / items;
  return {
    estimate: (wins - losses) / items,
    lower: (2 * sign.lower - 1) * scale,
    upper: (2 * sign.upper - 1) * scale,
    items,
  };
}

export interface CanaryPlanInput {
  /** The smallest improvement worth shipping, in metric units. */
  minimumEffect: number;
  /** The mixture, when the policy names it; otherwise it comes from the estimate below. */
  expectedEffect?: number;
  /** The offline gate's estimate of the candidate's advantage, in metric units, if it had one. */
  offline?: OfflineAdvantage | null;
  /** Per-user standard deviation of the metric in production (for the planned users only). */
  metricSd: number;
  /** Share of users on the candidate. */
  share: number;
  alpha?: number;
  power?: number;
}

export interface CanaryPlan {
  /** The mSPRT mixture's standard deviation, metric units (ExperimentDecisionConfig.expectedEffect). */
  expectedEffect: number;
  /** The effect the horizon is sized to find with `power`. */
  horizonEffect: number;
  power: number;
  /** Stop with "no effect" once the variance of the difference is at or below this. */
  horizonVariance: number;
  /** Users the horizon takes at the production standard deviation (a plan; the variance decides). */
  plannedUsers: { total: number; candidate: number; control: number };
  /** One line per choice, for the round's log. */
  reasons: string[];
}

const fmt = (x: number) => Number(x.toPrecision(3)).toString();

/**
 * The canary's plan. The mixture goes where the effect is expected: the policy's expected effect
 * if it names one, else the offline estimate when it is above the minimum effect, else the
 * minimum effect. The horizon is sized for the smallest effect still worth finding: the minimum
 * effect, or the offline interval's lower bound when that is higher (the gate has shown at least
 * that much; a canary that cannot find it by then has evidence the offline view was wrong).
 */
export function planCanary(input: CanaryPlanInput): CanaryPlan {
  const { minimumEffect, offline } = input;
  if (!(minimumEffect > 0)) throw new Error(`minimumEffect must be > 0 (got ${minimumEffect})`);
  const power = input.power ?? 0.8;
  const alpha = input.alpha ?? 0.05;
  const reasons: string[] = [];
  const usable = offline && Number.isFinite(offline.estimate) ? offline : null;
  let expectedEffect = minimumEffect;
  if (input.expectedEffect !== undefined) {
    expectedEffect = input.expectedEffect;
    reasons.push(`mixture: the policy's expected effect ${fmt(expectedEffect)}`);
  } else if (usable && usable.estimate > minimumEffect) {
    expectedEffect = usable.estimate;
    reasons.push(
      `mixture: the offline estimate ${fmt(usable.estimate)} [${fmt(usable.lower)}, ${fmt(usable.upper)}] over ${usable.items} items`,
    );
  } else {
    reasons.push(
      `mixture: the minimum effect ${fmt(minimumEffect)}${usable ? ` (the offline estimate ${fmt(usable.estimate)} is not above it)` : ' (no offline estimate)'}`,
    );
  }
  const horizonEffect = usable && usable.lower > minimumEffect ? usable.lower : minimumEffect;
  const horizonVariance = msprtHorizonVariance({ effect: horizonEffect, tau: expectedEffect, alpha, power });
  const plannedUsers = usersForVariance(horizonVariance, input.metricSd, input.share);
  reasons.push(
    `horizon: power ${fmt(power)} for an improvement of ${fmt(horizonEffect)}${horizonEffect > minimumEffect ? " (the offline interval's lower bound)" : ''}: until the standard error of the difference is ${fmt(Math.sqrt(horizonVariance))}, about ${plannedUsers.total} users at a standard deviation of ${fmt(input.metricSd)}`,
  );
  return { expectedEffect, horizonEffect, power, horizonVariance, plannedUsers, reasons };
}
