/**
 * The metrics an experiment can decide on, named once: what each user's outcome is, where it
 * comes from, which direction is better, and the effect an experiment looks for by default. The
 * store computes the per-user sums each outcome names, the loop turns them into the test's input,
 * and the decision, the dashboard and the CLI read the direction from here.
 *
 * Two sources of outcomes:
 * - `ratings`: the users' own explicit feedback (thumbs, default-scale stars, and the calibrated
 *   reward of the answers they rated). Only users who rate have an outcome, and with adversarial
 *   raters a true difference shows at a fraction of its size (an adversary reports the opposite).
 * - `implicit`: what users did with an answer (copied it, regenerated it, edited it, abandoned
 *   the chat), sent as `kind: implicit` feedback by the SDK or the widget. A user's outcome is the
 *   share of the answers served to that user that got the signal, so every user served has one (0
 *   when they did nothing), and nobody reports the opposite of what they did. In the realistic
 *   demo population the people's regenerations told two arms apart about seven times better than
 *   their thumbs at the same traffic (bench/README.md, demo-realistic).
 */
import { RatchetError } from '../errors.js';
import type { ImplicitSignal } from '../schemas/feedback.js';

/** The per-user sums behind a rating metric (the store's VariantFeedbackTotals fields). */
export type RatingOutcome = 'thumbs' | 'stars' | 'reward';

export type ExperimentOutcome =
  | { source: 'ratings'; sums: RatingOutcome }
  | {
      source: 'implicit';
      /** A user's outcome: the share of the answers served to them that got this signal. */
      signal: ImplicitSignal;
    }
  | {
      source: 'implicit';
      /**
       * A user's outcome: the mean over the answers served to them of +1 for an answer with any
       * `dissatisfied` signal, -1 for one with a `satisfied` signal and none of those, 0 for one
       * with neither (netDissatisfaction below says why).
       */
      net: { dissatisfied: readonly ImplicitSignal[]; satisfied: readonly ImplicitSignal[] };
    };

export interface ExperimentMetricDefinition {
  /** What people call it (dashboard, CLI). */
  label: string;
  outcome: ExperimentOutcome;
  /** False for a metric where less is better (a regenerate rate): the test turns it around. */
  higherIsBetter: boolean;
  /**
   * The effect an experiment looks for when its rule names none, in metric units (the mSPRT's
   * mixture width, ExperimentDecisionConfig.expectedEffect). Rating metrics: 5% of their range.
   * Implicit rates: the size of difference a clearly better model makes in them (in the realistic
   * demo, 4 points of regenerate rate for 9 points of true quality; copies are rarer).
   */
  defaultExpectedEffect: number;
  /**
   * Width of the metric's scale: 1 for a rate, 2 for a reward on [-1, 1], 4 for stars. A
   * difference of like rates (what an offline judge's wins minus losses estimates) shows on a
   * rating metric at this multiple; it bounds the per-user spread (half of it) when none is known.
   */
  range: number;
}

const ratingMetrics = {
  thumbs_up_rate: {
    label: 'Thumbs-up rate',
    outcome: { source: 'ratings', sums: 'thumbs' },
    higherIsBetter: true,
    defaultExpectedEffect: 0.05,
    range: 1,
  },
  mean_reward: {
    label: 'Mean calibrated reward',
    outcome: { source: 'ratings', sums: 'reward' },
    higherIsBetter: true,
    defaultExpectedEffect: 0.1,
    range: 2,
  },
  stars: {
    label: 'Stars',
    outcome: { source: 'ratings', sums: 'stars' },
    higherIsBetter: true,
    defaultExpectedEffect: 0.2,
    range: 4,
  },
} as const satisfies Record<string, ExperimentMetricDefinition>;

/** One metric per implicit signal: its name, label, direction and default effect. */
const implicitMetrics = {
  copy_rate: {
    label: 'Copy rate',
    outcome: { source: 'implicit', signal: 'copied' },
    higherIsBetter: true,
    defaultExpectedEffect: 0.02,
    range: 1,
  },
  regenerate_rate: {
    label: 'Regenerate rate',
    outcome: { source: 'implicit', signal: 'regenerated' },
    higherIsBetter: false,
    defaultExpectedEffect: 0.03,
    range: 1,
  },
  edit_rate: {
    label: 'Edit rate',
    outcome: { source: 'implicit', signal: 'edited' },
    higherIsBetter: false,
    defaultExpectedEffect: 0.02,
    range: 1,
  },
  abandon_rate: {
    label: 'Abandon rate',
    outcome: { source: 'implicit', signal: 'abandoned' },
    higherIsBetter: false,
    defaultExpectedEffect: 0.02,
    range: 1,
  },
} as const satisfies Record<string, ExperimentMetricDefinition>;

/**
 * Every implicit signal in one outcome, so that more of each user's answers carry one: +1 for an
 * answer its user regenerated, edited or abandoned (they did not take it as it was), -1 for one
 * they copied and did none of those to (they took it), 0 for one they did nothing with. An answer
 * copied and then regenerated or edited counts as dissatisfied: the later action says the copy
 * was not the end of it. Each of a user's answers can move it, in the direction of what the user
 * made of the answer, where a single signal's rate reads only the answers that got that signal:
 * in the realistic demo (answers regenerated about 15% of the time when disliked and copied 10%
 * of the time when liked) a better model lowers the regenerate rate and raises the copy rate, and
 * the net outcome sees both (bench/experiments: power at equal users against regenerate_rate).
 */
const combinedMetrics = {
  net_dissatisfaction: {
    label: 'Net dissatisfaction (regenerated, edited or abandoned, minus copied)',
    outcome: {
      source: 'implicit',
      net: { dissatisfied: ['regenerated', 'edited', 'abandoned'], satisfied: ['copied'] },
    },
    higherIsBetter: false,
    // The realistic demo's first better candidate: 4 points fewer regenerations and 1-2 more copies.
    defaultExpectedEffect: 0.05,
    range: 2,
  },
} as const satisfies Record<string, ExperimentMetricDefinition>;

export const experimentMetricDefinitions = { ...ratingMetrics, ...implicitMetrics, ...combinedMetrics };
export type ExperimentMetricName = keyof typeof experimentMetricDefinitions;
export const experimentMetricNames = Object.keys(experimentMetricDefinitions) as [
  ExperimentMetricName,
  ...ExperimentMetricName[],
];

/** The implicit metric of each signal (every signal has exactly one; metrics.test.ts checks). */
export const implicitSignalMetric = Object.fromEntries(
  Object.entries(implicitMetrics).map(([name, d]) => [d.outcome.signal, name]),
) as Record<ImplicitSignal, keyof typeof implicitMetrics>;

/** The metrics whose outcome nets several implicit signals, with the signals on each side. */
export type NetImplicitMetricName = keyof typeof combinedMetrics;
export const netImplicitMetrics = Object.entries(combinedMetrics).map(([name, d]) => ({
  name: name as NetImplicitMetricName,
  ...d.outcome.net,
}));

export function isExperimentMetric(name: string): name is ExperimentMetricName {
  return Object.hasOwn(experimentMetricDefinitions, name);
}

export function experimentMetric(name: ExperimentMetricName): ExperimentMetricDefinition {
  return experimentMetricDefinitions[name];
}

/**
 * The direction of a metric in a decision rule: a metric defined here has its own, and a rule
 * that states the other one is rejected (naming `path`), because "higher is better" on a
 * regenerate rate would ship the model people regenerate more. A metric not defined here (a
 * caller's own, given straight to decideExperiment) takes the rule's, higher by default.
 */
export function metricHigherIsBetter(metric: string, stated: boolean | undefined, path: string): boolean {
  if (!isExperimentMetric(metric)) return stated ?? true;
  const own = experimentMetricDefinitions[metric].higherIsBetter;
  if (stated !== undefined && stated !== own)
    throw new RatchetError(
      'invalid_request',
      `${path}: ${metric} is ${own ? 'higher' : 'lower'} is better by definition; leave it out or set ${own}`,
      path,
    );
  return own;
}

/** "higher is better" or "lower is better", for people. */
export function directionText(higherIsBetter: boolean): string {
  return higherIsBetter ? 'higher is better' : 'lower is better';
}
