import { z } from 'zod';
import { parseInput } from '../errors.js';
import type { SeededRandom } from '../random.js';

/**
 * The demo domain (worker/ratchet_worker/tiny/domain.json): a customer-support assistant whose
 * answers vary along four axes. The tiny policy is trained on it, simulated users rate its
 * answers by it, and the oracle measures true quality with it. One file, read by both languages.
 */
const Intent = z.object({
  id: z.string().min(1),
  prompts: z.array(z.string().min(1)).min(1),
  correct: z.array(z.string().min(1)).min(1),
  wrong: z.array(z.string().min(1)).min(1),
  correct_markers: z.array(z.string().min(1)).min(1),
  wrong_markers: z.array(z.string().min(1)).min(1),
});

export const SupportDomain = z.object({
  name: z.string(),
  version: z.number().int(),
  slots: z.record(z.string(), z.array(z.string().min(1)).min(1)),
  intents: z.array(Intent).min(1),
  style: z.object({
    polite_openers: z.array(z.string()).min(1),
    polite_closers: z.array(z.string()).min(1),
    curt_openers: z.array(z.string()).min(1),
    rambling_fillers: z.array(z.string()).min(1),
    unsafe_sentences: z.array(z.string()).min(1),
  }),
  markers: z.object({
    polite: z.array(z.string().min(1)).min(1),
    curt: z.array(z.string().min(1)).min(1),
    rambling: z.array(z.string().min(1)).min(1),
    unsafe: z.array(z.string().min(1)).min(1),
  }),
});
export type SupportDomain = z.infer<typeof SupportDomain>;

export function parseSupportDomain(value: unknown): SupportDomain {
  return parseInput(SupportDomain, value, 'domain');
}

/** The four axes an answer is good or bad on. */
export const answerAxes = ['correct', 'polite', 'concise', 'safe'] as const;
export type AnswerAxis = (typeof answerAxes)[number];
export type AnswerQualities = Record<AnswerAxis, boolean>;

export interface JudgedAnswer extends AnswerQualities {
  intent: string | null;
  /** Good on all four axes. */
  good: boolean;
  /** Mean over the axes of +1 (good side) or -1 (bad side), in [-1, 1]. */
  score: number;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const patternCache = new WeakMap<SupportDomain, { pattern: RegExp; intent: string }[]>();

function promptPatterns(domain: SupportDomain): { pattern: RegExp; intent: string }[] {
  let patterns = patternCache.get(domain);
  if (!patterns) {
    // Slots become wildcards; the rest of each template must match literally (as domain.py does).
    patterns = domain.intents.flatMap((intent) =>
      intent.prompts.map((template) => ({
        intent: intent.id,
        pattern: new RegExp(
          `^${template
            .split(/(\{[a-z_]+\})/)
            .map((p) => (p.startsWith('{') ? '.+?' : escapeRegExp(p)))
            .join('')}$`,
          'i',
        ),
      })),
    );
    patternCache.set(domain, patterns);
  }
  return patterns;
}

/** The intent whose prompt template matches this user message, if any. */
export function intentOf(domain: SupportDomain, message: string): string | null {
  const text = message.trim();
  return promptPatterns(domain).find((p) => p.pattern.test(text))?.intent ?? null;
}

const containsAny = (text: string, markers: readonly string[]) => {
  const lowered = text.toLowerCase();
  return markers.some((m) => lowered.includes(m.toLowerCase()));
};

/**
 * The oracle: an answer's qualities recovered from its text with the domain's markers (the same
 * rules as the worker's `judge`). Used to simulate users and to measure true quality, never as a
 * signal the loop learns from.
 */
export function judgeAnswer(domain: SupportDomain, userMessage: string, answer: string): JudgedAnswer {
  const intent = intentOf(domain, userMessage);
  const chosen = domain.intents.filter((i) => i.id === intent);
  const intents = chosen.length > 0 ? chosen : domain.intents;
  const qualities: AnswerQualities = {
    correct:
      containsAny(
        answer,
        intents.flatMap((i) => i.correct_markers),
      ) &&
      !containsAny(
        answer,
        intents.flatMap((i) => i.wrong_markers),
      ),
    polite: containsAny(answer, domain.markers.polite) && !containsAny(answer, domain.markers.curt),
    concise: !containsAny(answer, domain.markers.rambling),
    safe: !containsAny(answer, domain.markers.unsafe),
  };
  const score = answerAxes.reduce((s, axis) => s + (qualities[axis] ? 1 : -1), 0) / answerAxes.length;
  return { intent, ...qualities, good: answerAxes.every((a) => qualities[a]), score };
}

function fill(template: string, slots: Record<string, string>): string {
  return template.replace(/\{([a-z_]+)\}/g, (whole, name: string) => slots[name] ?? whole);
}

export function sampleSlots(domain: SupportDomain, rng: SeededRandom): Record<string, string> {
  return Object.fromEntries(Object.entries(domain.slots).map(([k, values]) => [k, rng.pick(values)]));
}

export interface SampledPrompt {
  intent: string;
  text: string;
  slots: Record<string, string>;
}

/** A user message for a random intent (or the given one). */
export function samplePrompt(domain: SupportDomain, rng: SeededRandom, intentId?: string): SampledPrompt {
  const intent = intentId
    ? domain.intents.find((i) => i.id === intentId)
    : domain.intents[rng.int(domain.intents.length)];
  if (!intent) throw new Error(`unknown intent "${intentId}"`);
  const slots = sampleSlots(domain, rng);
  return { intent: intent.id, text: fill(rng.pick(intent.prompts), slots), slots };
}

/**
 * An answer with the given qualities, composed from the domain's parts (opener, core, fillers,
 * unsafe sentence, closer): what a simulated user writes as a correction (all good), and what
 * the tests use as known-good and known-bad answers.
 */
export function composeAnswer(
  domain: SupportDomain,
  rng: SeededRandom,
  intentId: string,
  qualities: AnswerQualities,
  slots: Record<string, string> = sampleSlots(domain, rng),
): string {
  const intent = domain.intents.find((i) => i.id === intentId);
  if (!intent) throw new Error(`unknown intent "${intentId}"`);
  const s = domain.style;
  const parts = [
    rng.pick(qualities.polite ? s.polite_openers : s.curt_openers),
    rng.pick(qualities.correct ? intent.correct : intent.wrong),
  ];
  if (!qualities.concise) parts.push(rng.pick(s.rambling_fillers));
  if (!qualities.safe) parts.push(rng.pick(s.unsafe_sentences));
  if (qualities.polite && rng.bernoulli(0.5)) parts.push(rng.pick(s.polite_closers));
  return fill(parts.join(' '), slots);
}
