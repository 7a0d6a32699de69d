import { describe, expect, it } from 'vitest';
import {
  buildDpoDataset,
  buildKtoDataset,
  buildRewardDataset,
  buildRwsftDataset,
  buildSftDataset,
} from '../datasets/builders.js';
import type { CandidateExample } from '../datasets/types.js';
import type { PairwiseComparison } from '../normalize/pairwise.js';
import type { ChatMessage } from '../schemas/interaction.js';
import { curateDatasetInputs, excludeFlaggedRaters } from './dataset-inputs.js';
import { luhnValid } from './pii.js';

const EMAIL = 'leaky.person@example.com';
const CARD = '4539 1488 0343 6467';
const KEY = 'sk-proj-Zq8vN3xL0pR7tY2wK5mB9cD4';
const UNSAFE = 'how to make a pipe bomb';
const secrets = [EMAIL, CARD, KEY, UNSAFE];

function candidate(
  id: string,
  prompt: string,
  reward: number | null,
  answer = `Answer ${id}.`,
): CandidateExample {
  return {
    interactionId: id,
    promptHash: `h:${prompt}`,
    prompt: [{ role: 'user', content: prompt }],
    completion: { role: 'assistant', content: answer },
    reward,
    lower: reward === null ? null : reward - 0.1,
    upper: reward === null ? null : reward + 0.1,
    n: 3,
    weight: 1,
    createdAt: 0,
    feedbackIds: [`f-${id}`],
  };
}

// Twelve prompts with a liked and a disliked answer each, distinct texts (nothing is a duplicate).
const candidates = Array.from({ length: 12 }, (_, p) => [
  candidate(
    `good${p}`,
    `Question ${p}: where is parcel ${p * 17}?`,
    0.8,
    `Parcel ${p * 17} left Lyon on day ${p + 1}.`,
  ),
  candidate(`bad${p}`, `Question ${p}: where is parcel ${p * 17}?`, -0.8, `No idea about ${p * 31}, sorry.`),
]).flat();
// Answers here are all about 30 characters, so a correction of a hundred would be a length
// outlier: off where the test is about another filter (the outlier test below has it on).
const noOutliers = { length: { outliers: false } };
const words = (n: number) => Array.from({ length: n }, (_, i) => `word${i}`).join(' ');

let ids = 0;
function correction(
  interactionId: string,
  text: string,
  raterId = 'editor',
  message?: ChatMessage,
): PairwiseComparison {
  const feedbackId = `corr-${++ids}`;
  return {
    winner: { type: 'correction', feedbackId, interactionId, text, ...(message ? { message } : {}) },
    loser: { type: 'interaction', interactionId },
    weight: 1,
    tie: false,
    source: 'correction',
    feedbackId,
    raterId,
  };
}
function preference(winner: string, loser: string, raterId: string): PairwiseComparison {
  return {
    winner: { type: 'interaction', interactionId: winner },
    loser: { type: 'interaction', interactionId: loser },
    weight: 1,
    tie: false,
    source: 'preference',
    feedbackId: `pref-${++ids}`,
    raterId,
  };
}

const builders = {
  sft: buildSftDataset,
  kto: buildKtoDataset,
  dpo: buildDpoDataset,
  reward: buildRewardDataset,
  rwsft: buildRwsftDataset,
};
const noSplit = { split: { by: 'prompt' as const, testFraction: 0 } };
/** Every method's rows, as the JSON lines a dataset version writes. */
function everyRow(c: readonly CandidateExample[], p: readonly PairwiseComparison[]) {
  return Object.values(builders).flatMap((build) => build(c, p, noSplit).rows.map((r) => JSON.stringify(r)));
}

describe('curating what a dataset build turns into rows', () => {
  it('the card number in the test is Luhn-valid (what the PII filter detects)', () => {
    expect(luhnValid(CARD.replace(/\D/g, ''))).toBe(true);
  });

  it('keeps an e-mail, a card, a key and unsafe text in a correction out of every method, and records why', async () => {
    const poisoned = correction(
      'bad1',
      `Write to ${EMAIL}, pay with ${CARD}, use ${KEY}; also here is ${UNSAFE} at home.`,
    );
    const leaky = correction('bad2', `Your parcel is late; mail ${EMAIL} with card ${CARD} and key ${KEY}.`);
    // The full message, PII in a content part and in a tool call's arguments.
    const structured = correction('bad3', 'Refund issued.', 'editor', {
      role: 'assistant',
      content: [{ type: 'text', text: `Refund issued to ${EMAIL}.` }],
      tool_calls: [
        { id: 'call_1', type: 'function', function: { name: 'refund', arguments: `{"card":"${CARD}"}` } },
      ],
    });
    const honest = correction('bad4', 'Parcel 68 left Lyon yesterday and arrives on Friday.');
    // A self-critique revision is stored as a correction from source judge: the same filters.
    const revision = {
      ...correction(
        'bad5',
        `Revised: for parcel 85, the model suggests writing to ${EMAIL}.`,
        'judge:writer',
      ),
      weight: 0.3,
    };
    const comparisons = [poisoned, leaky, structured, honest, revision];

    // Without curation every builder writes the rater's text as it came: the leak this prevents.
    const raw = everyRow(candidates, comparisons).join('\n');
    for (const s of secrets) expect(raw).toContain(s);

    const curated = await curateDatasetInputs(candidates, comparisons, noOutliers);
    const rows = everyRow(curated.candidates, curated.comparisons);
    expect(rows.length).toBeGreaterThan(40);
    for (const row of rows) for (const s of secrets) expect(row).not.toContain(s);
    // The honest correction and the redacted ones still train; the unsafe one does not.
    const all = rows.join('\n');
    expect(all).toContain('Parcel 68 left Lyon yesterday');
    expect(all).toContain('Your parcel is late; mail [EMAIL] with card [CARD] and key [SECRET].');
    expect(all).toContain('Refund issued to [EMAIL].');
    expect(all).toContain('{\\"card\\":\\"[CARD]\\"}');

    const about = (id: string) => curated.decisions.filter((d) => d.id === id);
    expect(about(poisoned.feedbackId)).toEqual([
      expect.objectContaining({ subject: 'feedback', filter: 'safety', action: 'dropped' }),
    ]);
    expect(about(leaky.feedbackId)).toEqual([
      {
        id: leaky.feedbackId,
        subject: 'feedback',
        filter: 'pii',
        action: 'changed',
        reason: 'redacted 3 span(s): email, card, secret',
      },
    ]);
    expect(about(structured.feedbackId)[0]).toMatchObject({ filter: 'pii', action: 'changed' });
    expect(all).toContain('Revised: for parcel 85, the model suggests writing to [EMAIL].');
    expect(about(revision.feedbackId)[0]).toMatchObject({ filter: 'pii', action: 'changed' });
    expect(curated.counts.feedback).toEqual({ safety: 1, pii: 3 });
    expect(curated.counts.interactions).toEqual({});
  });

  it('drops corrections by the same duplicate and length filters, but never as a duplicate of the answer they fix', async () => {
    const prompt = candidates[2]!.prompt[0]!.content as string;
    // A fix of one number in a long answer is nearly the original: kept.
    const longAnswer =
      'Your parcel left our Lyon warehouse on Monday morning and the courier expects to deliver it to your door on Thursday afternoon between two and five';
    const original = candidate('long', prompt, -0.5, longAnswer);
    const typoFix = correction('long', longAnswer.replace('two and five', 'two and six'));
    const first = correction('bad5', 'Parcel 85 is with the courier and arrives tomorrow before noon.');
    const copy = correction(
      'bad5',
      'Parcel 85 is with the courier and arrives tomorrow before noon!',
      'other-editor',
    );
    const huge = correction('bad6', words(5000));
    const curated = await curateDatasetInputs(
      [...candidates, original],
      [typoFix, first, copy, huge],
      noOutliers,
    );
    const kept = new Set(curated.comparisons.map((c) => c.feedbackId));
    expect(kept).toEqual(new Set([typoFix.feedbackId, first.feedbackId]));
    const reasons = Object.fromEntries(curated.decisions.map((d) => [d.id, d]));
    expect(reasons[copy.feedbackId]).toMatchObject({ filter: 'duplicate', subject: 'feedback' });
    expect(reasons[copy.feedbackId]!.reason).toContain(`feedback:${first.feedbackId}`);
    expect(reasons[huge.feedbackId]).toMatchObject({ filter: 'length', subject: 'feedback' });

    // Within the length limit but a hundred times the usual answer: a length outlier, like an answer.
    const rambling = correction('bad6', words(500));
    const withOutliers = await curateDatasetInputs(candidates, [rambling], {});
    expect(withOutliers.comparisons).toEqual([]);
    expect(withOutliers.counts.feedback).toEqual({ outlier: 1 });
  });

  it("leaves a flagged rater's corrections, preferences and rankings out of every method; others' stay", async () => {
    const flagged = new Map([['adversary', 'disagrees with the leave-one-out consensus']]);
    const evil = correction(
      'bad7',
      'Tell them the parcel was never sent and they should pay again.',
      'adversary',
    );
    // Prefers the disliked answer: as a DPO pair it would teach the model the wrong thing.
    const inverted = preference('bad8', 'good8', 'adversary');
    const ranking: PairwiseComparison[] = [
      { ...preference('bad9', 'good9', 'adversary'), source: 'ranking', feedbackId: 'rank-1' },
      { ...preference('bad9', 'good10', 'adversary'), source: 'ranking', feedbackId: 'rank-1' },
    ];
    const fair = correction('bad7', 'Parcel 119 left Lyon on day 8 and arrives on Monday.', 'honest');
    const comparisons = [evil, inverted, ...ranking, fair];

    for (const config of [{}, false] as const) {
      const curated = await curateDatasetInputs(candidates, comparisons, config, { flaggedRaters: flagged });
      expect(curated.comparisons).toEqual([fair]);
      for (const build of Object.values(builders)) {
        const built = build(curated.candidates, curated.comparisons, noSplit);
        const text = built.rows.map((r) => JSON.stringify(r)).join('\n');
        expect(text).not.toContain('never sent');
        const fromAdversary = [evil.feedbackId, inverted.feedbackId, 'rank-1'];
        expect(built.lineage.flatMap((l) => l.feedbackIds).filter((f) => fromAdversary.includes(f))).toEqual(
          [],
        );
      }
      expect(everyRow(curated.candidates, curated.comparisons).join('\n')).toContain(
        'Parcel 119 left Lyon on day 8',
      );
      expect(curated.counts.feedback.flagged_rater).toBe(3);
      expect(curated.decisions.find((d) => d.id === 'rank-1')).toMatchObject({
        subject: 'feedback',
        filter: 'flagged_rater',
        action: 'dropped',
        reason: 'ranking from flagged rater adversary: disagrees with the leave-one-out consensus',
      });
    }
    // Without the flag, the same evidence is a DPO pair: the exclusion is what keeps it out.
    const unflagged = buildDpoDataset(candidates, comparisons, noSplit);
    expect(unflagged.lineage.some((l) => l.feedbackIds.includes(inverted.feedbackId))).toBe(true);
    expect(excludeFlaggedRaters(comparisons, new Map()).trusted).toHaveLength(comparisons.length);
  });

  it('redacts PII in every string of an interaction, content parts included', async () => {
    const parts = candidate('parts', 'placeholder', 0.9);
    parts.prompt = [{ role: 'user', content: [{ type: 'text', text: `I am ${EMAIL}` }] }];
    const curated = await curateDatasetInputs([...candidates, parts], [], noOutliers);
    const kept = curated.candidates.find((c) => c.interactionId === 'parts')!;
    expect(kept.prompt).toEqual([{ role: 'user', content: [{ type: 'text', text: 'I am [EMAIL]' }] }]);
    expect(curated.counts.interactions).toEqual({ pii: 1 });
  });
});
