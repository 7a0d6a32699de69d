import { RatchetError } from './errors.js';
import type { Feedback, FeedbackInput, ImplicitSignal, ParsedFeedback } from './schemas/feedback.js';
import type { ChatMessage, Interaction, InteractionInput } from './schemas/interaction.js';
import type { ScoreConfig } from './schemas/score-config.js';

/** The columns a feedback event is stored in, whatever its kind. */
export interface FeedbackFields {
  value: number | null;
  label: string | null;
  text: string | null;
  data: Record<string, unknown> | null;
}

export function feedbackFields(f: ParsedFeedback): FeedbackFields {
  switch (f.kind) {
    case 'thumbs':
      return { value: f.value === 'up' ? 1 : -1, label: f.value, text: null, data: null };
    case 'stars':
      return { value: f.value, label: f.scale, text: null, data: null };
    case 'criteria':
      return { value: null, label: null, text: null, data: { scores: f.scores } };
    case 'comment':
      return { value: null, label: null, text: f.text, data: null };
    case 'correction':
      return { value: null, label: null, text: f.text, data: f.message ? { message: f.message } : null };
    case 'preference':
      return f.ranking
        ? { value: null, label: 'ranking', text: null, data: { ranking: f.ranking } }
        : { value: null, label: f.choice ?? null, text: null, data: { other: f.other } };
    case 'implicit':
      return { value: f.value ?? null, label: f.signal, text: null, data: null };
  }
}

/** Every interaction an event refers to (parsed or not); all must exist in the event's project. */
export function referencedInteractionIds(f: {
  kind: string;
  interactionId: string;
  other?: string;
  ranking?: string[];
}): string[] {
  if (f.kind !== 'preference') return [f.interactionId];
  if (f.ranking) return f.ranking;
  return f.other === undefined ? [f.interactionId] : [f.interactionId, f.other];
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
  if (f.kind === 'stars') {
    const scale = configs.get(f.scale);
    if (!scale || scale.usage !== 'stars') {
      throw new RatchetError(
        'invalid_request',
        `${at('scale')}: unknown star scale "${f.scale}"`,
        at('scale'),
      );
    }
    if (f.value < scale.min! || f.value > scale.max!) {
      throw new RatchetError(
        'invalid_request',
        `${at('value')}: ${f.value} is outside the "${scale.name}" scale ${scale.min}..${scale.max}`,
        at('value'),
      );
    }
  }
  if (f.kind === 'criteria') {
    for (const [name, score] of Object.entries(f.scores)) {
      const path = at(`scores.${name}`);
      const c = configs.get(name);
      if (!c || c.usage !== 'criterion')
        throw new RatchetError('invalid_request', `${path}: unknown criterion "${name}"`, path);
      if (c.dataType === 'numeric') {
        if (typeof score !== 'number')
          throw new RatchetError('invalid_request', `${path}: must be a number`, path);
        if (score < c.min! || score > c.max!) {
          throw new RatchetError('invalid_request', `${path}: ${score} is outside ${c.min}..${c.max}`, path);
        }
      } else if (typeof score !== 'string' || !c.categories!.includes(score)) {
        throw new RatchetError(
          'invalid_request',
          `${path}: must be one of ${c.categories!.join(', ')}`,
          path,
        );
      }
    }
  }
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
  const data = f.data ?? {};
  switch (f.kind) {
    case 'thumbs':
      return { ...base, kind: 'thumbs', value: f.value! > 0 ? 'up' : 'down' };
    case 'stars':
      return { ...base, kind: 'stars', value: f.value!, scale: f.label ?? 'stars' };
    case 'criteria':
      return { ...base, kind: 'criteria', scores: data.scores as Record<string, number | string> };
    case 'comment':
      return { ...base, kind: 'comment', text: f.text! };
    case 'correction':
      return {
        ...base,
        kind: 'correction',
        text: f.text!,
        ...(data.message ? { message: data.message as ChatMessage } : {}),
      };
    case 'preference':
      return data.ranking
        ? { ...base, kind: 'preference', ranking: data.ranking as string[] }
        : {
            ...base,
            kind: 'preference',
            other: data.other as string,
            choice: f.label as 'this' | 'other' | 'tie',
          };
    case 'implicit':
      return {
        ...base,
        kind: 'implicit',
        signal: f.label as ImplicitSignal,
        ...(f.value !== null ? { value: f.value } : {}),
      };
  }
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
