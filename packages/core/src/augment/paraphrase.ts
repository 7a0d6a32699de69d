import { z } from 'zod';

/**
 * Where paraphrases come from: any OpenAI-compatible chat endpoint (the worker, vLLM, OpenAI...).
 * The configuration is core's (a dataset spec names it); the client that calls it is the loop's
 * (loop/src/augment/paraphrase.ts), as core does no I/O.
 */
export const ParaphraseConfig = z.strictObject({
  baseURL: z.url(),
  apiKey: z.string().optional(),
  model: z.string().min(1),
  temperature: z.number().min(0).max(2).default(0.7),
  timeoutMs: z.number().int().positive().default(60_000),
});
export type ParaphraseConfig = z.input<typeof ParaphraseConfig>;
