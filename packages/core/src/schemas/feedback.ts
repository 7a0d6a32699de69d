import { z } from 'zod';
import { ClientId, Metadata, Timestamp } from './common.js';
import { ChatMessage } from './interaction.js';

export const FeedbackSource = z.enum(['user', 'annotator', 'judge', 'implicit']);
export type FeedbackSource = z.infer<typeof FeedbackSource>;

export const feedbackKinds = [
  'thumbs',
  'stars',
  'criteria',
  'comment',
  'correction',
  'preference',
  'implicit',
] as const;
export type FeedbackKind = (typeof feedbackKinds)[number];

export const implicitSignals = ['copied', 'regenerated', 'edited', 'abandoned'] as const;
export type ImplicitSignal = (typeof implicitSignals)[number];

const common = {
  interactionId: ClientId,
  /** Who rated. Defaults to the interaction's end user for source `user`, else `anonymous`. */
  raterId: z.string().min(1).max(200).optional(),
  source: FeedbackSource.default('user'),
  /** Makes the write idempotent: a repeated key returns the first event and writes nothing. */
  idempotencyKey: z.string().min(1).max(200).optional(),
  metadata: Metadata.optional(),
  /** Ignored from a public key (the server's time); never in the future. */
  createdAt: Timestamp.optional(),
  /**
   * Required with a public key: the token the gateway returned as `x-ratchet-feedback-token` (or
   * `POST /api/v1/interactions` as `feedbackToken`) for this interaction. Ignored with a secret key.
   */
  feedbackToken: z
    .string()
    .min(1)
    .max(200)
    .optional()
    .describe(
      'Required with a public key: the x-ratchet-feedback-token the gateway returned for this interaction. Ignored with a secret key.',
    ),
};

const Thumbs = z.strictObject({ ...common, kind: z.literal('thumbs'), value: z.enum(['up', 'down']) });

const Stars = z.strictObject({
  ...common,
  kind: z.literal('stars'),
  value: z.number().finite(),
  /** The score config whose scale applies; `stars` (1..5 by default) when absent. */
  scale: z.string().min(1).max(64).default('stars'),
});

const Criteria = z.strictObject({
  ...common,
  kind: z.literal('criteria'),
  /** Criterion name to score: a number on its numeric scale, or one of its categories. */
  scores: z
    .record(z.string().min(1).max(64), z.union([z.number().finite(), z.string().min(1).max(100)]))
    .refine((s) => Object.keys(s).length > 0, 'needs at least one criterion'),
});

const Comment = z.strictObject({
  ...common,
  kind: z.literal('comment'),
  text: z.string().min(1).max(20_000),
});

const Correction = z.strictObject({
  ...common,
  kind: z.literal('correction'),
  /** The output the rater wanted instead. */
  text: z.string().min(1).max(100_000),
  /** Optionally the same as a full message (e.g. with tool calls). */
  message: ChatMessage.optional(),
});

/**
 * Pairwise (`other` with `choice`: is this interaction better than the other one?) or a ranking of
 * interactions answering the same prompt, best first, that includes this one.
 */
const Preference = z
  .strictObject({
    ...common,
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

const Implicit = z.strictObject({
  ...common,
  kind: z.literal('implicit'),
  signal: z.enum(implicitSignals),
  /** Optional magnitude, e.g. the share of the answer that was edited (0..1). */
  value: z.number().finite().optional(),
});

/** One feedback event (`POST /api/v1/feedback`), discriminated by `kind`. */
export const FeedbackInput = z.discriminatedUnion('kind', [
  Thumbs,
  Stars,
  Criteria,
  Comment,
  Correction,
  Preference,
  Implicit,
]);
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
