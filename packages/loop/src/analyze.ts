import {
  type AgreementSummary,
  type AnalysisView,
  agreementByCriterion,
  findThemes,
  pearsonFromSums,
  type Theme,
} from '@ratchet/core';
import type { BreakdownDimension, CriterionBreakdownRow, PromptSummary, Store } from '@ratchet/store';

/** The whole report; the dashboard reads core's AnalysisView of it (checked by `extends`). */
export interface AnalysisReport extends AnalysisView {
  /** Themes in comments and corrections on answers that went badly. */
  themes: Theme[];
  negativeTexts: number;
  worstPrompts: PromptSummary[];
  breakdown: Record<BreakdownDimension, CriterionBreakdownRow[]>;
  /** How criteria move together: a "helpful" rating is not an "accurate" one. */
  correlations: { a: string; b: string; n: number; r: number | null }[];
  /** Krippendorff's alpha per criterion (thumbs nominal, stars and numeric criteria interval) and pooled. */
  agreement: { criteria: Record<string, AgreementSummary>; overall: AgreementSummary | null };
}

export async function analyzeProject(
  store: Store,
  projectId: string,
  options: { themes?: number; worstPrompts?: number; minAnswersPerPrompt?: number } = {},
): Promise<AnalysisReport> {
  const texts = await store.analysis.negativeFeedbackTexts(projectId);
  const themes = findThemes(
    texts.map((t) => ({ id: t.feedbackId, text: t.text })),
    options.themes === undefined ? {} : { k: options.themes },
  );
  const dims: BreakdownDimension[] = ['model', 'route', 'variant', 'tag'];
  const breakdowns = await Promise.all(dims.map((d) => store.analysis.criteriaBreakdown(projectId, d)));
  const pairs = await store.analysis.criteriaPairs(projectId);
  const scoreConfigs = await store.scoreConfigs.byName(projectId);
  const agreement = agreementByCriterion(await store.analysis.ratingsForAgreement(projectId), {
    scoreConfigs,
    levels: { thumbs: 'nominal' },
  });
  return {
    themes,
    negativeTexts: texts.length,
    worstPrompts: await store.analysis.worstPrompts(projectId, {
      limit: options.worstPrompts ?? 10,
      minCount: options.minAnswersPerPrompt ?? 2,
    }),
    breakdown: Object.fromEntries(dims.map((d, i) => [d, breakdowns[i]!])) as AnalysisReport['breakdown'],
    correlations: pairs.map((p) => ({ a: p.a, b: p.b, n: p.n, r: pearsonFromSums(p) })),
    agreement,
  };
}
