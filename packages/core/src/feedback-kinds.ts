/**
 * One descriptor per kind of feedback: its input schema, how it is stored, how a stored event
 * becomes an input again, its reward and evidence weight, and its name for people. The API's
 * `FeedbackInput`, normalization, the reward mapping's weights, export and import all read this
 * registry, and so do the Python SDK and the web app (through files scripts/write-registries.ts
 * writes from it, checked by registries.test.ts). A new kind is one entry here plus its UI.
 */
import { z } from 'zod';
import { RatchetError } from './errors.js';
import { criteriaReward, type ImplicitRewards, implicitReward, scaleToReward } from './normalize/scales.js';
import { ClientId } from './schemas/common.js';
import {
  type FeedbackSource,
  feedbackCommon,
  type ImplicitSignal,
  implicitSignals,
} from './schemas/feedback.js';
import { ChatMessage } from './schemas/interaction.js';
import type { ScoreConfig } from './schemas/score-config.js';

/** The columns a feedback event is stored in, whatever its kind. */
export interface FeedbackFields {
  value: number | null;
  label: string | null;
  text: string | null;
  data: Record<string, unknown> | null;
}

/** What a reward depends on besides the event: the project's scales and the reward mapping's rules. */
export interface KindRewardContext {
  configs: ReadonlyMap<string, ScoreConfig>;
  mapping: {
    thumbs: { up: number; down: number };
    criteria: { weights: Readonly<Record<string, number>> };
    implicit: ImplicitRewards;
  };
}

/** The stored columns a reward reads. */
export type RewardedFields = Pick<FeedbackFields, 'value' | 'label' | 'data'>;

/** A reward in [-1, 1], or why the event has none. */
type RewardOf = (row: RewardedFields, context: KindRewardContext) => number | string;

type CommonKeys = keyof typeof feedbackCommon;

interface FeedbackKindDescriptor<S extends z.ZodType, R> {
  /** The kind's input schema: a member of `FeedbackInput` (the common fields plus its own). */
  input: S;
  /** What people call it (dashboard, docs). */
  label: string;
  /** The stored columns of a parsed event. */
  store: (f: z.output<S>) => FeedbackFields;
  /** The kind's own input fields that reproduce a stored event (export, then import elsewhere). */
  toInput: (row: FeedbackFields) => Omit<z.input<S>, CommonKeys | 'kind'>;
  /**
   * A scalar reward and how much one event counts against an explicit rating when calibration
   * combines them (the default of RewardMapping.evidenceWeight), or why the kind has none.
   */
  reward: R;
  /** Its events become pairwise evidence ("this answer beats that one", pairwiseEvidence). */
  pairwise?: true;
  /** Checks a parsed event against the project's score configs; throws a 4xx naming the field. */
  checkScales?: (
    f: z.output<S>,
    configs: ReadonlyMap<string, ScoreConfig>,
    at: (field: string) => string,
  ) => void;
  /** The interactions an event refers to besides its own, when it can name others. */
  interactionIds?: (f: { interactionId: string; other?: string; ranking?: string[] }) => string[];
}

function defineKind<
  S extends z.ZodType,
  R extends { of: RewardOf; evidenceWeight: number } | { none: string },
>(d: FeedbackKindDescriptor<S, R>): FeedbackKindDescriptor<S, R> {
  return d;
}

const invalid = (message: string, path: string) => new RatchetError('invalid_request', message, path);

function checkStarScale(
  value: number,
  scaleName: string,
  configs: ReadonlyMap<string, ScoreConfig>,
  at: (f: string) => string,
) {
  const scale = configs.get(scaleName);
  if (scale?.usage !== 'stars')
    throw invalid(`${at('scale')}: unknown star scale "${scaleName}"`, at('scale'));
  if (value < scale.min! || value > scale.max!) {
    throw invalid(
      `${at('value')}: ${value} is outside the "${scale.name}" scale ${scale.min}..${scale.max}`,
      at('value'),
    );
  }
}

function checkCriteria(
  scores: Record<string, number | string>,
  configs: ReadonlyMap<string, ScoreConfig>,
  at: (f: string) => string,
) {
  for (const [name, score] of Object.entries(scores)) {
    const path = at(`scores.${name}`);
    const c = configs.get(name);
    if (c?.usage !== 'criterion') throw invalid(`${path}: unknown criterion "${name}"`, path);
    if (c.dataType === 'numeric') {
      if (typeof score !== 'number') throw invalid(`${path}: must be a number`, path);
      if (score < c.min! || score > c.max!)
        throw invalid(`${path}: ${score} is outside ${c.min}..${c.max}`, path);
    } else if (typeof score !== 'string' || !c.categories!.includes(score)) {
      throw invalid(`${path}: must be one of ${c.categories!.join(', ')}`, path);
    }
  }
}

function starsReward(row: RewardedFields, configs: ReadonlyMap<string, ScoreConfig>): number | string {
  const scaleName = row.label ?? 'stars';
  const scale = configs.get(scaleName);
  if (scale?.usage !== 'stars') return `unknown star scale "${scaleName}"`;
  if (scale.dataType !== 'numeric' || scale.min === null || scale.max === null || scale.min >= scale.max)
    return `star scale "${scaleName}" has no numeric min..max`;
  if (row.value === null) return 'stars event without a value';
  return scaleToReward(row.value, scale.min, scale.max);
}

const isImplicitSignal = (s: string | null): s is ImplicitSignal =>
  s !== null && (implicitSignals as readonly string[]).includes(s);

/**
 * Pairwise (`other` with `choice`: is this interaction better than the other one?) or a ranking of
 * interactions answering the same prompt, best first, that includes this one.
 */
const Preference = z
  .strictObject({
    ...feedbackCommon,
    kind: z.literal('preference'),
    other: ClientId.optional(),
    choice: z.enum(['this', 'other', 'tie']).optional(),
    ranking: z.array(ClientId).min(2).max(50).optional(),
  })
  .superRefine((p, ctx) => {
    const pairwise = p.other !== undefined || p.choice !== undefined;
    if (pairwise && p.ranking) {
      ctx.addIssue({
        code: 'custom',
        path: ['ranking'],
        message: 'give either other+choice or ranking, not both',
      });
    } else if (pairwise) {
      if (p.other === undefined)
        ctx.addIssue({ code: 'custom', path: ['other'], message: 'pairwise preference needs other' });
      if (p.choice === undefined)
        ctx.addIssue({ code: 'custom', path: ['choice'], message: 'pairwise preference needs choice' });
      if (p.other === p.interactionId)
        ctx.addIssue({ code: 'custom', path: ['other'], message: 'other must differ from interactionId' });
    } else if (p.ranking) {
      if (!p.ranking.includes(p.interactionId))
        ctx.addIssue({ code: 'custom', path: ['ranking'], message: 'ranking must include interactionId' });
      if (new Set(p.ranking).size !== p.ranking.length)
        ctx.addIssue({ code: 'custom', path: ['ranking'], message: 'ranking has duplicate ids' });
    } else {
      ctx.addIssue({ code: 'custom', path: ['choice'], message: 'preference needs other+choice or ranking' });
    }
  });

export const feedbackKindRegistry = {
  thumbs: defineKind({
    input: z.strictObject({ ...feedbackCommon, kind: z.literal('thumbs'), value: z.enum(['up', 'down']) }),
    label: 'Thumbs up or down',
    store: (f) => ({ value: f.value === 'up' ? 1 : -1, label: f.value, text: null, data: null }),
    toInput: (row) => ({ value: row.value! > 0 ? ('up' as const) : ('down' as const) }),
    reward: {
      of: (row: RewardedFields, { mapping }: KindRewardContext) => {
        // The stored row carries the direction both as value (1/-1) and label (up/down).
        if (row.value === null && row.label !== 'up' && row.label !== 'down')
          return 'thumbs event without a direction';
        const up = row.value !== null ? row.value > 0 : row.label === 'up';
        return up ? mapping.thumbs.up : mapping.thumbs.down;
      },
      evidenceWeight: 1,
    },
  }),
  stars: defineKind({
    input: z.strictObject({
      ...feedbackCommon,
      kind: z.literal('stars'),
      value: z.number().finite(),
      /** The score config whose scale applies; `stars` (1..5 by default) when absent. */
      scale: z.string().min(1).max(64).default('stars'),
    }),
    label: 'Star rating',
    store: (f) => ({ value: f.value, label: f.scale, text: null, data: null }),
    toInput: (row) => ({ value: row.value!, scale: row.label ?? 'stars' }),
    reward: {
      of: (row: RewardedFields, { configs }: KindRewardContext) => starsReward(row, configs),
      evidenceWeight: 1,
    },
    checkScales: (f, configs, at) => checkStarScale(f.value, f.scale, configs, at),
  }),
  criteria: defineKind({
    input: z.strictObject({
      ...feedbackCommon,
      kind: z.literal('criteria'),
      /** Criterion name to score: a number on its numeric scale, or one of its categories. */
      scores: z
        .record(z.string().min(1).max(64), z.union([z.number().finite(), z.string().min(1).max(100)]))
        .refine((s) => Object.keys(s).length > 0, 'needs at least one criterion'),
    }),
    label: 'Scores per criterion',
    store: (f) => ({ value: null, label: null, text: null, data: { scores: f.scores } }),
    toInput: (row) => ({ scores: row.data?.scores as Record<string, number | string> }),
    reward: {
      of: (row: RewardedFields, { configs, mapping }: KindRewardContext) => {
        const scores = row.data?.['scores'];
        if (!scores || typeof scores !== 'object') return 'criteria event without scores';
        const combined = criteriaReward(scores as Record<string, unknown>, configs, mapping.criteria.weights);
        return combined ?? 'no scored criterion has a config and a positive weight';
      },
      evidenceWeight: 1,
    },
    checkScales: (f, configs, at) => checkCriteria(f.scores, configs, at),
  }),
  comment: defineKind({
    input: z.strictObject({
      ...feedbackCommon,
      kind: z.literal('comment'),
      text: z.string().min(1).max(20_000),
    }),
    label: 'Comment',
    store: (f) => ({ value: null, label: null, text: f.text, data: null }),
    toInput: (row) => ({ text: row.text! }),
    // Comments go to analysis (themes, correlation with ratings).
    reward: { none: 'comment carries no reward' },
  }),
  correction: defineKind({
    input: z.strictObject({
      ...feedbackCommon,
      kind: z.literal('correction'),
      /** The output the rater wanted instead. */
      text: z.string().min(1).max(100_000),
      /** Optionally the same as a full message (e.g. with tool calls). */
      message: ChatMessage.optional(),
    }),
    label: 'Correction',
    store: (f) => ({
      value: null,
      label: null,
      text: f.text,
      data: f.message ? { message: f.message } : null,
    }),
    toInput: (row) => ({
      text: row.text!,
      ...(row.data?.message ? { message: row.data.message as ChatMessage } : {}),
    }),
    // "The corrected text beats the answer": pairwise evidence (pairwiseEvidence).
    reward: { none: 'correction is pairwise evidence, not a scalar reward' },
    pairwise: true,
  }),
  preference: defineKind({
    input: Preference,
    label: 'Preference or ranking',
    store: (f) =>
      f.ranking
        ? { value: null, label: 'ranking', text: null, data: { ranking: f.ranking } }
        : { value: null, label: f.choice ?? null, text: null, data: { other: f.other } },
    toInput: (row) =>
      row.data?.ranking
        ? { ranking: row.data.ranking as string[] }
        : {
            other: row.data?.other as string,
            choice: row.label as 'this' | 'other' | 'tie',
          },
    reward: { none: 'preference is pairwise evidence, not a scalar reward' },
    pairwise: true,
    interactionIds: (f) => {
      if (f.ranking) return f.ranking;
      return f.other === undefined ? [f.interactionId] : [f.interactionId, f.other];
    },
  }),
  implicit: defineKind({
    input: z.strictObject({
      ...feedbackCommon,
      kind: z.literal('implicit'),
      signal: z.enum(implicitSignals),
      /** Optional magnitude, e.g. the share of the answer that was edited (0..1). */
      value: z.number().finite().optional(),
    }),
    label: 'Implicit signal',
    store: (f) => ({ value: f.value ?? null, label: f.signal, text: null, data: null }),
    toInput: (row) => ({
      signal: row.label as ImplicitSignal,
      ...(row.value !== null ? { value: row.value } : {}),
    }),
    reward: {
      of: (row: RewardedFields, { mapping }: KindRewardContext) =>
        isImplicitSignal(row.label)
          ? implicitReward(row.label, row.value, mapping.implicit)
          : `unknown implicit signal "${row.label}"`,
      // Implicit signals are weaker evidence of quality than a rating.
      evidenceWeight: 0.5,
    },
  }),
};

type Registry = typeof feedbackKindRegistry;
export type FeedbackKind = keyof Registry;
export const feedbackKinds = Object.keys(feedbackKindRegistry) as [FeedbackKind, ...FeedbackKind[]];

/** The kinds that carry a scalar reward (and so an evidence weight). */
export type ScalarFeedbackKind = {
  [K in FeedbackKind]: Registry[K]['reward'] extends { evidenceWeight: number } ? K : never;
}[FeedbackKind];
export const scalarFeedbackKinds = feedbackKinds.filter(
  (k) => 'evidenceWeight' in feedbackKindRegistry[k].reward,
) as ScalarFeedbackKind[];

/** The kinds whose events become pairwise evidence (what dataset builds load besides rewards). */
export const pairwiseFeedbackKinds: FeedbackKind[] = feedbackKinds.filter(
  (k) => (feedbackKindRegistry[k] as { pairwise?: true }).pairwise,
);

type KindInput = Registry[FeedbackKind]['input'];
/** One feedback event (`POST /api/v1/feedback`), discriminated by `kind`. */
export const FeedbackInput = z.discriminatedUnion(
  'kind',
  feedbackKinds.map((k) => feedbackKindRegistry[k].input) as [KindInput, ...KindInput[]],
);
export type FeedbackInput = z.input<typeof FeedbackInput>;
export type ParsedFeedback = z.output<typeof FeedbackInput>;

/** A feedback event as stored: one row shape for every kind. */
export interface Feedback {
  id: string;
  projectId: string;
  interactionId: string;
  raterId: string;
  source: FeedbackSource;
  kind: FeedbackKind;
  /** thumbs: 1 or -1; stars: the number; implicit: its optional magnitude. */
  value: number | null;
  /** thumbs: up/down; implicit: the signal; preference: the choice; stars: the scale name. */
  label: string | null;
  /** comment and correction text. */
  text: string | null;
  /** criteria: { scores }; preference: { other } or { ranking }; correction: { message }. */
  data: Record<string, unknown> | null;
  idempotencyKey: string | null;
  metadata: Record<string, unknown>;
  createdAt: number;
  receivedAt: number;
  /** Whether this is the latest event of its (interaction, rater, kind): the one that counts. */
  current: boolean;
}

/** The descriptor of a kind, typed loosely enough to call with any event of that kind. */
export interface AnyFeedbackKind {
  label: string;
  store: (f: ParsedFeedback) => FeedbackFields;
  toInput: (row: FeedbackFields) => Record<string, unknown>;
  reward: { of: RewardOf; evidenceWeight: number } | { none: string };
  checkScales?: (
    f: ParsedFeedback,
    configs: ReadonlyMap<string, ScoreConfig>,
    at: (field: string) => string,
  ) => void;
  interactionIds?: (f: { interactionId: string; other?: string; ranking?: string[] }) => string[];
}

/** A kind's descriptor (each descriptor only ever sees events of its own kind). */
export function feedbackKind(kind: FeedbackKind): AnyFeedbackKind {
  return feedbackKindRegistry[kind] as unknown as AnyFeedbackKind;
}

/** What the Python SDK and the web app read (written by scripts/write-registries.ts). */
export function feedbackKindsJson() {
  return {
    generatedFrom: 'packages/core/src/feedback-kinds.ts (node --import tsx scripts/write-registries.ts)',
    kinds: feedbackKinds.map((k) => ({ kind: k, label: feedbackKindRegistry[k].label })),
  };
}
