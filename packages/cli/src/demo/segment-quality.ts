import type { Persona, SupportDomain } from '@ratchet/core';
import { measureTrueQuality } from './traffic.js';

export interface SegmentQualityOptions {
  /** An OpenAI-compatible endpoint serving every model named (the worker), without /v1. */
  baseUrl: string;
  apiKey?: string;
  domain: SupportDomain;
  population: readonly Persona[];
  /** Per segment, the models to compare (e.g. { base, global, segment adapter }). */
  models: Record<string, Record<string, string>>;
  /** Prompts per segment and model. */
  prompts: number;
  /** Held out: a seed the training traffic did not use. */
  seed: number;
  maxTokens?: number;
  concurrency?: number;
}

/**
 * The oracle's view per segment, for reports and benchmarks only (the loop never sees it): each
 * model answers the same prompts, asked by people of that segment only, and gets the share of
 * answers those people would like.
 */
export async function measureSegmentQuality(
  o: SegmentQualityOptions,
): Promise<Record<string, Record<string, { trueQuality: number; goodShare: number; n: number }>>> {
  const out: Record<string, Record<string, { trueQuality: number; goodShare: number; n: number }>> = {};
  for (const [segment, models] of Object.entries(o.models)) {
    const people = o.population.filter((p) => p.segment === segment);
    if (people.length === 0) throw new Error(`segment "${segment}" has nobody in the population`);
    out[segment] = {};
    for (const [label, model] of Object.entries(models)) {
      out[segment][label] = await measureTrueQuality({
        baseUrl: o.baseUrl,
        apiKey: o.apiKey,
        model,
        domain: o.domain,
        population: people,
        prompts: o.prompts,
        seed: o.seed,
        maxTokens: o.maxTokens,
        concurrency: o.concurrency,
      });
    }
  }
  return out;
}
