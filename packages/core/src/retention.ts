import { z } from 'zod';

/**
 * A project's retention policy: interactions older than `days` are deleted (with their feedback,
 * everywhere deletion reaches) on `ratchet serve`'s schedule, except, while
 * `keepProductionTrainingData` holds, those in a dataset version a production model was trained
 * on (the evidence behind what is served stays until the model leaves production).
 */
export const RetentionPolicy = z.strictObject({
  days: z.number().int().min(1).max(36_500),
  keepProductionTrainingData: z.boolean().default(true),
});
export type RetentionPolicy = z.output<typeof RetentionPolicy>;
export type RetentionPolicyInput = z.input<typeof RetentionPolicy>;

export const dayMs = 24 * 3600 * 1000;
