/**
 * Per-item evaluation results and what is computed from them: model summaries side by side,
 * win rates, metrics by segment with the largest disparity, and the worst regressions.
 */

import { corpusBleu, sentenceBleu } from '../metrics/bleu.js';
import { corpusChrf, sentenceChrf } from '../metrics/chrf.js';
import type { BinaryClassificationMetrics } from '../metrics/classification.js';
import { rouge } from '../metrics/rouge.js';
import { exactMatch, tokenF1 } from '../metrics/squad.js';
import type { ChatMessage } from '../schemas/interaction.js';
import { type PairVerdict, type PositionVerdict, type WinRate, winRate } from './pairwise.js';

export const evaluationSuites = ['heldout', 'redteam', 'adversarial'] as const;
export type EvaluationSuite = (typeof evaluationSuites)[number];

export interface ReferenceScores {
  bleu: number;
  chrf: number;
  rouge1: number;
  rouge2: number;
  rougeL: number;
  exactMatch: number;
  f1: number;
}

export interface ModelItemResult {
  output: string;
  /** Set when generation failed; the item then counts as a loss for this model. */
  error?: string | null;
  reward?: number | null;
  /** Safety verdict (red-team and adversarial items). */
  unsafe?: boolean | null;
  safetyReasons?: string[];
  reference?: ReferenceScores | null;
}

export interface EvaluationItemResult {
  index: number;
  suite: EvaluationSuite;
  /** The held-out interaction id or the probe id. */
  itemId: string;
  category: string | null;
  /** Segment labels such as `tag:billing`, `plan:pro` or `suite:redteam`. */
  segments: string[];
  prompt: ChatMessage[];
  reference: string | null;
  referenceKind: 'correction' | 'top_rated' | null;
  candidate: ModelItemResult;
  baseline: ModelItemResult;
  /** The LLM judge's verdict over both orders, and each order's answer. */
  judge: PairVerdict | null;
  judgeOrders: [PositionVerdict | null, PositionVerdict | null] | null;
  rewardVerdict: PairVerdict | null;
}

/** Sentence-level reference metrics of one answer (0..100 for BLEU and chrF, 0..1 for the rest). */
export function referenceScores(output: string, reference: string): ReferenceScores {
  const r = rouge(output, reference, { types: ['rouge1', 'rouge2', 'rougeL'] });
  return {
    bleu: sentenceBleu(output, [reference]).score,
    chrf: sentenceChrf(output, [reference]).score,
    rouge1: r.rouge1!.fmeasure,
    rouge2: r.rouge2!.fmeasure,
    rougeL: r.rougeL!.fmeasure,
    exactMatch: exactMatch(output, reference),
    f1: tokenF1(output, reference),
  };
}

export interface ModelSummary {
  /** Mean reward-model score on held-out items. */
  rewardMean: number | null;
  /** Corpus BLEU and chrF; mean ROUGE F, exact match and token F1; over items with a reference. */
  reference: (ReferenceScores & { n: number }) | null;
  safety: {
    n: number;
    unsafe: number;
    safeRate: number;
    byCategory: Record<string, { n: number; unsafe: number }>;
  };
  perplexity: number | null;
  errors: number;
}

export interface SegmentSummary {
  segment: string;
  n: number;
  judgeWinRate: WinRate | null;
  rewardWinRate: WinRate | null;
  /** Per metric: the candidate's and the baseline's value in this segment. */
  metrics: Record<string, { candidate: number | null; baseline: number | null }>;
}

export interface Disparity {
  metric: string;
  /** The model whose values are compared across segments. */
  model: 'candidate' | 'baseline' | 'pair';
  highest: { segment: string; value: number };
  lowest: { segment: string; value: number };
  gap: number;
}

export interface EvaluationExtras {
  perplexity?: {
    candidate: number | null;
    baseline: number | null;
    note?: string;
    /**
     * Per held-out answer scored by both models: each model's mean negative log-likelihood per
     * token (the log of that answer's perplexity), for a paired interval of the ratio.
     */
    perAnswer?: { candidate: number; baseline: number }[];
  };
  judgeAgreement?: { kappa: number; n: number; agreement: number } | null;
  rewardModel?: (BinaryClassificationMetrics & { n: number; threshold: number }) | null;
  notes?: string[];
}

export interface EvaluationSummary {
  items: number;
  bySuite: Record<string, number>;
  winRate: { judge: WinRate | null; reward: WinRate | null };
  candidate: ModelSummary;
  baseline: ModelSummary;
  segments: SegmentSummary[];
  /** Per metric, the segments furthest apart (segments with at least `minSegmentItems`). */
  disparities: Disparity[];
  judgeAgreement: { kappa: number; n: number; agreement: number } | null;
  rewardModel: (BinaryClassificationMetrics & { n: number; threshold: number }) | null;
  /**
   * Paired per-answer log perplexity ratios (candidate minus production) over the answers both
   * models scored: their count, mean and standard deviation. exp(mean) is the typical ratio.
   */
  perplexityLogRatio: { n: number; mean: number; sd: number } | null;
  notes: string[];
}

const mean = (xs: readonly number[]): number | null =>
  xs.length === 0 ? null : xs.reduce((s, x) => s + x, 0) / xs.length;

function present<T>(x: T | null | undefined): x is T {
  return x !== null && x !== undefined && !(typeof x === 'number' && Number.isNaN(x));
}

function summarizeModel(
  items: readonly EvaluationItemResult[],
  side: 'candidate' | 'baseline',
  perplexity: number | null,
): ModelSummary {
  const heldout = items.filter((i) => i.suite === 'heldout');
  const rewards = heldout.map((i) => i[side].reward).filter(present);
  const withRef = heldout.filter((i) => i.reference !== null && !i[side].error);
  const refs = withRef.map((i) => i[side].reference).filter(present);
  const probes = items.filter((i) => present(i[side].unsafe));
  const byCategory: Record<string, { n: number; unsafe: number }> = {};
  for (const p of probes) {
    const key = p.category ?? 'other';
    const c = byCategory[key] ?? { n: 0, unsafe: 0 };
    byCategory[key] = c;
    c.n++;
    if (p[side].unsafe) c.unsafe++;
  }
  const unsafe = probes.filter((p) => p[side].unsafe).length;
  return {
    rewardMean: mean(rewards),
    reference:
      withRef.length === 0
        ? null
        : {
            n: withRef.length,
            bleu: corpusBleu(
              withRef.map((i) => i[side].output),
              withRef.map((i) => [i.reference!]),
            ).score,
            chrf: corpusChrf(
              withRef.map((i) => i[side].output),
              withRef.map((i) => [i.reference!]),
            ).score,
            rouge1: mean(refs.map((r) => r.rouge1))!,
            rouge2: mean(refs.map((r) => r.rouge2))!,
            rougeL: mean(refs.map((r) => r.rougeL))!,
            exactMatch: mean(refs.map((r) => r.exactMatch))!,
            f1: mean(refs.map((r) => r.f1))!,
          },
    safety: {
      n: probes.length,
      unsafe,
      safeRate: probes.length ? 1 - unsafe / probes.length : 1,
      byCategory,
    },
    perplexity,
    errors: items.filter((i) => i[side].error).length,
  };
}

/** Numbers compared per segment; each is a mean over the segment's items that have it. */
const segmentMetrics: Record<string, (r: ModelItemResult) => number | null | undefined> = {
  reward: (r) => r.reward,
  safeRate: (r) => (present(r.unsafe) ? (r.unsafe ? 0 : 1) : null),
  referenceF1: (r) => r.reference?.f1,
  chrf: (r) => r.reference?.chrf,
};

function summarizeSegments(items: readonly EvaluationItemResult[]): SegmentSummary[] {
  const bySegment = new Map<string, EvaluationItemResult[]>();
  for (const item of items) {
    for (const s of item.segments) {
      const list = bySegment.get(s) ?? [];
      list.push(item);
      bySegment.set(s, list);
    }
  }
  return [...bySegment.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([segment, list]) => {
      const judged = list.map((i) => i.judge).filter(present);
      const rewarded = list.map((i) => i.rewardVerdict).filter(present);
      const metrics: SegmentSummary['metrics'] = {};
      for (const [name, get] of Object.entries(segmentMetrics)) {
        const c = mean(list.map((i) => get(i.candidate)).filter(present));
        const b = mean(list.map((i) => get(i.baseline)).filter(present));
        if (c !== null || b !== null) metrics[name] = { candidate: c, baseline: b };
      }
      return {
        segment,
        n: list.length,
        judgeWinRate: judged.length ? winRate(judged) : null,
        rewardWinRate: rewarded.length ? winRate(rewarded) : null,
        metrics,
      };
    });
}

function disparity(
  metric: string,
  model: Disparity['model'],
  values: { segment: string; value: number }[],
): Disparity | null {
  if (values.length < 2) return null;
  const sorted = [...values].sort((a, b) => b.value - a.value);
  const highest = sorted[0]!;
  const lowest = sorted.at(-1)!;
  return { metric, model, highest, lowest, gap: highest.value - lowest.value };
}

/** For every metric, the two segments furthest apart; largest gap first within a metric kind. */
export function segmentDisparities(segments: readonly SegmentSummary[], minItems: number): Disparity[] {
  // `suite:` segments are aggregates of the others; comparing them with their parts says nothing.
  const eligible = segments.filter((s) => s.n >= minItems && !s.segment.startsWith('suite:'));
  const out: Disparity[] = [];
  const rate = (name: string, get: (s: SegmentSummary) => WinRate | null) => {
    const d = disparity(
      name,
      'pair',
      eligible.flatMap((s) => {
        const w = get(s);
        return w && Number.isFinite(w.rate) ? [{ segment: s.segment, value: w.rate }] : [];
      }),
    );
    if (d) out.push(d);
  };
  rate('judgeWinRate', (s) => s.judgeWinRate);
  rate('rewardWinRate', (s) => s.rewardWinRate);
  for (const metric of Object.keys(segmentMetrics)) {
    for (const model of ['candidate', 'baseline'] as const) {
      const d = disparity(
        metric,
        model,
        eligible.flatMap((s) => {
          const v = s.metrics[metric]?.[model];
          return present(v) ? [{ segment: s.segment, value: v }] : [];
        }),
      );
      if (d) out.push(d);
    }
  }
  return out;
}

export function summarizeEvaluation(
  items: readonly EvaluationItemResult[],
  extras: EvaluationExtras = {},
  options: { minSegmentItems?: number; level?: number } = {},
): EvaluationSummary {
  const judged = items.map((i) => i.judge).filter(present);
  const rewarded = items.map((i) => i.rewardVerdict).filter(present);
  const bySuite: Record<string, number> = {};
  for (const i of items) bySuite[i.suite] = (bySuite[i.suite] ?? 0) + 1;
  const segments = summarizeSegments(items);
  return {
    items: items.length,
    bySuite,
    winRate: {
      judge: judged.length ? winRate(judged, options.level) : null,
      reward: rewarded.length ? winRate(rewarded, options.level) : null,
    },
    candidate: summarizeModel(items, 'candidate', extras.perplexity?.candidate ?? null),
    baseline: summarizeModel(items, 'baseline', extras.perplexity?.baseline ?? null),
    segments,
    disparities: segmentDisparities(segments, options.minSegmentItems ?? 5),
    judgeAgreement: extras.judgeAgreement ?? null,
    rewardModel: extras.rewardModel ?? null,
    perplexityLogRatio: logRatioStats(extras.perplexity?.perAnswer),
    notes: [...(extras.perplexity?.note ? [extras.perplexity.note] : []), ...(extras.notes ?? [])],
  };
}

function logRatioStats(
  perAnswer: readonly { candidate: number; baseline: number }[] | undefined,
): EvaluationSummary['perplexityLogRatio'] {
  const d = (perAnswer ?? []).map((a) => a.candidate - a.baseline).filter((x) => Number.isFinite(x));
  if (d.length < 2) return null;
  const m = d.reduce((a, x) => a + x, 0) / d.length;
  const sd = Math.sqrt(d.reduce((a, x) => a + (x - m) ** 2, 0) / (d.length - 1));
  return { n: d.length, mean: m, sd };
}

export interface ComparisonRow {
  metric: string;
  candidate: number | null;
  baseline: number | null;
  /** candidate - baseline. */
  delta: number | null;
  higherIsBetter: boolean;
}

/** The side-by-side table: one row per metric both models have. */
export function comparisonRows(s: EvaluationSummary): ComparisonRow[] {
  const rows: ComparisonRow[] = [];
  const row = (metric: string, c: number | null | undefined, b: number | null | undefined, higher = true) => {
    if (!present(c) && !present(b)) return;
    rows.push({
      metric,
      candidate: c ?? null,
      baseline: b ?? null,
      delta: present(c) && present(b) ? c - b : null,
      higherIsBetter: higher,
    });
  };
  if (s.winRate.judge) row('judge win rate', s.winRate.judge.rate, 1 - s.winRate.judge.rate);
  if (s.winRate.reward) row('reward-model win rate', s.winRate.reward.rate, 1 - s.winRate.reward.rate);
  row('mean reward', s.candidate.rewardMean, s.baseline.rewardMean);
  for (const k of ['bleu', 'chrf', 'rouge1', 'rouge2', 'rougeL', 'exactMatch', 'f1'] as const) {
    row(k, s.candidate.reference?.[k], s.baseline.reference?.[k]);
  }
  row('perplexity', s.candidate.perplexity, s.baseline.perplexity, false);
  if (s.candidate.safety.n > 0) row('safe rate', s.candidate.safety.safeRate, s.baseline.safety.safeRate);
  row('generation errors', s.candidate.errors, s.baseline.errors, false);
  return rows;
}

export interface Regression {
  index: number;
  itemId: string;
  suite: EvaluationSuite;
  segments: string[];
  reason: string;
  /** Larger is worse; safety first, then judge losses, then reward drops. */
  severity: number;
}

/** Items where the candidate did worse than production, worst first. */
export function worstRegressions(items: readonly EvaluationItemResult[], limit = 10): Regression[] {
  const out: Regression[] = [];
  for (const i of items) {
    const reasons: string[] = [];
    let severity = 0;
    if (i.candidate.unsafe && !i.baseline.unsafe) {
      severity += 100;
      reasons.push(`newly unsafe: ${(i.candidate.safetyReasons ?? []).join('; ') || 'judge'}`);
    }
    if (i.candidate.error && !i.baseline.error) {
      severity += 50;
      reasons.push(`generation failed: ${i.candidate.error}`);
    }
    if (i.judge === 'baseline') {
      severity += 10;
      reasons.push('the judge preferred production in both orders');
    }
    const c = i.candidate.reward;
    const b = i.baseline.reward;
    if (present(c) && present(b) && c < b) {
      severity += Math.min(9, b - c);
      reasons.push(`reward ${c.toFixed(3)} < ${b.toFixed(3)}`);
    }
    if (reasons.length)
      out.push({
        index: i.index,
        itemId: i.itemId,
        suite: i.suite,
        segments: i.segments,
        reason: reasons.join('; '),
        severity,
      });
  }
  return out.sort((a, b) => b.severity - a.severity).slice(0, limit);
}
