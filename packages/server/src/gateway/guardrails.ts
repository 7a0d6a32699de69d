import {
  type ChatMessage,
  lexiconSafetyClassifier,
  linearRegExp,
  messageText,
  PiiConfig,
  redactMessage,
  type SafetyClassifier,
  safetyCategories,
} from '@ratchet/core';
import { z } from 'zod';

/**
 * A content check on a call's input (its messages) or output (its answer): the curation's unsafe
 * content lexicon (`core/curation/safety.ts`), limited to `categories`, and the route's own
 * `patterns` (run on the linear-time engine, as curation's custom PII patterns are). `flag`
 * records what matched on the interaction; `block` also refuses the call (input: a 400 before
 * the upstream is called; output: the answer is withheld, `finish_reason: content_filter`).
 */
const ContentCheck = z.strictObject({
  action: z.enum(['flag', 'block']).default('flag'),
  categories: z.array(z.enum(safetyCategories)).default([...safetyCategories]),
  patterns: z
    .record(
      z.string().regex(/^[a-z][a-z0-9_]*$/, 'a pattern name is lower case letters, digits and _'),
      z.string().superRefine((source, ctx) => {
        const compiled = linearRegExp(source);
        if (!compiled.ok) ctx.addIssue({ code: 'custom', message: `pattern ${compiled.reason}` });
      }),
    )
    .default({}),
});

/**
 * A route's guardrails: `pii` masks personal data (curation's detectors, linear time) in the
 * interaction before it is stored (the client's answer is untouched); `input` and `output` are
 * content checks. What each did is recorded in the interaction's `metadata.guardrails`.
 */
export const Guardrails = z.strictObject({
  pii: PiiConfig.optional(),
  input: ContentCheck.optional(),
  output: ContentCheck.optional(),
});
export type GuardrailsConfig = z.output<typeof Guardrails>;

/** What a content check found: the categories and pattern names that matched, never the text. */
export interface CheckResult {
  action: 'flagged' | 'blocked';
  matched: string[];
}

/** A content check, compiled once per gateway file. */
export class ContentGuard {
  private readonly patterns: { name: string; regexp: RegExp }[];
  private readonly categories: Set<string>;

  constructor(
    private readonly check: z.output<typeof ContentCheck>,
    private readonly classifier: SafetyClassifier,
  ) {
    this.categories = new Set(check.categories);
    this.patterns = Object.entries(check.patterns).map(([name, source]) => {
      const compiled = linearRegExp(source);
      // The schema refused any pattern the linear engine cannot run.
      if (!compiled.ok) throw new Error(`guardrail pattern ${name}: ${compiled.reason}`);
      return { name, regexp: compiled.regexp };
    });
  }

  /** The check's verdict on some messages, or undefined when nothing matched. */
  async run(messages: readonly ChatMessage[]): Promise<CheckResult | undefined> {
    const texts = messages.map(messageText);
    const matched = new Set<string>();
    if (this.categories.size > 0)
      for (const verdict of await this.classifier.classify(texts))
        for (const m of verdict.matches) if (this.categories.has(m.category)) matched.add(m.category);
    for (const { name, regexp } of this.patterns)
      for (const text of texts) {
        regexp.lastIndex = 0;
        if (regexp.test(text)) matched.add(name);
      }
    if (matched.size === 0) return undefined;
    return { action: this.check.action === 'block' ? 'blocked' : 'flagged', matched: [...matched].sort() };
  }
}

/** What masking did to one interaction: how many spans of each kind it replaced. */
export type PiiRecord = Record<string, number>;

/** A route's guardrails, compiled once per gateway file. */
export class RouteGuardrails {
  readonly input: ContentGuard | undefined;
  readonly output: ContentGuard | undefined;
  private readonly pii: z.output<typeof PiiConfig> | undefined;

  constructor(config: GuardrailsConfig, classifier: SafetyClassifier = lexiconSafetyClassifier()) {
    this.input = config.input && new ContentGuard(config.input, classifier);
    this.output = config.output && new ContentGuard(config.output, classifier);
    this.pii = config.pii && PiiConfig.parse(config.pii);
  }

  /** The messages with PII masked and the count per kind, or the same messages when masking is off. */
  mask<T extends ChatMessage>(messages: readonly T[], counts: PiiRecord): T[] {
    if (!this.pii) return [...messages];
    return messages.map((m) => {
      const { message, findings } = redactMessage(m, this.pii);
      for (const f of findings) counts[f.kind] = (counts[f.kind] ?? 0) + 1;
      return message as T;
    });
  }

  get masks(): boolean {
    return this.pii !== undefined;
  }
}
