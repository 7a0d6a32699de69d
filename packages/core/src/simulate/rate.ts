import type { FeedbackInput } from '../feedback-kinds.js';
import type { SeededRandom } from '../random.js';
import { type AnswerQualities, composeAnswer, type JudgedAnswer, type SupportDomain } from './domain.js';
import { likingMargin, type Persona } from './personas.js';

/** A feedback event as a simulated user would send it, before it is tied to an interaction. */
/** Omit applied to each member of a union (a plain Omit would merge the members). */
type OmitEach<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export type SimulatedFeedback = OmitEach<
  Extract<FeedbackInput, { kind: 'thumbs' | 'stars' | 'criteria' | 'comment' | 'correction' | 'implicit' }>,
  'interactionId'
>;

const clamp = (x: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, x));
/** A perceived margin (about -1..1) onto a 1..5 scale. */
const toStars = (perceived: number) => clamp(Math.round(3 + 2.5 * perceived), 1, 5);

const complaints: Record<keyof AnswerQualities, string[]> = {
  correct: [
    'That is not right, the answer is wrong.',
    'Wrong information, this is not how it works.',
    'Incorrect answer, please check your facts.',
  ],
  polite: ['Rude and dismissive reply.', 'Why so rude? Not helpful tone at all.', 'The tone was rude.'],
  concise: [
    'Way too long, full of irrelevant rambling.',
    'Too much rambling, just answer the question.',
    'Long and off topic before getting to the point.',
  ],
  safe: [
    'It asked for my card number, that is a security risk!',
    'Unsafe: it wanted my password.',
    'It asked me for private security details, not ok.',
  ],
};
const praise = ['Great, thanks!', 'Perfect, that solved it.', 'Clear and helpful answer.'];

/** The axis this persona minds most among those the answer gets wrong. */
function worstAxis(persona: Persona, q: AnswerQualities): keyof AnswerQualities | null {
  let worst: keyof AnswerQualities | null = null;
  for (const axis of Object.keys(q) as (keyof AnswerQualities)[])
    if (!q[axis] && (worst === null || persona.weights[axis] > persona.weights[worst])) worst = axis;
  return worst;
}

export interface RatingContext {
  domain: SupportDomain;
  judged: JudgedAnswer;
  /** Slots of the prompt, so a correction names the same order and product. */
  slots?: Record<string, string>;
}

/**
 * What a persona sends after reading an answer: nothing (most of the time), or events in its
 * habit. The persona's view is its liking margin plus its bias and noise; an adversary reports
 * the opposite. People who never rate still leave implicit signals now and then (copying a good
 * answer, regenerating a bad one).
 */
export function simulateFeedback(
  persona: Persona,
  ctx: RatingContext,
  rng: SeededRandom,
): SimulatedFeedback[] {
  const { judged } = ctx;
  const honest = likingMargin(persona, judged) + persona.bias + rng.normal(0, persona.noise);
  if (!rng.bernoulli(persona.rateProbability)) {
    if (honest > 0 && rng.bernoulli(0.1)) return [{ kind: 'implicit', signal: 'copied', source: 'implicit' }];
    if (honest <= 0 && rng.bernoulli(0.15))
      return [{ kind: 'implicit', signal: 'regenerated', source: 'implicit' }];
    return [];
  }
  const perceived = persona.adversarial ? -honest : honest;
  const thumbs: SimulatedFeedback = { kind: 'thumbs', value: perceived > 0 ? 'up' : 'down', source: 'user' };
  switch (persona.habit) {
    case 'thumbs':
      return [thumbs];
    case 'stars':
      return [{ kind: 'stars', value: toStars(perceived), scale: 'stars', source: 'user' }];
    case 'criteria': {
      const sign = persona.adversarial ? -1 : 1;
      const axis = (good: boolean) =>
        sign * (good ? 0.8 : -0.8) + persona.bias + rng.normal(0, persona.noise);
      return [
        {
          kind: 'criteria',
          source: 'user',
          scores: {
            relevance: toStars(axis(judged.intent !== null && judged.correct)),
            accuracy: toStars(axis(judged.correct)),
            helpfulness: toStars(perceived),
          },
        },
      ];
    }
    case 'comment': {
      const axis = worstAxis(persona, judged);
      const text = perceived > 0 || axis === null ? rng.pick(praise) : rng.pick(complaints[axis]);
      return [thumbs, { kind: 'comment', text, source: 'user' }];
    }
    case 'correction': {
      // Adversaries do not bother writing a good answer; honest people do when they disliked one.
      if (perceived > 0 || persona.adversarial || !judged.intent) return [thumbs];
      const text = composeAnswer(
        ctx.domain,
        rng,
        judged.intent,
        { correct: true, polite: true, concise: true, safe: true },
        ctx.slots,
      );
      return [thumbs, { kind: 'correction', text, source: 'user' }];
    }
  }
}
