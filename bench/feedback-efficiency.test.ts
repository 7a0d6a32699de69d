// The feedback-efficiency bench's summary of its rate arms, on planted arm results (no model runs).
import { describe, expect, it } from 'vitest';
import { type AiLabelStats, type ArmResult, auc, rateMetrics } from './feedback-efficiency.js';

const stats = (over: Partial<AiLabelStats>): AiLabelStats => ({
  labeller: 'reward-model',
  folds: 1,
  heldOut: 40,
  fit: 20,
  check: 20,
  minCheck: 14,
  precision: null,
  lower: null,
  checkLabeled: 0,
  pairs: 30,
  heldOutAuc: 0.6,
  oracleAuc: 0.7,
  share: 0,
  labeled: 0,
  oracleAgreement: null,
  reasons: ['up: too few', 'down: too few'],
  ...over,
});

const arm = (a: string, seed: number, quality: number, ai?: AiLabelStats): ArmResult => ({
  arm: a,
  rate: 0.15,
  seed,
  budget: 180,
  ratings: 180,
  ratedAnswers: 90,
  rows: 38,
  flagged: 1,
  trainSeconds: 1,
  quality,
  ...(ai ? { ai } : {}),
});

describe('the rate arms over seeds', () => {
  it('pools the check precision and the oracle agreement over the seeds where it labelled, and averages the rest', () => {
    const metrics: Record<string, number> = {};
    const notes = rateMetrics(
      metrics,
      [
        arm('sft', 0, 0.5),
        arm(
          'sft-ai',
          0,
          0.56,
          stats({
            precision: 0.9,
            lower: 0.7,
            checkLabeled: 10,
            share: 0.2,
            labeled: 100,
            oracleAgreement: 0.8,
          }),
        ),
        arm('sft', 1, 0.6),
        arm('sft-ai', 1, 0.6),
        arm('sft', 2, 0.4),
        arm(
          'sft-ai',
          2,
          0.44,
          stats({
            precision: 0.8,
            lower: 0.6,
            checkLabeled: 30,
            share: 0.1,
            labeled: 50,
            oracleAgreement: 0.5,
            heldOutAuc: 0.8,
          }),
        ),
      ].map((r, k) => (k === 3 ? { ...r, ai: stats({}) } : r)),
      0.4,
    );
    // (9 + 24) of 40 check answers; (80 + 25) of 150 labels.
    expect(metrics.ai_label_precision_15pct_ratio).toBe(0.825);
    expect(metrics.ai_label_oracle_agreement_15pct_ratio).toBe(0.7);
    expect(metrics.ai_label_share_15pct_ratio).toBe(0.1);
    expect(metrics.ai_labels_15pct_count).toBe(150);
    expect(metrics.ai_label_certified_15pct_count).toBe(2);
    expect(metrics.rate_seeds_15pct_count).toBe(3);
    expect(metrics.quality_sft_rated15pct_rate).toBe(0.5);
    expect(metrics.ai_label_quality_gain_15pct_rate).toBe(0.033);
    expect(metrics.rm_heldout_auc_15pct_ratio).toBe(0.667);
    expect(metrics.ai_label_precision).toBe(0.825);
    expect(metrics.ai_label_share).toBe(0.1);
    expect(notes.join(' ')).toMatch(/seed 1 \(.*labelled none \(up: too few; down: too few\)/);
  });

  it('records the share and no precision where nothing was labelled, with the reasons in the notes', () => {
    const metrics: Record<string, number> = {};
    const notes = rateMetrics(metrics, [arm('sft', 0, 0.5), arm('sft-ai', 0, 0.5, stats({}))], 0.4);
    expect(metrics.ai_label_share).toBe(0);
    expect(metrics.ai_label_precision).toBeUndefined();
    expect(metrics.ai_label_precision_15pct_ratio).toBeUndefined();
    expect(metrics.ai_label_certified_15pct_count).toBe(0);
    expect(metrics.ai_label_quality_gain_15pct_rate).toBe(0);
    expect(notes[0]).toMatch(/labelled none \(up: too few; down: too few\)/);
  });

  it('computes the AUC as the chance a positive outscores a negative', () => {
    const p = (score: number, positive: boolean) => ({ score, positive });
    expect(auc([p(1, true), p(0, false)])).toBe(1);
    expect(auc([p(0, true), p(1, false)])).toBe(0);
    expect(auc([p(1, true), p(1, false)])).toBe(0.5);
    expect(auc([p(2, true), p(0, true), p(1, false)])).toBe(0.5);
    expect(auc([p(1, true)])).toBeNull();
  });
});
