import { ChatMessage, type FeedbackSource, type InteractionInput } from '@ratchet/core';
import { z } from 'zod';
import { type ImportBatch, ImportBatchBuilder, importError, parseAt } from './batch.js';
import { contentInteractionId } from './ids.js';

/**
 * Import of TRL-format JSONL (https://huggingface.co/docs/trl/dataset_formats), standard (plain
 * strings) and conversational (lists of messages) alike:
 * - prompt + completion, or messages ending in an assistant turn (SFT): one interaction;
 * - prompt + chosen + rejected, or chosen + rejected sharing an implicit prompt (preference): two
 *   interactions for the same prompt and a `preference` event (chosen over rejected);
 * - prompt + completion + label (unpaired preference, KTO): an interaction and a `thumbs` event.
 * Interaction ids are hashes of the content, so importing a file again writes nothing new.
 */
export interface TrlImportOptions {
  /** Name of the file, for error messages (`file:line`). */
  file: string;
  /** The model the answers came from; TRL rows do not say. */
  model?: string;
  route?: string;
  tags?: string[];
  /** Who gave the preferences and labels; one rater for the whole file unless set per import. */
  raterId?: string;
  source?: FeedbackSource;
}

const Turns = z.union([z.string(), z.array(ChatMessage).min(1)]);
type Turns = z.infer<typeof Turns>;

const TrlRow = z.looseObject({
  prompt: Turns.optional(),
  completion: Turns.optional(),
  chosen: Turns.optional(),
  rejected: Turns.optional(),
  label: z.boolean().optional(),
  messages: z.array(ChatMessage).min(1).optional(),
  text: z.string().optional(),
});
type TrlRow = z.infer<typeof TrlRow>;

const knownKeys = new Set(['prompt', 'completion', 'chosen', 'rejected', 'label', 'messages', 'text']);

interface RowContext {
  origin: string;
  options: TrlImportOptions;
  builder: ImportBatchBuilder;
  metadata: Record<string, unknown>;
}

export function parseTrlJsonl(text: string, options: TrlImportOptions): ImportBatch {
  const builder = new ImportBatchBuilder();
  text.split(/\r?\n/).forEach((line, index) => {
    if (!line.trim()) return;
    const origin = `${options.file}:${index + 1}`;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (err) {
      throw importError(origin, `not valid JSON (${(err as Error).message})`);
    }
    const row = parseAt(TrlRow, json, origin);
    importRow(row, { origin, options, builder, metadata: extraColumns(row) });
  });
  return builder.build();
}

function importRow(row: TrlRow, ctx: RowContext): void {
  if (row.chosen !== undefined || row.rejected !== undefined) {
    importPreference(row, ctx);
  } else if (row.label !== undefined) {
    importUnpaired(row, ctx);
  } else if (row.completion !== undefined) {
    addInteraction(
      promptMessages(row.prompt, ctx.origin),
      answer(row.completion, 'completion', ctx.origin),
      ctx,
    );
  } else if (row.messages !== undefined) {
    const { prompt, output } = splitConversation(row.messages, 'messages', ctx.origin);
    addInteraction(prompt, output, ctx);
  } else if (row.text !== undefined) {
    throw importError(ctx.origin, 'language-modeling rows have no prompt and answer to import', 'text');
  } else {
    throw importError(ctx.origin, 'needs completion, messages, or chosen and rejected', 'prompt');
  }
}

/** prompt/chosen/rejected, or chosen/rejected as whole conversations with a shared prefix. */
function importPreference(row: TrlRow, ctx: RowContext): void {
  if (row.chosen === undefined) throw importError(ctx.origin, 'a preference row needs chosen', 'chosen');
  if (row.rejected === undefined)
    throw importError(ctx.origin, 'a preference row needs rejected', 'rejected');
  let prompt: ChatMessage[];
  let chosen: ChatMessage;
  let rejected: ChatMessage;
  if (row.prompt !== undefined) {
    prompt = promptMessages(row.prompt, ctx.origin);
    chosen = answer(row.chosen, 'chosen', ctx.origin);
    rejected = answer(row.rejected, 'rejected', ctx.origin);
  } else {
    if (typeof row.chosen === 'string' || typeof row.rejected === 'string')
      throw importError(ctx.origin, 'plain-text chosen and rejected need a prompt', 'prompt');
    const a = splitConversation(row.chosen, 'chosen', ctx.origin);
    const b = splitConversation(row.rejected, 'rejected', ctx.origin);
    if (JSON.stringify(a.prompt) !== JSON.stringify(b.prompt))
      throw importError(ctx.origin, 'chosen and rejected must share the implicit prompt', 'rejected');
    ({ prompt } = a);
    chosen = a.output;
    rejected = b.output;
  }
  const chosenId = addInteraction(prompt, chosen, ctx);
  const rejectedId = addInteraction(prompt, rejected, ctx);
  if (chosenId === rejectedId)
    throw importError(ctx.origin, 'chosen and rejected are the same answer', 'rejected');
  ctx.builder.addFeedback(
    {
      kind: 'preference',
      interactionId: chosenId,
      other: rejectedId,
      choice: 'this',
      ...rater(ctx.options),
      idempotencyKey: `trl:preference:${chosenId}:${rejectedId}`,
    },
    `${ctx.origin}: chosen`,
  );
}

function importUnpaired(row: TrlRow, ctx: RowContext): void {
  if (row.completion === undefined)
    throw importError(ctx.origin, 'a labelled row needs a completion', 'completion');
  const id = addInteraction(
    promptMessages(row.prompt, ctx.origin),
    answer(row.completion, 'completion', ctx.origin),
    ctx,
  );
  const value = row.label ? 'up' : 'down';
  ctx.builder.addFeedback(
    {
      kind: 'thumbs',
      interactionId: id,
      value,
      ...rater(ctx.options),
      idempotencyKey: `trl:label:${id}:${value}`,
    },
    `${ctx.origin}: label`,
  );
}

function addInteraction(messages: ChatMessage[], output: ChatMessage, ctx: RowContext): string {
  const model = ctx.options.model ?? 'unknown';
  const input: InteractionInput = {
    id: contentInteractionId('trl', { model, messages, output }),
    model,
    messages,
    output,
    source: 'import',
    metadata: { importedFrom: 'trl', ...ctx.metadata },
    ...(ctx.options.route ? { route: ctx.options.route } : {}),
    ...(ctx.options.tags ? { tags: ctx.options.tags } : {}),
  };
  return ctx.builder.addInteraction(input, ctx.origin);
}

function rater(options: TrlImportOptions): { raterId: string; source: FeedbackSource } {
  return { raterId: options.raterId ?? 'import:trl', source: options.source ?? 'annotator' };
}

function promptMessages(prompt: Turns | undefined, origin: string): ChatMessage[] {
  if (prompt === undefined) throw importError(origin, 'is required', 'prompt');
  return typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : prompt;
}

/** An answer is plain text or exactly one assistant message: an interaction has one output. */
function answer(turns: Turns, field: string, origin: string): ChatMessage {
  if (typeof turns === 'string') return { role: 'assistant', content: turns };
  const [only, ...more] = turns;
  if (more.length > 0 || only?.role !== 'assistant')
    throw importError(origin, 'must be plain text or a single assistant message', field);
  return only;
}

/** A conversation ending in the assistant's answer: the answer and everything before it. */
function splitConversation(
  messages: ChatMessage[],
  field: string,
  origin: string,
): { prompt: ChatMessage[]; output: ChatMessage } {
  const output = messages[messages.length - 1]!;
  if (output.role !== 'assistant' || messages.length < 2)
    throw importError(origin, 'must be a conversation that ends with an assistant message', field);
  return { prompt: messages.slice(0, -1), output };
}

/** Columns TRL does not define (ids, sources, scores) kept as metadata when they are scalars. */
function extraColumns(row: TrlRow): Record<string, unknown> {
  const extra = Object.entries(row).filter(
    ([key, value]) =>
      !knownKeys.has(key) &&
      (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string'),
  );
  return extra.length ? { trl: Object.fromEntries(extra) } : {};
}
