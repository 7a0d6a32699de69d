import { FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chatDouble } from '../training/testing.js';
import { labelWithJudge } from './label.js';

/**
 * Stands in for an LLM judge, which here would be a remote paid API. It grades the answer in the
 * prompt: GOOD when it contains "reset link", BAD when it contains "figure it out", and for an
 * answer containing "maybe" it alternates, as a judge unsure of it would across samples.
 */
function judgeDouble() {
  let flip = false;
  return chatDouble(({ messages, temperature }) => {
    const answer = /\[ANSWER\]\n([\s\S]*?)\n\[TASK\]/.exec(messages.at(-1)!.content)![1]!;
    let verdict = answer.includes('reset link') ? 'GOOD' : 'BAD';
    if (answer.includes('maybe')) {
      flip = !flip;
      verdict = flip ? 'GOOD' : 'BAD';
    }
    return `At temperature ${temperature}.\nVERDICT: ${verdict}`;
  });
}

describe('the LLM judge labels unrated answers (judge is a local test double)', () => {
  const db = sqliteTestDatabase();
  const judge = judgeDouble();
  let store: Store;
  let projectId: string;
  let baseURL: string;
  const answers: Record<string, string> = {
    good1: 'Open Settings, press Forgot password and follow the reset link we email you.',
    good2: 'We just sent a reset link to your address; it works for an hour.',
    bad1: 'Not my problem, figure it out.',
    unsure: 'It maybe works if you try again later.',
    rated: 'We just sent a reset link, check your inbox.',
  };

  beforeAll(async () => {
    baseURL = await judge.start();
    store = await Store.open(await db.create());
    projectId = (await store.projects.create('judge-labels')).id;
    await store.interactions.insert(
      projectId,
      Object.entries(answers).map(([id, output]) =>
        parseInput(InteractionInput, {
          id,
          model: 'support-v1',
          route: id === 'good2' ? 'other-route' : 'support-bot',
          messages: [{ role: 'user', content: 'I forgot my password.' }],
          output,
        }),
      ),
    );
    await store.feedback.insert(projectId, [
      parseInput(FeedbackInput, { kind: 'thumbs', interactionId: 'rated', raterId: 'user-1', value: 'up' }),
    ]);
  });

  afterAll(async () => {
    await store?.close();
    await judge.close();
    await db.cleanup();
  });

  it('writes confident verdicts as judge thumbs with their votes, skips the rated and the unsure', async () => {
    const report = await labelWithJudge(store, projectId, {
      judge: { baseURL, model: 'judge-large' },
      route: 'support-bot',
      samples: 3,
      concurrency: 1,
    });
    // good2 is on another route and rated is rated: the judge sees good1, bad1 and unsure.
    expect(report).toMatchObject({
      looked: 3,
      labeled: 2,
      up: 1,
      down: 1,
      unsure: 1,
      rater: 'judge:judge-large',
    });
    expect(judge.calls()).toBe(9);
    const labels = (await store.feedback.currentOfKinds(projectId, ['thumbs'])).filter(
      (f) => f.source === 'judge',
    );
    expect(labels.map((f) => [f.interactionId, f.value]).sort()).toEqual([
      ['bad1', -1],
      ['good1', 1],
    ]);
    expect(labels.every((f) => f.raterId === 'judge:judge-large')).toBe(true);
    expect(labels[0]!.metadata).toMatchObject({ confidence: 1, votes: { asked: 3 }, model: 'judge-large' });

    // Labeled answers are rated now: a second pass asks only about what is still unrated.
    const again = await labelWithJudge(store, projectId, {
      judge: { baseURL, model: 'judge-large' },
      route: 'support-bot',
      samples: 3,
      concurrency: 1,
    });
    expect(again).toMatchObject({ looked: 1, labeled: 0, unsure: 1 });
  });

  it('names the bad field', async () => {
    await expect(
      labelWithJudge(store, projectId, { judge: { baseURL, model: 'j' }, samples: 0 }),
    ).rejects.toThrow(/samples/);
    await expect(
      labelWithJudge(store, projectId, { judge: { baseURL: 'not a url', model: 'j' } } as never),
    ).rejects.toThrow(/judge\.baseURL|baseURL/);
  });
});
