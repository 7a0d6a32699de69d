import { z } from 'zod';
import { ClientId, Metadata, Timestamp } from './common.js';

export const FeedbackSource = z.enum(['user', 'annotator', 'judge', 'implicit']);
export type FeedbackSource = z.infer<typeof FeedbackSource>;

export const implicitSignals = ['copied', 'regenerated', 'edited', 'abandoned'] as const;
export type ImplicitSignal = (typeof implicitSignals)[number];

/** The fields every feedback event has, whatever its kind (each kind's schema adds its own). */
export const feedbackCommon = {
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
