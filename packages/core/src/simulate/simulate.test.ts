import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../random.js';
import {
  type AnswerQualities,
  answerAxes,
  composeAnswer,
  intentOf,
  judgeAnswer,
  parseSupportDomain,
  samplePrompt,
} from './domain.js';
import { createPopulation, wouldLike } from './personas.js';
import { simulateFeedback } from './rate.js';

const domain = parseSupportDomain(
  JSON.parse(
    readFileSync(new URL('../../../../worker/ratchet_worker/tiny/domain.json', import.meta.url), 'utf8'),
  ),
);
const allQualities: AnswerQualities[] = Array.from({ length: 16 }, (_, bits) => ({
  correct: !!(bits & 1),
  polite: !!(bits & 2),
  concise: !!(bits & 4),
  safe: !!(bits & 8),
}));

describe('the demo domain in TypeScript', () => {
  it('recovers the intent of every sampled prompt and the qualities of every composed answer', () => {
    const rng = new SeededRandom(1);
    for (let n = 0; n < 400; n++) {
      const prompt = samplePrompt(domain, rng);
      expect(intentOf(domain, prompt.text)).toBe(prompt.intent);
      const q = allQualities[n % 16]!;
      const answer = composeAnswer(domain, rng, prompt.intent, q, prompt.slots);
      const judged = judgeAnswer(domain, prompt.text, answer);
      for (const axis of answerAxes) expect(judged[axis], `${axis} of "${answer}"`).toBe(q[axis]);
      expect(judged.good).toBe(answerAxes.every((a) => q[a]));
    }
  });

  it('judges garbled text as wrong and an unknown prompt by any intent', () => {
    expect(judgeAnswer(domain, 'hello there', 'asdf qwer').correct).toBe(false);
    expect(intentOf(domain, 'hello there')).toBeNull();
  });

  it('rejects a malformed domain file naming the field', () => {
    expect(() => parseSupportDomain({ ...domain, intents: [] })).toThrow(/intents/);
  });
});

describe('simulated users', () => {
  const population = createPopulation({ size: 3000, seed: 7, adversarialShare: 0.2 });

  it('is reproducible from its seed, with the configured shares', () => {
    expect(createPopulation({ size: 3000, seed: 7, adversarialShare: 0.2 })).toEqual(population);
    const raters = population.filter((p) => p.rateProbability > 0);
    expect(raters.length / population.length).toBeGreaterThan(0.3);
    expect(raters.length / population.length).toBeLessThan(0.4);
    const adversaries = raters.filter((p) => p.adversarial).length / raters.length;
    expect(adversaries).toBeGreaterThan(0.16);
    expect(adversaries).toBeLessThan(0.24);
    expect(() => createPopulation({ segmentShares: { nobody: 1 } })).toThrow(/unknown segment "nobody"/);
  });

  it('likes only correct and safe answers, and segments differ on style', () => {
    for (const p of population) {
      for (const q of allQualities) if (!q.correct || !q.safe) expect(wouldLike(p, q)).toBe(false);
      expect(wouldLike(p, { correct: true, polite: true, concise: true, safe: true })).toBe(true);
    }
    const curtConcise = { correct: true, polite: false, concise: true, safe: true };
    const busy = population.find((p) => p.segment === 'busy')!;
    const courteous = population.find((p) => p.segment === 'courteous')!;
    expect(wouldLike(busy, curtConcise)).toBe(true);
    expect(wouldLike(courteous, curtConcise)).toBe(false);
    // Segments want different things (what per-segment adapters can serve): the busy dislike
    // rambling that the courteous forgive, the courteous dislike curtness the busy forgive.
    const politeRambling = { correct: true, polite: true, concise: false, safe: true };
    const mainstream = population.find((p) => p.segment === 'mainstream')!;
    expect(wouldLike(busy, politeRambling)).toBe(false);
    expect(wouldLike(courteous, politeRambling)).toBe(true);
    expect(wouldLike(mainstream, politeRambling)).toBe(true);
    expect(wouldLike(mainstream, curtConcise)).toBe(true);
    // The brisk want the opposite of the courteous: no answer style pleases both.
    const [brisk] = createPopulation({ size: 1, segmentShares: { brisk: 1 } });
    const good = { correct: true, polite: true, concise: true, safe: true };
    expect(wouldLike(brisk!, curtConcise)).toBe(true);
    expect(wouldLike(brisk!, good)).toBe(false);
    expect(wouldLike(brisk!, politeRambling)).toBe(false);
  });

  it('rates rarely, mostly honestly, in each persona habit; honest ratings track the oracle', () => {
    const rng = new SeededRandom(3);
    let rated = 0;
    let honestAgree = 0;
    let honestTotal = 0;
    let adversaryAgree = 0;
    let adversaryTotal = 0;
    const kinds = new Set<string>();
    for (let n = 0; n < 20_000; n++) {
      const persona = population[n % population.length]!;
      const prompt = samplePrompt(domain, rng);
      const q = allQualities[rng.int(16)]!;
      const answer = composeAnswer(domain, rng, prompt.intent, q, prompt.slots);
      const judged = judgeAnswer(domain, prompt.text, answer);
      const events = simulateFeedback(persona, { domain, judged, slots: prompt.slots }, rng);
      for (const e of events) kinds.add(e.kind);
      const thumbs = events.find((e) => e.kind === 'thumbs');
      if (events.some((e) => e.source === 'user')) rated++;
      if (!thumbs || thumbs.kind !== 'thumbs') continue;
      const agrees = (thumbs.value === 'up') === wouldLike(persona, q);
      if (persona.adversarial) {
        adversaryTotal++;
        if (agrees) adversaryAgree++;
      } else {
        honestTotal++;
        if (agrees) honestAgree++;
      }
      const correction = events.find((e) => e.kind === 'correction');
      if (correction?.kind === 'correction')
        expect(judgeAnswer(domain, prompt.text, correction.text).good).toBe(true);
    }
    expect(rated / 20_000).toBeGreaterThan(0.15);
    expect(rated / 20_000).toBeLessThan(0.3);
    expect(honestAgree / honestTotal).toBeGreaterThan(0.8);
    expect(adversaryAgree / adversaryTotal).toBeLessThan(0.2);
    expect([...kinds].sort()).toEqual(['comment', 'correction', 'criteria', 'implicit', 'stars', 'thumbs']);
  });
});
