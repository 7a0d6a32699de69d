import { z } from 'zod';
import { parseInput } from '../errors.js';
import { SeededRandom } from '../random.js';
import { type AnswerAxis, type AnswerQualities, answerAxes } from './domain.js';

/** How a simulated person gives feedback, when they give any. */
export const ratingHabits = ['thumbs', 'stars', 'criteria', 'comment', 'correction'] as const;
export type RatingHabit = (typeof ratingHabits)[number];

/**
 * A simulated user: latent preferences over the answer axes (what they care about), a segment
 * (groups of users who care about different things, for personalization), a rating habit, how
 * often they rate at all, a personal bias (lenient or harsh), noise, and whether they are an
 * adversary who rates the opposite of what they think.
 */
export interface Persona {
  id: string;
  segment: string;
  /**
   * Weights over the axes, their absolute values summing to 1; a negative weight means the
   * person prefers the "bad" side of that axis (pleasantries that annoy someone in a hurry).
   */
  weights: Record<AnswerAxis, number>;
  habit: RatingHabit;
  /** Probability of rating an answer at all (most people rate nothing). */
  rateProbability: number;
  /** Added to the utility before thresholding: > 0 lenient, < 0 harsh. */
  bias: number;
  /** Standard deviation of the noise added to each judgement. */
  noise: number;
  adversarial: boolean;
}

/** Segments of the demo population: each weighs the four axes its own way. */
export const defaultSegments: Record<string, Record<AnswerAxis, number>> = {
  // Wants the right answer, politely; cares little about length.
  mainstream: { correct: 0.45, polite: 0.25, concise: 0.1, safe: 0.2 },
  // In a hurry: a correct short answer, manners optional; rambling spoils even a polite one.
  busy: { correct: 0.35, polite: 0.05, concise: 0.4, safe: 0.2 },
  // Courtesy first: a curt answer is a bad one, however short.
  courteous: { correct: 0.35, polite: 0.4, concise: 0.05, safe: 0.2 },
  // Pleasantries annoy them: a curt correct answer is liked, a polite one is not. Not in the
  // default population (no one answer style then pleases everyone, which the demo assumes);
  // opposite the courteous, it is what per-segment adapters exist for (bench/personalize.ts).
  brisk: { correct: 0.35, polite: -0.4, concise: 0.05, safe: 0.2 },
};

export const PopulationOptions = z.strictObject({
  size: z.number().int().min(1).max(1_000_000).default(500),
  seed: z.number().int().default(0),
  /** Segment name to its share of the population (normalized). */
  segmentShares: z
    .record(z.string(), z.number().min(0))
    .default({ mainstream: 0.6, busy: 0.25, courteous: 0.15 }),
  /** Share of people who ever rate; the rest never do. */
  raterShare: z.number().min(0).max(1).default(0.35),
  /** Among raters, how often they rate an answer they get. */
  rateProbability: z.number().min(0).max(1).default(0.6),
  /** Among raters, the share of adversaries (rate the opposite of what they think). */
  adversarialShare: z.number().min(0).max(1).default(0.1),
  /** Mix of habits among raters. */
  habitShares: z
    .partialRecord(z.enum(ratingHabits), z.number().min(0))
    .default({ thumbs: 0.55, stars: 0.2, criteria: 0.1, comment: 0.1, correction: 0.05 }),
  biasSd: z.number().min(0).default(0.25),
  noiseSd: z.number().min(0).default(0.2),
});
export type PopulationOptions = z.input<typeof PopulationOptions>;

function pickWeighted<K extends string>(rng: SeededRandom, shares: Partial<Record<K, number>>): K {
  const entries = Object.entries(shares) as [K, number][];
  const total = entries.reduce((s, [, w]) => s + w, 0);
  let u = rng.uniform() * total;
  for (const [k, w] of entries) {
    u -= w;
    if (u < 0) return k;
  }
  return entries[entries.length - 1]![0];
}

/**
 * The demo's populations, named once (the demo's `--population` and the benches use them; the
 * seed is the run's).
 * - `default`: people who rate almost everything (95% of them, 95% of the time), so that a short
 *   demo has enough ratings per round; 10% of raters adversarial.
 * - `realistic`: closer to real use (issue 19): 3 in 10 people ever rate, and they rate 4 answers
 *   in 10, so about 12% of answers are rated; a third of the raters are adversaries; the three
 *   segments weigh the axes differently; and more people, each with fewer chats.
 */
export const populationPresets = {
  default: {
    size: 600,
    raterShare: 0.95,
    rateProbability: 0.95,
    habitShares: { thumbs: 0.75, stars: 0.1, criteria: 0.05, comment: 0.06, correction: 0.04 },
    adversarialShare: 0.1,
  },
  realistic: {
    size: 3000,
    raterShare: 0.3,
    rateProbability: 0.4,
    habitShares: { thumbs: 0.75, stars: 0.1, criteria: 0.05, comment: 0.06, correction: 0.04 },
    adversarialShare: 1 / 3,
  },
} as const satisfies Record<string, PopulationOptions>;
export type PopulationPreset = keyof typeof populationPresets;

/** A seeded population of personas; the same options give the same people. */
export function createPopulation(options: PopulationOptions = {}): Persona[] {
  const o = parseInput(PopulationOptions, options, 'population');
  for (const segment of Object.keys(o.segmentShares))
    if (!defaultSegments[segment])
      throw new Error(
        `population.segmentShares: unknown segment "${segment}" (known: ${Object.keys(defaultSegments).join(', ')})`,
      );
  const rng = new SeededRandom(o.seed);
  return Array.from({ length: o.size }, (_, i) => {
    const segment = pickWeighted(rng, o.segmentShares);
    const rates = rng.bernoulli(o.raterShare);
    return {
      id: `sim-user-${o.seed}-${i}`,
      segment,
      weights: { ...defaultSegments[segment]! },
      habit: pickWeighted(rng, o.habitShares),
      rateProbability: rates ? o.rateProbability : 0,
      bias: rng.normal(0, o.biasSd),
      noise: o.noiseSd,
      adversarial: rates && rng.bernoulli(o.adversarialShare),
    };
  });
}

/** What a persona truly thinks of an answer, in [-1, 1]: the weighted axes, no bias or noise. */
export function personaUtility(persona: Persona, q: AnswerQualities): number {
  return answerAxes.reduce((u, axis) => u + persona.weights[axis] * (q[axis] ? 1 : -1), 0);
}

/** Utility above which an answer is good enough, for an answer that is correct and safe. */
const GOOD_ENOUGH = 0.3;

/**
 * How much this persona, free of bias, noise and malice, likes an answer: > 0 is a thumbs up. A
 * wrong or unsafe answer is never good enough, however polite; above that, the segment's weights
 * decide.
 */
export function likingMargin(persona: Persona, q: AnswerQualities): number {
  return personaUtility(persona, q) - GOOD_ENOUGH - (q.correct && q.safe ? 0 : 0.6);
}

/** The oracle's view: would this person, rating honestly and without noise, give a thumbs up? */
export function wouldLike(persona: Persona, q: AnswerQualities): boolean {
  return likingMargin(persona, q) > 0;
}
