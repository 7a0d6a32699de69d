import {
  FeedbackInput,
  fromZodError,
  InteractionInput,
  type ParsedFeedback,
  type ParsedInteraction,
  RatchetError,
  storableIssue,
} from '@ratchet/core';
import type { z } from 'zod';

/**
 * What an importer produced from a file: validated interactions and feedback, ready for the
 * store. Nothing is written while a batch is built, so a bad file writes nothing.
 */
export interface ImportBatch {
  interactions: ParsedInteraction[];
  feedback: ParsedFeedback[];
  /** Per feedback event, where it came from (`file:line: field`), so later checks can name it. */
  feedbackOrigins: string[];
  /** Things the importer skipped on purpose (unknown columns, unmapped annotation results). */
  warnings: string[];
}

/** The error every importer throws: the message starts with `file:line` and names the field. */
export function importError(origin: string, message: string, field?: string): RatchetError {
  return new RatchetError(
    'invalid_request',
    field ? `${origin}: ${field}: ${message}` : `${origin}: ${message}`,
  );
}

/** Parses with a schema; a failure names the origin and the first bad field. */
export function parseAt<S extends z.ZodType>(schema: S, value: unknown, origin: string): z.output<S> {
  // What the API refuses (NUL, lone surrogate, too deep) a file must not write either: PostgreSQL
  // would fail the whole import on it, SQLite store it differently.
  const unstorable = storableIssue(value);
  if (unstorable) throw importError(origin, unstorable.message, unstorable.path || undefined);
  const result = schema.safeParse(value);
  if (!result.success) throw importError(origin, fromZodError(result.error).message);
  return result.data;
}

/**
 * Collects a batch. The same interaction (same id) or the same feedback event (same idempotency
 * key) met twice is kept once, the first time, which is what the store would do with it anyway.
 */
export class ImportBatchBuilder {
  private readonly interactions = new Map<string, ParsedInteraction>();
  private readonly feedback = new Map<string, { event: ParsedFeedback; origin: string }>();
  private readonly warnings: string[] = [];

  /** Validates an interaction (it must carry its id) and returns the id. */
  addInteraction(input: InteractionInput, origin: string): string {
    const parsed = parseAt(InteractionInput, input, origin);
    const id = parsed.id;
    if (id === undefined) throw importError(origin, 'an imported interaction needs an id', 'id');
    if (!this.interactions.has(id)) this.interactions.set(id, parsed);
    return id;
  }

  /** Validates a feedback event; imported events always carry an idempotency key. */
  addFeedback(input: FeedbackInput, origin: string): void {
    const parsed = parseAt(FeedbackInput, input, origin);
    const key = parsed.idempotencyKey;
    if (key === undefined) throw importError(origin, 'an imported event needs an idempotency key');
    if (!this.feedback.has(key)) this.feedback.set(key, { event: parsed, origin });
  }

  warn(message: string): void {
    this.warnings.push(message);
  }

  build(): ImportBatch {
    const feedback = [...this.feedback.values()];
    return {
      interactions: [...this.interactions.values()],
      feedback: feedback.map((f) => f.event),
      feedbackOrigins: feedback.map((f) => f.origin),
      warnings: [...this.warnings],
    };
  }
}
