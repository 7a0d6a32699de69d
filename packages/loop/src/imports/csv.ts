import {
  type ChatMessage,
  type FeedbackInput,
  FeedbackSource,
  type InteractionInput,
  parseInput,
  Timestamp,
} from '@ratchet/core';
import { z } from 'zod';
import { type ImportBatch, ImportBatchBuilder, importError, parseAt } from './batch.js';
import { parseCsv } from './csv-parser.js';
import { contentInteractionId, contentKey } from './ids.js';

/**
 * Import of ratings kept in a spreadsheet: one row per rated answer (prompt, response, model,
 * who rated and how). A row without prompt and response rates an interaction already in the
 * project by its id. Columns are found by their usual names; `columns` maps a field to another
 * header. Criteria columns are named after the project's criteria (relevance, accuracy, ...).
 */
export const csvFields = [
  'id',
  'prompt',
  'system',
  'response',
  'model',
  'route',
  'userId',
  'sessionId',
  'tags',
  'raterId',
  'source',
  'createdAt',
  'thumbs',
  'stars',
  'comment',
  'correction',
] as const;
export type CsvField = (typeof csvFields)[number];

/** Headers each field is found under (compared lower-case, with spaces and dashes as `_`). */
const defaultHeaders: Record<CsvField, string[]> = {
  id: ['interaction_id', 'id'],
  prompt: ['prompt', 'input', 'question', 'query'],
  system: ['system', 'system_prompt'],
  response: ['response', 'output', 'completion', 'answer'],
  model: ['model'],
  route: ['route'],
  userId: ['user_id', 'user'],
  sessionId: ['session_id', 'session'],
  tags: ['tags'],
  raterId: ['rater_id', 'rater', 'annotator'],
  source: ['source'],
  createdAt: ['created_at', 'timestamp', 'time', 'date'],
  thumbs: ['thumbs', 'thumb', 'thumbs_up'],
  stars: ['stars', 'rating', 'star_rating'],
  comment: ['comment', 'comments', 'feedback', 'notes'],
  correction: ['correction', 'corrected_response', 'ideal_response'],
};

export const CsvImportOptions = z.strictObject({
  /** Name of the file, for error messages (`file:line`). */
  file: z.string().min(1),
  /** Field (or criterion name) to header, overriding the usual names. */
  columns: z.record(z.string(), z.string().min(1)).default({}),
  /** The project's criteria; each is read from a column of the same name unless mapped. */
  criteria: z.array(z.string().min(1)).default(['relevance', 'accuracy', 'helpfulness']),
  /** Model for rows without a model column. */
  model: z.string().min(1).default('unknown'),
  /** Source of the ratings for rows without a source column. */
  source: FeedbackSource.default('user'),
  delimiter: z.string().length(1).default(','),
  /** Separator of several tags in one cell. */
  tagSeparator: z.string().min(1).default(';'),
});
export type CsvImportOptions = z.input<typeof CsvImportOptions>;
type Options = z.output<typeof CsvImportOptions>;

const thumbsWords: Record<string, 'up' | 'down'> = {
  up: 'up',
  down: 'down',
  '1': 'up',
  '+1': 'up',
  '0': 'down',
  '-1': 'down',
  true: 'up',
  false: 'down',
  yes: 'up',
  no: 'down',
  good: 'up',
  bad: 'down',
  positive: 'up',
  negative: 'down',
  '👍': 'up',
  '👎': 'down',
};

const normalizeHeader = (h: string) =>
  h
    .trim()
    .toLowerCase()
    .replace(/[\s-]+/g, '_');

/** Which column index holds each field and criterion; unknown headers are reported, not used. */
function mapColumns(header: string[], options: Options, origin: string) {
  const index = new Map(header.map((h, i) => [normalizeHeader(h), i] as const));
  const known = new Set<string>([...csvFields, ...options.criteria]);
  for (const field of Object.keys(options.columns)) {
    if (!known.has(field))
      throw importError(origin, `no field or criterion named "${field}" to map a column to`);
  }
  const find = (field: string, usual: string[]): number | undefined => {
    const mapped = options.columns[field];
    if (mapped === undefined) return usual.map((h) => index.get(h)).find((i) => i !== undefined);
    const i = index.get(normalizeHeader(mapped));
    if (i === undefined) throw importError(origin, `no column "${mapped}" (mapped to ${field})`);
    return i;
  };
  const fields = new Map<CsvField, number>();
  for (const field of csvFields) {
    const i = find(field, defaultHeaders[field]);
    if (i !== undefined) fields.set(field, i);
  }
  const criteria = new Map<string, number>();
  for (const name of options.criteria) {
    const i = find(name, [normalizeHeader(name)]);
    if (i !== undefined) criteria.set(name, i);
  }
  const used = new Set([...fields.values(), ...criteria.values()]);
  const unused = header.filter((_, i) => !used.has(i));
  return { fields, criteria, unused };
}

export function parseFeedbackCsv(text: string, options: CsvImportOptions): ImportBatch {
  const opts = parseInput(CsvImportOptions, options, 'options');
  const [head, ...rows] = parseCsv(text, opts.file, opts.delimiter);
  const builder = new ImportBatchBuilder();
  if (!head) return builder.build();
  const headerOrigin = `${opts.file}:${head.line}`;
  const { fields, criteria, unused } = mapColumns(head.cells, opts, headerOrigin);
  if (!fields.has('id') && !(fields.has('prompt') && fields.has('response')))
    throw importError(headerOrigin, 'needs prompt and response columns, or an interaction_id column');
  if (unused.length) builder.warn(`${headerOrigin}: ignored columns: ${unused.join(', ')}`);

  for (const row of rows) {
    const origin = `${opts.file}:${row.line}`;
    if (row.cells.length !== head.cells.length)
      throw importError(origin, `has ${row.cells.length} fields, the header has ${head.cells.length}`);
    const cell = (field: CsvField) => {
      const i = fields.get(field);
      const value = i === undefined ? '' : row.cells[i]!.trim();
      return value === '' ? undefined : value;
    };
    const criterionCells = [...criteria].map(([name, i]) => [name, row.cells[i]!.trim()] as const);
    importRow({ cell, criterionCells, origin, opts, builder, header: head.cells, fields });
  }
  return builder.build();
}

interface RowContext {
  cell: (field: CsvField) => string | undefined;
  criterionCells: (readonly [string, string])[];
  origin: string;
  opts: Options;
  builder: ImportBatchBuilder;
  header: string[];
  fields: Map<CsvField, number>;
}

function importRow(ctx: RowContext): void {
  const { cell } = ctx;
  const createdAt = cell('createdAt') === undefined ? undefined : timestamp(ctx);
  const interactionId = rowInteraction(ctx, createdAt);
  const common = {
    interactionId,
    source: parseAt(FeedbackSource, cell('source') ?? ctx.opts.source, at(ctx, 'source')),
    ...(cell('raterId') ? { raterId: cell('raterId') } : {}),
    ...(createdAt !== undefined ? { createdAt } : {}),
  };
  const events: [CsvField | 'criteria', Record<string, unknown>][] = [];
  const thumbs = cell('thumbs');
  if (thumbs !== undefined) events.push(['thumbs', { kind: 'thumbs', value: thumbsValue(thumbs, ctx) }]);
  const stars = cell('stars');
  if (stars !== undefined) events.push(['stars', { kind: 'stars', value: number(stars, ctx, 'stars') }]);
  const comment = cell('comment');
  if (comment !== undefined) events.push(['comment', { kind: 'comment', text: comment }]);
  const correction = cell('correction');
  if (correction !== undefined) events.push(['correction', { kind: 'correction', text: correction }]);
  const scores = Object.fromEntries(
    ctx.criterionCells.filter(([, v]) => v !== '').map(([name, v]) => [name, criterionValue(v)]),
  );
  if (Object.keys(scores).length) events.push(['criteria', { kind: 'criteria', scores }]);

  for (const [field, event] of events) {
    // The key is the event's content (with who gave it and when), not its line: an edited or
    // reordered file imports again without repeating the rows it had before.
    const key = contentKey('csv', [
      interactionId,
      common.raterId ?? null,
      cell('userId') ?? null,
      common.source,
      createdAt ?? null,
      Object.entries(event).sort(([a], [b]) => (a < b ? -1 : 1)),
    ]);
    const origin = field === 'criteria' ? `${ctx.origin}: criteria` : at(ctx, field);
    ctx.builder.addFeedback({ ...common, ...event, idempotencyKey: key } as FeedbackInput, origin);
  }
}

/** The row's interaction: created from prompt and response, or named by its id alone. */
function rowInteraction(ctx: RowContext, createdAt: number | undefined): string {
  const { cell } = ctx;
  const prompt = cell('prompt');
  const response = cell('response');
  const id = cell('id');
  if (prompt === undefined && response === undefined) {
    if (id === undefined) throw importError(ctx.origin, 'needs prompt and response, or an interaction id');
    return id;
  }
  if (prompt === undefined) throw importError(ctx.origin, 'is empty', columnName(ctx, 'prompt'));
  if (response === undefined) throw importError(ctx.origin, 'is empty', columnName(ctx, 'response'));
  const system = cell('system');
  const messages: ChatMessage[] = [
    ...(system ? [{ role: 'system' as const, content: system }] : []),
    { role: 'user', content: prompt },
  ];
  const model = cell('model') ?? ctx.opts.model;
  const tags = cell('tags')
    ?.split(ctx.opts.tagSeparator)
    .map((t) => t.trim())
    .filter(Boolean);
  const input: InteractionInput = {
    id: id ?? contentInteractionId('csv', { model, messages, output: response }),
    model,
    messages,
    output: response,
    source: 'import',
    metadata: { importedFrom: 'csv' },
    ...optional({ route: cell('route'), userId: cell('userId'), sessionId: cell('sessionId') }),
    ...(tags?.length ? { tags } : {}),
    ...(createdAt !== undefined ? { createdAt } : {}),
  };
  return ctx.builder.addInteraction(input, ctx.origin);
}

function optional(values: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as Record<
    string,
    string
  >;
}

function columnName(ctx: RowContext, field: CsvField): string {
  const i = ctx.fields.get(field);
  return `column "${i === undefined ? field : ctx.header[i]}"`;
}

function at(ctx: RowContext, field: CsvField): string {
  return `${ctx.origin}: ${columnName(ctx, field)}`;
}

function thumbsValue(text: string, ctx: RowContext): 'up' | 'down' {
  const value = thumbsWords[text.toLowerCase()];
  if (!value)
    throw importError(at(ctx, 'thumbs'), `"${text}" is not a thumbs value (up/down, 1/0, yes/no, ...)`);
  return value;
}

function number(text: string, ctx: RowContext, field: CsvField): number {
  const value = Number(text);
  if (!Number.isFinite(value)) throw importError(at(ctx, field), `"${text}" is not a number`);
  return value;
}

/** Numeric criteria are numbers; anything else is a category of a categorical criterion. */
function criterionValue(text: string): number | string {
  const value = Number(text);
  return Number.isFinite(value) ? value : text;
}

/**
 * Epoch milliseconds, or an ISO-8601 time. Spreadsheets often write `2024-05-01 10:00:00` with no
 * zone; that is read as UTC so that the same file gives the same times on every machine.
 */
function timestamp(ctx: RowContext): number {
  const text = ctx.cell('createdAt')!;
  if (/^\d+$/.test(text)) return Number(text);
  let iso = text.replace(/^(\d{4}-\d{2}-\d{2})[ T]/, '$1T');
  if (/^\d{4}-\d{2}-\d{2}$/.test(iso)) iso += 'T00:00:00';
  if (/T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(iso)) iso += 'Z';
  return parseAt(Timestamp, iso, at(ctx, 'createdAt')) as number;
}
