import { defaultScoreConfigs, type FeedbackInput, type ScoreConfig } from '@ratchet/core';
import { z } from 'zod';
import { type ImportBatchBuilder, importError, parseAt } from '../imports/batch.js';
import { contentInteractionId, contentKey } from '../imports/ids.js';
import { controlNames, ratingSteps, taskDataKeys } from './config.js';

/**
 * Label Studio tasks with their annotations (a JSON export, or what the connector pulls) turned
 * into feedback from source `annotator`, rated by `labelstudio:<user id>`. Results from the
 * controls Ratchet's labeling config names map exactly; results from other configs map by type
 * where that is unambiguous (a TextArea is a comment, Pairwise a preference), else are skipped
 * with a warning.
 */
const ResultItem = z.looseObject({
  from_name: z.string(),
  to_name: z.string().optional(),
  type: z.string(),
  value: z.record(z.string(), z.unknown()),
});
type ResultItem = z.infer<typeof ResultItem>;

const CompletedBy = z.union([
  z.number().int(),
  z.looseObject({ id: z.number().int().optional(), email: z.string().optional() }),
]);

export const LabelStudioAnnotation = z.looseObject({
  id: z.number().int(),
  completed_by: CompletedBy.nullish(),
  result: z.array(z.unknown()).nullish(),
  was_cancelled: z.boolean().nullish(),
  created_at: z.string().nullish(),
  updated_at: z.string().nullish(),
});
export type LabelStudioAnnotation = z.infer<typeof LabelStudioAnnotation>;

export const LabelStudioTask = z.looseObject({
  id: z.number().int(),
  data: z.record(z.string(), z.unknown()),
  annotations: z.array(z.unknown()).nullish(),
});
export type LabelStudioTask = z.infer<typeof LabelStudioTask>;

export interface LabelStudioMappingOptions {
  /** The project's scales: star ratings and criteria are read on them. */
  scales?: readonly ScoreConfig[];
  /** Model of tasks that Ratchet did not push (they carry their prompt and answer). */
  model?: string;
}

const thumbsWords: Record<string, 'up' | 'down'> = {
  up: 'up',
  down: 'down',
  good: 'up',
  bad: 'down',
  yes: 'up',
  no: 'down',
  '👍': 'up',
  '👎': 'down',
};

const promptKeys = [taskDataKeys.prompt, 'question', 'input'];
const answerKeys = [taskDataKeys.answer, 'response', 'output', 'completion'];

/** Adds a task's finished annotations (and, for foreign tasks, its interactions) to a batch. */
export function addLabelStudioTask(
  builder: ImportBatchBuilder,
  raw: unknown,
  origin: string,
  options: LabelStudioMappingOptions = {},
): void {
  const task = parseAt(LabelStudioTask, raw, origin);
  const annotations = (task.annotations ?? []).map((a, j) =>
    parseAt(LabelStudioAnnotation, a, `${origin}: annotations.${j}`),
  );
  const finished = annotations.filter((a) => !a.was_cancelled && (a.result?.length ?? 0) > 0);
  if (finished.length === 0) return;
  const ids = taskInteractions(builder, task, origin, options);
  annotations.forEach((annotation, j) => {
    if (!finished.includes(annotation)) return;
    const at = `${origin}: annotations.${j}`;
    const events = annotationEvents(annotation, ids, at, options.scales ?? defaultScoreConfigs, builder);
    const common = {
      interactionId: ids.interactionId,
      raterId: raterOf(annotation),
      source: 'annotator' as const,
      metadata: { labelStudio: { taskId: task.id, annotationId: annotation.id } },
      ...timeOf(annotation),
    };
    for (const { event, field } of events) {
      // Keyed by annotation and content: pulling again writes nothing, while an annotation the
      // annotator edited later adds the changed ratings as newer events.
      const idempotencyKey = `labelstudio:${annotation.id}:${contentKey(event.kind, sorted(event))}`;
      builder.addFeedback({ ...common, ...event, idempotencyKey } as FeedbackInput, `${at}: ${field}`);
    }
  });
}

interface TaskInteractions {
  interactionId: string;
  otherInteractionId: string | undefined;
}

/** The task's interaction: ours by id, or one made from the prompt and answer it shows. */
function taskInteractions(
  builder: ImportBatchBuilder,
  task: LabelStudioTask,
  origin: string,
  options: LabelStudioMappingOptions,
): TaskInteractions {
  const data = task.data;
  const id = data[taskDataKeys.interactionId];
  if (typeof id === 'string') {
    const other = data[taskDataKeys.otherInteractionId];
    return { interactionId: id, otherInteractionId: typeof other === 'string' ? other : undefined };
  }
  const prompt = firstString(data, promptKeys);
  const answer = firstString(data, answerKeys);
  if (prompt === undefined || answer === undefined) {
    throw importError(
      origin,
      `needs ${taskDataKeys.interactionId}, or a prompt (${promptKeys.join('/')}) and an answer (${answerKeys.join('/')})`,
      'data',
    );
  }
  const model =
    typeof data[taskDataKeys.model] === 'string'
      ? (data[taskDataKeys.model] as string)
      : (options.model ?? 'unknown');
  const make = (output: string) => {
    const messages = [{ role: 'user' as const, content: prompt }];
    return builder.addInteraction(
      {
        id: contentInteractionId('ls', { model, messages, output }),
        model,
        messages,
        output,
        source: 'import',
        metadata: { importedFrom: 'labelstudio', labelStudio: { taskId: task.id } },
      },
      `${origin}: data`,
    );
  };
  const otherAnswer = data[taskDataKeys.otherAnswer];
  return {
    interactionId: make(answer),
    otherInteractionId: typeof otherAnswer === 'string' ? make(otherAnswer) : undefined,
  };
}

function firstString(data: Record<string, unknown>, keys: readonly string[]): string | undefined {
  for (const k of keys) if (typeof data[k] === 'string' && data[k] !== '') return data[k] as string;
  return undefined;
}

type Event = Record<string, unknown> & { kind: string };

function annotationEvents(
  annotation: LabelStudioAnnotation,
  ids: TaskInteractions,
  origin: string,
  scales: readonly ScoreConfig[],
  builder: ImportBatchBuilder,
): { event: Event; field: string }[] {
  const events: { event: Event; field: string }[] = [];
  const scores: Record<string, number | string> = {};
  (annotation.result ?? []).forEach((raw, k) => {
    const at = `${origin}: result.${k}`;
    const item = parseAt(ResultItem, raw, at);
    const mapped = mapResult(item, ids, scales, at);
    if (mapped === undefined) {
      builder.warn(
        `${at}: skipped a ${item.type} result from "${item.from_name}" (no rating kind maps to it)`,
      );
    } else if ('event' in mapped) {
      events.push({ event: mapped.event, field: `result.${k}` });
    } else {
      scores[mapped.criterion] = mapped.score;
    }
  });
  if (Object.keys(scores).length) {
    const ordered = Object.fromEntries(Object.entries(scores).sort(([a], [b]) => (a < b ? -1 : 1)));
    events.push({ event: { kind: 'criteria', scores: ordered }, field: 'criteria' });
  }
  return events;
}

/** One result maps to an event of its own, or to one score of the annotation's criteria event. */
type Mapped = { event: Event } | { criterion: string; score: number | string } | undefined;

function mapResult(
  item: ResultItem,
  ids: TaskInteractions,
  scales: readonly ScoreConfig[],
  at: string,
): Mapped {
  const name = item.from_name;
  const scale = (n: string, usage: ScoreConfig['usage']) =>
    scales.find((s) => s.name === n && s.usage === usage);
  if (item.type === 'pairwise') return { event: preference(item, ids, at) };
  if (name === controlNames.thumbs || (item.type === 'choices' && isThumbs(item)))
    return { event: thumbs(item, at) };
  if (name === controlNames.correction && item.type === 'textarea')
    return { event: { kind: 'correction', text: text(item, at) } };
  if (item.type === 'textarea') return { event: { kind: 'comment', text: text(item, at) } };

  // Our own control names say the scale; one the project lacks is reported when the batch is
  // checked against the project's scales, not guessed at here.
  if (name.startsWith('criterion_')) {
    const criterion = name.slice('criterion_'.length);
    return { criterion, score: scaleValue(item, scale(criterion, 'criterion'), at) };
  }
  if (name === 'stars' || name.startsWith('stars_')) {
    const stars = name === 'stars' ? 'stars' : name.slice('stars_'.length);
    return { event: { kind: 'stars', scale: stars, value: scaleValue(item, scale(stars, 'stars'), at) } };
  }
  // Foreign configs: a control named after one of our criteria scores it; another rating is
  // read on the default star scale.
  const criterion = scale(name, 'criterion');
  if (criterion) return { criterion: criterion.name, score: scaleValue(item, criterion, at) };
  if (item.type === 'rating')
    return { event: { kind: 'stars', scale: 'stars', value: scaleValue(item, scale('stars', 'stars'), at) } };
  return undefined;
}

function isThumbs(item: ResultItem): boolean {
  const choices = item.value.choices;
  if (!Array.isArray(choices) || choices.length !== 1) return false;
  const [choice] = choices as unknown[];
  return typeof choice === 'string' && thumbsWords[choice.toLowerCase()] !== undefined;
}

function thumbs(item: ResultItem, at: string): Event {
  const [choice] = parseAt(z.array(z.string()).length(1), item.value.choices, `${at}: value.choices`);
  const value = thumbsWords[choice!.toLowerCase()];
  if (!value)
    throw importError(at, `"${choice}" is not a thumbs choice (up/down, good/bad)`, 'value.choices');
  return { kind: 'thumbs', value };
}

function text(item: ResultItem, at: string): string {
  const value = parseAt(z.union([z.string(), z.array(z.string())]), item.value.text, `${at}: value.text`);
  return Array.isArray(value) ? value.join('\n') : value;
}

/**
 * A Rating is 1..steps stars shifted onto the scale (as the labeling config laid it out); a
 * Number is the value; Choices a category. On an unknown scale the raw value is kept.
 */
function scaleValue(item: ResultItem, scale: ScoreConfig | undefined, at: string): number | string {
  if (item.type === 'rating') {
    const stars = parseAt(z.number().int().positive(), item.value.rating, `${at}: value.rating`);
    const steps = scale && ratingSteps(scale);
    return steps === undefined || !scale ? stars : scale.min! + stars - 1;
  }
  if (item.type === 'number') return parseAt(z.number(), item.value.number, `${at}: value.number`);
  if (item.type === 'choices') {
    const [choice] = parseAt(z.array(z.string()).length(1), item.value.choices, `${at}: value.choices`);
    return choice!;
  }
  throw importError(at, `a ${item.type} result from "${item.from_name}" cannot be a score`, 'type');
}

/** Pairwise: `left` is the task's own answer, `right` the other one (answer_b). */
function preference(item: ResultItem, ids: TaskInteractions, at: string): Event {
  const selected = parseAt(z.enum(['left', 'right']), item.value.selected, `${at}: value.selected`);
  if (ids.otherInteractionId === undefined)
    throw importError(
      at,
      `a pairwise result needs ${taskDataKeys.otherInteractionId} or answer_b in the task data`,
    );
  return {
    kind: 'preference',
    other: ids.otherInteractionId,
    choice: selected === 'left' ? 'this' : 'other',
  };
}

function raterOf(annotation: LabelStudioAnnotation): string {
  const by = annotation.completed_by;
  if (typeof by === 'number') return `labelstudio:${by}`;
  if (by?.id !== undefined) return `labelstudio:${by.id}`;
  if (by?.email) return `labelstudio:${by.email}`;
  return 'labelstudio:unknown';
}

/** When the annotation was last saved: its latest ratings are the ones the annotator meant. */
function timeOf(annotation: LabelStudioAnnotation): { createdAt?: number } {
  const ms = Date.parse(annotation.updated_at ?? annotation.created_at ?? '');
  return Number.isFinite(ms) && ms >= 0 ? { createdAt: ms } : {};
}

function sorted(event: Event): [string, unknown][] {
  return Object.entries(event).sort(([a], [b]) => (a < b ? -1 : 1));
}
