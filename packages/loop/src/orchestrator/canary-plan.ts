/**
 * The canary's plan from what the loop knows before it starts (core's planCanary does the
 * arithmetic): the offline gate's estimate of the candidate's advantage and its interval, and the
 * metric's spread over production's users.
 */
import {
  type CanaryPlan,
  EvaluationGates,
  type EvaluationSummary,
  experimentMetric,
  type OfflineAdvantage,
  pairedAdvantage,
  planCanary,
  signInterval,
  userMeanMetric,
  winRates,
} from '@ratchet/core';
import type { Store } from '@ratchet/store';
import { type ExperimentMetric, sumsOf } from '../experiments/experiments.js';
import type { LoopPolicy } from './policy.js';

const day = 24 * 60 * 60 * 1000;

/**
 * The advantage on the live metric that the evaluation's trusted pairwise comparison implies (the
 * same win rate the gate decides on), in metric units; null when the evaluation had none.
 */
export function offlineAdvantageOf(
  summary: Pick<EvaluationSummary, 'winRate'> | null | undefined,
  gatesInput: unknown,
  metric: ExperimentMetric,
): (OfflineAdvantage & { source: string }) | null {
  // A judge's wins and losses estimate a difference of like rates: that carries over to the
  // users' ratings, not to what they do with an answer (an implicit metric).
  const definition = experimentMetric(metric);
  if (!summary?.winRate || definition.outcome.source !== 'ratings') return null;
  const gates = EvaluationGates.parse(gatesInput ?? {});
  const [trusted] = winRates(
    { judgeWinRate: summary.winRate.judge, rewardWinRate: summary.winRate.reward },
    gates.winRate.source,
  );
  if (!trusted) return null;
  const [source, w] = trusted;
  const a = pairedAdvantage(w.wins, w.losses, w.n, signInterval(w.wins, w.losses, gates.level));
  if (!a) return null;
  // A difference of like rates, carried onto the metric's range (a reward on [-1, 1] moves twice as far).
  const r = definition.range;
  return { estimate: a.estimate * r, lower: a.lower * r, upper: a.upper * r, items: a.items, source };
}

/**
 * Per-user standard deviation of the metric on the route over the last 28 days (the variant with
 * the most users with an outcome), or the largest the metric's range allows when there is none.
 */
export async function productionMetricSd(
  store: Store,
  projectId: string,
  route: string,
  metric: ExperimentMetric,
  now = Date.now(),
): Promise<{ sd: number; users: number }> {
  const totals = await store.experiments.variantTotals(projectId, route, now - 28 * day, now, {
    excludeFlaggedRaters: true,
  });
  const sums = totals.map((t) => sumsOf(metric, t).outcome).sort((a, b) => b.users - a.users)[0];
  if (sums && sums.users >= 2) {
    const m = userMeanMetric(sums);
    if (m.kind === 'mean' && m.variance > 0) return { sd: Math.sqrt(m.variance), users: sums.users };
  }
  return { sd: experimentMetric(metric).range / 2, users: 0 };
}

/** The plan for this round's canary under the policy. */
export async function loopCanaryPlan(
  store: Store,
  projectId: string,
  policy: LoopPolicy,
  offline: OfflineAdvantage | null | undefined,
): Promise<CanaryPlan & { metricSd: { sd: number; users: number } }> {
  const e = policy.experiment;
  const metricSd = await productionMetricSd(store, projectId, policy.route, e.metric);
  const rule = e.decisionRule as { alpha?: unknown };
  const plan = planCanary({
    minimumEffect: e.minimumEffect ?? experimentMetric(e.metric).defaultExpectedEffect,
    ...(e.expectedEffect !== undefined ? { expectedEffect: e.expectedEffect } : {}),
    offline: offline ?? null,
    metricSd: metricSd.sd,
    share: policy.canary.share,
    power: e.power,
    ...(typeof rule.alpha === 'number' ? { alpha: rule.alpha } : {}),
  });
  return { ...plan, metricSd };
}
