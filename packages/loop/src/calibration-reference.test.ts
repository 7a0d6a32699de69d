import { FeedbackInput, InteractionInput, parseInput, SeededRandom } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { describe, expect, it } from 'vitest';
import { calibrateProject } from './calibrate.js';

/**
 * Support answers where what makes one good is in its words (the right steps, or a refusal that
 * is wrong), each rated by one person only, as most answers are. 60 people rate 12 answers each;
 * 6 of them rate the opposite of what they think; the honest get one in ten wrong.
 */
const good = [
  'open Settings, then Security, and press Reset password',
  'go to Billing and press Download invoice',
  'we refund within five days to the card you paid with',
];
const bad = [
  'passwords can never be changed, open a new account',
  'invoices are not available to customers',
  'refunds are not possible after a purchase',
];
const inverters = new Set(['person-3', 'person-17', 'person-25', 'person-38', 'person-44', 'person-59']);

async function world(url: string) {
  const store = await Store.open(url);
  const projectId = (await store.projects.create('reference')).id;
  const rng = new SeededRandom(19);
  const interactions = [];
  const events = [];
  for (let p = 0; p < 60; p++) {
    const rater = `person-${p}`;
    for (let k = 0; k < 12; k++) {
      const id = `a-${p}-${k}`;
      const isGood = rng.uniform() < 0.55;
      const topic = Math.floor(rng.uniform() * 3);
      const answer = `Thanks for asking. ${(isGood ? good : bad)[topic]}.`;
      interactions.push(
        parseInput(InteractionInput, {
          id,
          model: 'm',
          userId: rater,
          messages: [{ role: 'user', content: `question ${topic} from ${rater}` }],
          output: answer,
        }),
      );
      const thinksGood = rng.uniform() < 0.9 ? isGood : !isGood;
      const up = inverters.has(rater) ? !thinksGood : thinksGood;
      events.push(
        parseInput(FeedbackInput, {
          kind: 'thumbs',
          interactionId: id,
          raterId: rater,
          value: up ? 'up' : 'down',
        }),
      );
    }
  }
  await store.interactions.insert(projectId, interactions);
  await store.feedback.insert(projectId, events);
  return { store, projectId };
}

const flaggedOf = async (store: Store, projectId: string) =>
  (await store.raters.list(projectId, { limit: 1000 })).filter((r) => r.flagged).map((r) => r.id);

for (const target of testDatabases()) {
  describe(`a word-model reference in calibration on ${target.name}`, () => {
    it('flags the raters who invert although nobody else rated their answers, and nobody honest', async () => {
      const { store, projectId } = await world(await target.create());
      try {
        // Without a reference every answer has one rating: nobody can be compared with anyone.
        const plain = await calibrateProject(store, projectId);
        expect(plain.flagged).toBe(0);
        expect(await flaggedOf(store, projectId)).toEqual([]);

        const withReference = await calibrateProject(store, projectId, { reference: 'words' });
        expect(withReference.referenceRatings).toBe(720);
        // People's ratings are counted as before; the reference's are reported apart.
        expect(withReference.ratings).toBe(720);
        expect(withReference.mode).toBe('full');
        const flagged = await flaggedOf(store, projectId);
        // No honest person, and all but at most one inverter (12 ratings each, one in ten a slip).
        expect(flagged.filter((r) => !inverters.has(r))).toEqual([]);
        expect(flagged.length).toBeGreaterThanOrEqual(5);

        expect(withReference.flaggedByReference).toBe(flagged.length);
        const reasons = (await store.raters.list(projectId, { limit: 1000 })).filter((r) => r.flagged);
        for (const r of reasons)
          expect(r.flagReason).toMatch(/^against a word model of what the other raters liked: /);

        // The flagged raters' ratings no longer move anything: their answers have no reward (nobody
        // else rated them), and the reference itself rated nothing for the rewards.
        const rewards = new Map(
          (
            await store.db.selectFrom('current_rewards').select(['interaction_id', 'reward', 'n']).execute()
          ).map((r) => [r.interaction_id, r]),
        );
        expect(rewards.size).toBe(720 - 12 * flagged.length);
        for (const p of flagged) expect(rewards.has(`a-${p.slice('person-'.length)}-0`)).toBe(false);
        expect([...rewards.values()].every((r) => r.n === 1)).toBe(true);
      } finally {
        await store.close();
        await target.cleanup();
      }
    });
  });
}
