import {
  type Feedback,
  type FeedbackFields,
  type FeedbackInput,
  type FeedbackKind,
  feedbackKind,
  feedbackKinds,
  type ParsedFeedback,
} from './feedback-kinds.js';
import type { Interaction, InteractionInput } from './schemas/interaction.js';
import type { ScoreConfig } from './schemas/score-config.js';

export type { FeedbackFields } from './feedback-kinds.js';

/** The stored columns of a parsed event (its kind's descriptor says which). */
export function feedbackFields(f: ParsedFeedback): FeedbackFields {
  return feedbackKind(f.kind).store(f);
}

/** Every interaction an event refers to (parsed or not); all must exist in the event's project. */
export function referencedInteractionIds(f: {
  kind: string;
  interactionId: string;
  other?: string;
  ranking?: string[];
}): string[] {
  const d = (feedbackKinds as readonly string[]).includes(f.kind)
    ? feedbackKind(f.kind as FeedbackKind)
    : null;
  return d?.interactionIds?.(f) ?? [f.interactionId];
}

/**
 * Checks an event against the project's score configs: stars inside their scale, criteria that
 * exist with values on their scale. Throws a RatchetError naming the field (under `prefix`).
 */
export function checkAgainstScales(
  f: ParsedFeedback,
  configs: ReadonlyMap<string, ScoreConfig>,
  prefix = '',
): void {
  const at = (field: string) => (prefix ? `${prefix}.${field}` : field);
  feedbackKind(f.kind).checkScales?.(f, configs, at);
}

/** The input that reproduces a stored event (export, then import elsewhere, gives the same event). */
export function feedbackToInput(f: Feedback): FeedbackInput {
  const base = {
    interactionId: f.interactionId,
    raterId: f.raterId,
    source: f.source,
    idempotencyKey: f.idempotencyKey ?? `export:${f.id}`,
    createdAt: f.createdAt,
    ...(Object.keys(f.metadata).length ? { metadata: f.metadata } : {}),
  };
  return { ...base, kind: f.kind, ...feedbackKind(f.kind).toInput(f) } as FeedbackInput;
}

/** The input that reproduces a stored interaction. */
export function interactionToInput(i: Interaction): InteractionInput {
  const optional = {
    route: i.route,
    variant: i.variant,
    latencyMs: i.latencyMs,
    sessionId: i.sessionId,
    userId: i.userId,
    error: i.error,
    traceId: i.traceId,
    spanId: i.spanId,
  };
  return {
    id: i.id,
    model: i.model,
    messages: i.messages,
    output: i.output,
    parameters: i.parameters,
    usage: i.usage,
    metadata: i.metadata,
    tags: i.tags,
    status: i.status,
    source: i.source,
    createdAt: i.createdAt,
    ...Object.fromEntries(Object.entries(optional).filter(([, v]) => v !== null)),
  };
}
