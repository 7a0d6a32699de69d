import { z } from 'zod';
import type { ChatMessage } from '../schemas/interaction.js';
import { lengthOutliers, lengthViolation, repetitionRatio } from './filters.js';
import { redactMessage } from './messages.js';
import { findDuplicates } from './near-duplicates.js';
import { PiiConfig, redactPii } from './pii.js';
import { lexiconSafetyClassifier, type SafetyClassifier } from './safety.js';

/** A row to curate: the text of its prompt and of its answer, and an id for the record. */
export interface CurationRow {
  id: string;
  prompt: string;
  completion: string;
  /**
   * A rated-bad answer, kept as a negative example: the content filters (shape, repetition,
   * outliers, safety) guard what a model learns to imitate, and an unsafe or garbled answer that
   * people rated down is exactly what KTO, DPO and reward models must learn to avoid. Duplicates
   * and PII apply to every row.
   */
  negative?: boolean;
  /**
   * The messages `prompt` and `completion` were read from: PII is redacted in every string of
   * them too, keeping their structure, so what a dataset writes is what was screened.
   */
  messages?: ChatMessage[];
  /**
   * The row this one corrects (a rater's correction of an answer): never dropped as a duplicate
   * of it, since a near-identical fix (a wrong number, a typo) is the point, not a repeat.
   */
  contrastOf?: string;
}

export const CurationConfig = z.strictObject({
  dedup: z
    .strictObject({ enabled: z.boolean().default(true), threshold: z.number().min(0.1).max(1).default(0.85) })
    .prefault({}),
  pii: z
    .strictObject({
      enabled: z.boolean().default(true),
      config: PiiConfig.prefault({}),
    })
    .prefault({}),
  safety: z.strictObject({ enabled: z.boolean().default(true) }).prefault({}),
  length: z
    .strictObject({
      minChars: z.number().int().nonnegative().default(1),
      maxChars: z.number().int().positive().default(20_000),
      outliers: z.boolean().default(true),
      maxRepetition: z.number().min(0).max(1).default(0.5),
    })
    .prefault({}),
});
export type CurationConfig = z.input<typeof CurationConfig>;

export type CurationFilter = 'duplicate' | 'pii' | 'safety' | 'length' | 'outlier' | 'repetition';

export interface CurationDecision {
  id: string;
  filter: CurationFilter;
  action: 'dropped' | 'changed';
  reason: string;
}

export interface CurationResult<R extends CurationRow> {
  kept: R[];
  /** Every dropped or changed row, which filter did it and why. */
  decisions: CurationDecision[];
}

/**
 * Runs the filters in a fixed order (cheap shape checks, then safety, then PII redaction, then
 * duplicates over what is left) and records every change and drop with its reason.
 */
export async function curate<R extends CurationRow>(
  rows: readonly R[],
  config: CurationConfig = {},
  classifier: SafetyClassifier = lexiconSafetyClassifier(),
): Promise<CurationResult<R>> {
  const c = CurationConfig.parse(config);
  const decisions: CurationDecision[] = [];
  const drop = (row: R, filter: CurationFilter, reason: string) =>
    decisions.push({ id: row.id, filter, action: 'dropped', reason });

  let current = rows.filter((row) => {
    if (row.negative) return true;
    const why = lengthViolation(row.completion, c.length);
    if (why) drop(row, 'length', `completion ${why}`);
    return !why;
  });
  current = current.filter((row) => {
    if (row.negative) return true;
    const ratio = repetitionRatio(row.completion);
    const bad = ratio > c.length.maxRepetition;
    if (bad) drop(row, 'repetition', `${Math.round(ratio * 100)}% of the completion repeats itself`);
    return !bad;
  });
  if (c.length.outliers) {
    const outliers = lengthOutliers(current.map((r) => r.completion));
    current = current.filter((row, i) => {
      if (row.negative) return true;
      const why = outliers.get(i);
      if (why) drop(row, 'outlier', `completion ${why}`);
      return !why;
    });
  }
  if (c.safety.enabled) {
    const verdicts = await classifier.classify(current.map((r) => `${r.prompt}\n${r.completion}`));
    current = current.filter((row, i) => {
      const v = verdicts[i]!;
      if (row.negative) return true;
      if (v.unsafe)
        drop(
          row,
          'safety',
          `${classifier.name}: ${v.matches.map((m) => `${m.category} ("${m.match}")`).join(', ')}`,
        );
      return !v.unsafe;
    });
  }
  if (c.pii.enabled) {
    const pii = c.pii.config;
    current = current.map((row) => redactRow(row, pii, decisions));
  }
  if (c.dedup.enabled) {
    const { representative, reason } = findDuplicates(
      current.map((r) => `${r.prompt}\n${r.completion}`),
      { threshold: c.dedup.threshold },
    );
    current = current.filter((row, i) => {
      const r = reason[i];
      if (representative[i] !== i && r && current[r.of]!.id !== row.contrastOf) {
        drop(
          row,
          'duplicate',
          `${r.kind} duplicate of ${current[r.of]!.id} (similarity ${r.similarity.toFixed(2)})`,
        );
        return false;
      }
      return true;
    });
  }
  return { kept: current, decisions };
}

/**
 * Redacts PII in a row: in its messages when it has them (what a dataset writes), else in its
 * texts. The texts were read from the messages, so they are redacted only when the messages had
 * something (they stay what the duplicate filter compares, never what is written).
 */
function redactRow<R extends CurationRow>(
  row: R,
  pii: z.output<typeof PiiConfig>,
  decisions: CurationDecision[],
): R {
  const messages = row.messages?.map((m) => redactMessage(m, pii));
  const fromMessages = messages?.flatMap((m) => m.findings);
  if (fromMessages && fromMessages.length === 0) return row;
  const p = redactPii(row.prompt, pii);
  const a = redactPii(row.completion, pii);
  const found = fromMessages ?? [...p.findings, ...a.findings];
  if (found.length === 0) return row;
  const kinds = [...new Set(found.map((f) => f.kind))].join(', ');
  decisions.push({
    id: row.id,
    filter: 'pii',
    action: 'changed',
    reason: `redacted ${found.length} span(s): ${kinds}`,
  });
  return {
    ...row,
    prompt: p.text,
    completion: a.text,
    ...(messages ? { messages: messages.map((m) => m.message) } : {}),
  };
}
