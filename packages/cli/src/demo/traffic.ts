import { readFileSync } from 'node:fs';
import {
  judgeAnswer,
  type Persona,
  parseSupportDomain,
  SeededRandom,
  type SupportDomain,
  samplePrompt,
  simulateFeedback,
  wouldLike,
} from '@ratchet/core';
import { Ratchet } from '@ratchet/sdk';
import OpenAI from 'openai';

/** The demo domain file the worker's tiny policy is built from (one file for both languages). */
export const demoDomainPath = new URL('../../../../worker/ratchet_worker/tiny/domain.json', import.meta.url);

export function loadDemoDomain(path: string | URL = demoDomainPath): SupportDomain {
  return parseSupportDomain(JSON.parse(readFileSync(path, 'utf8')));
}

export interface TrafficOptions {
  /** The Ratchet server: the gateway at /v1, the feedback API at /api/v1. */
  baseUrl: string;
  /** A secret key of the project. */
  apiKey: string;
  /** The route the application calls (the `model` it sends). */
  route: string;
  domain: SupportDomain;
  population: readonly Persona[];
  /** How many chats (one user message, one answer each). */
  chats: number;
  seed: number;
  concurrency?: number;
  temperature?: number;
  maxTokens?: number;
  /**
   * Send each person's segment as `x-ratchet-segment` (an app that knows its user's plan or
   * preferences), so the gateway tags the call and routes it to the segment's adapter, if any.
   */
  sendSegment?: boolean;
  onProgress?: (done: number, total: number) => void;
}

/** What one variant of the route got in a simulation, with the oracle's view beside the ratings. */
export interface VariantTraffic {
  chats: number;
  /** Share of answers the users, rating honestly and without noise, would like (the oracle). */
  trueQuality: number;
  /** Share good on all four axes. */
  goodShare: number;
  thumbsUp: number;
  thumbsDown: number;
  feedbackEvents: number;
}

export interface TrafficReport {
  variants: Record<string, VariantTraffic>;
  /** The same tallies by the people's segment (whatever variant served them). */
  segments: Record<string, VariantTraffic>;
  chats: number;
  feedbackEvents: number;
  errors: number;
  firstError?: string;
}

function emptyVariant(): VariantTraffic {
  return { chats: 0, trueQuality: 0, goodShare: 0, thumbsUp: 0, thumbsDown: 0, feedbackEvents: 0 };
}

/** One simulated chat, drawn before any call is made. */
export interface PlannedChat {
  persona: Persona;
  prompt: ReturnType<typeof samplePrompt>;
  /** Seeds the person's reaction to the answer (simulateFeedback). */
  seed: number;
  /** Sent as the request's `seed`: the model's sampling of this answer (the worker honours it). */
  answerSeed: number;
}

/**
 * Every chat's person, prompt, reaction and answer sampling, drawn up front from the traffic's
 * seed alone, so that a run is reproducible whatever order concurrent calls finish in. The answer
 * seeds come from their own stream, so the people and prompts of a seed are what they were before
 * answers were seeded.
 */
export function planChats(
  o: Pick<TrafficOptions, 'chats' | 'seed' | 'population' | 'domain'>,
): PlannedChat[] {
  const rng = new SeededRandom(o.seed);
  // A different stream from the same seed (the mixing constant only separates the two).
  const answers = new SeededRandom(o.seed + 0x9e3779b9);
  return Array.from({ length: o.chats }, () => ({
    persona: o.population[rng.int(o.population.length)]!,
    prompt: samplePrompt(o.domain, rng),
    seed: rng.nextUint32(),
    // Below 2^31: any server's seed parameter takes it (the worker adds the choice index).
    answerSeed: answers.nextUint32() >>> 1,
  }));
}

/**
 * Simulated users of an application: each chat picks a person and a question, asks the route
 * through the gateway with the official `openai` client (the person is the end user, so the
 * gateway's variant assignment stays sticky), then sends whatever that person would send through
 * the SDK, tied to the returned interaction id. The oracle's view of each answer is tallied per
 * variant for measurement only; nothing of it reaches the store.
 */
export async function simulateTraffic(o: TrafficOptions): Promise<TrafficReport> {
  const openai = new OpenAI({ baseURL: `${o.baseUrl}/v1`, apiKey: o.apiKey, maxRetries: 2 });
  const ratchet = new Ratchet({ baseUrl: o.baseUrl, apiKey: o.apiKey, flushOnExit: false });
  const plan = planChats(o);
  const report: TrafficReport = { variants: {}, segments: {}, chats: 0, feedbackEvents: 0, errors: 0 };
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (let i = next++; i < plan.length; i = next++) {
      const { persona, prompt, seed, answerSeed } = plan[i]!;
      try {
        const { data, response } = await openai.chat.completions
          .create(
            {
              model: o.route,
              messages: [{ role: 'user', content: prompt.text }],
              user: persona.id,
              temperature: o.temperature ?? 0.8,
              max_tokens: o.maxTokens ?? 96,
              seed: answerSeed,
            },
            o.sendSegment ? { headers: { 'x-ratchet-segment': persona.segment } } : undefined,
          )
          .withResponse();
        const interactionId = response.headers.get('x-ratchet-interaction-id');
        const variant = response.headers.get('x-ratchet-variant') ?? data.model;
        const answer = data.choices[0]?.message.content ?? '';
        const judged = judgeAnswer(o.domain, prompt.text, answer);
        const events = simulateFeedback(
          persona,
          { domain: o.domain, judged, slots: prompt.slots },
          new SeededRandom(seed),
        );
        report.variants[variant] ??= emptyVariant();
        report.segments[persona.segment] ??= emptyVariant();
        const tallies = [report.variants[variant]!, report.segments[persona.segment]!];
        const liked = wouldLike(persona, judged);
        for (const v of tallies) {
          v.chats++;
          if (liked) v.trueQuality++;
          if (judged.good) v.goodShare++;
        }
        for (const e of events) {
          if (!interactionId) break;
          ratchet.feedback({
            ...e,
            interactionId,
            raterId: e.source === 'implicit' ? `implicit:${persona.id}` : persona.id,
          });
          for (const v of tallies) {
            v.feedbackEvents++;
            if (e.kind === 'thumbs') e.value === 'up' ? v.thumbsUp++ : v.thumbsDown++;
          }
        }
        report.chats++;
      } catch (err) {
        report.errors++;
        report.firstError ??= err instanceof Error ? err.message : String(err);
      }
      o.onProgress?.(++done, plan.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 4) }, worker));
  await ratchet.shutdown();
  for (const v of Object.values(report.variants)) report.feedbackEvents += v.feedbackEvents;
  for (const v of [...Object.values(report.variants), ...Object.values(report.segments)]) {
    v.trueQuality = v.chats ? v.trueQuality / v.chats : 0;
    v.goodShare = v.chats ? v.goodShare / v.chats : 0;
  }
  return report;
}

export interface QualityProbeOptions {
  /** An OpenAI-compatible endpoint serving the model (the worker, or the gateway). */
  baseUrl: string;
  apiKey?: string;
  model: string;
  domain: SupportDomain;
  population: readonly Persona[];
  prompts: number;
  seed: number;
  temperature?: number;
  maxTokens?: number;
  concurrency?: number;
}

/**
 * The oracle's measure of a model: over random people and questions, the share of its answers
 * the person would like. For reports and benchmarks only; the loop never sees it.
 */
export async function measureTrueQuality(
  o: QualityProbeOptions,
): Promise<{ trueQuality: number; goodShare: number; n: number }> {
  const openai = new OpenAI({ baseURL: `${o.baseUrl}/v1`, apiKey: o.apiKey ?? 'none', maxRetries: 2 });
  const rng = new SeededRandom(o.seed);
  const plan = Array.from({ length: o.prompts }, () => ({
    persona: o.population[rng.int(o.population.length)]!,
    prompt: samplePrompt(o.domain, rng),
  }));
  let liked = 0;
  let good = 0;
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < plan.length; i = next++) {
      const { persona, prompt } = plan[i]!;
      const completion = await openai.chat.completions.create({
        model: o.model,
        messages: [{ role: 'user', content: prompt.text }],
        temperature: o.temperature ?? 0.8,
        max_tokens: o.maxTokens ?? 96,
        seed: i,
      });
      const judged = judgeAnswer(o.domain, prompt.text, completion.choices[0]?.message.content ?? '');
      if (wouldLike(persona, judged)) liked++;
      if (judged.good) good++;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 2) }, worker));
  return { trueQuality: liked / plan.length, goodShare: good / plan.length, n: plan.length };
}
