import { defaultScoreConfigs, type Interaction, type ScoreConfig } from '@ratchet/core';
import { describe, expect, it } from 'vitest';
import { labelingConfig } from './config.js';
import { comparisonPairs, comparisonTask, conversationText, interactionTask, taskKey } from './tasks.js';

describe('labeling config', () => {
  it('asks for every rating kind of the project on one answer', () => {
    const xml = labelingConfig(defaultScoreConfigs);
    for (const control of [
      '<Choices name="thumbs" toName="answer"',
      '<Choice value="Good" alias="up"/>',
      '<Rating name="stars" toName="answer" maxRating="5"/>',
      '<Rating name="criterion_relevance" toName="answer" maxRating="5"/>',
      '<Rating name="criterion_accuracy" toName="answer" maxRating="5"/>',
      '<Rating name="criterion_helpfulness" toName="answer" maxRating="5"/>',
      '<TextArea name="comment" toName="answer"',
      '<TextArea name="correction" toName="answer"',
      '<Text name="prompt" value="$prompt"/>',
      '<Text name="answer" value="$answer"/>',
    ])
      expect(xml).toContain(control);
    expect(xml).not.toContain('Pairwise');
  });

  it('fits each scale: shifted Rating, Number for wide scales, Choices for categories', () => {
    const scale = (over: Partial<ScoreConfig>): ScoreConfig => ({
      name: 'x',
      usage: 'criterion',
      dataType: 'numeric',
      min: 1,
      max: 5,
      categories: null,
      weight: 1,
      description: null,
      ...over,
    });
    const xml = labelingConfig([
      scale({ name: 'nps', usage: 'stars', min: 0, max: 10 }),
      scale({ name: 'score', min: 0, max: 1 }),
      scale({ name: 'wide', min: 1, max: 100 }),
      scale({
        name: 'tone',
        dataType: 'categorical',
        min: null,
        max: null,
        categories: ['rude', 'a "kind" one'],
      }),
    ]);
    expect(xml).toContain('<Rating name="stars_nps" toName="answer" maxRating="11"/>');
    expect(xml).toContain('<Rating name="criterion_score" toName="answer" maxRating="2"/>');
    expect(xml).toContain('<Number name="criterion_wide" toName="answer" min="1" max="100"/>');
    expect(xml).toContain('<Choice value="a &quot;kind&quot; one"/>');
  });

  it('compares two answers in pairwise mode', () => {
    const xml = labelingConfig(defaultScoreConfigs, 'pairwise');
    expect(xml).toContain('<Pairwise name="preference" toName="answer,answer_b"/>');
    expect(xml).toContain('<Text name="answer_b" value="$answer_b"/>');
  });
});

const interaction = (id: string, prompt: string, answer: string): Interaction => ({
  id,
  projectId: 'p',
  route: null,
  model: 'm',
  variant: null,
  messages: [{ role: 'user', content: prompt }],
  output: { role: 'assistant', content: answer },
  parameters: {},
  latencyMs: null,
  usage: {},
  sessionId: null,
  userId: null,
  metadata: {},
  tags: [],
  status: 'ok',
  error: null,
  traceId: null,
  spanId: null,
  source: 'api',
  promptHash: `h-${prompt}`,
  createdAt: 0,
  receivedAt: 0,
});

describe('tasks', () => {
  it('carries the interaction id and the text annotators read', () => {
    expect(interactionTask(interaction('i1', 'Q?', 'A.'))).toEqual({
      data: { ratchet_interaction_id: 'i1', prompt: 'Q?', answer: 'A.', model: 'm' },
    });
    expect(
      conversationText([
        { role: 'system', content: 'Be brief' },
        { role: 'user', content: [{ type: 'text', text: 'Look' }, { type: 'image_url' }] },
      ]),
    ).toBe('system: Be brief\n\nuser: Look\n[image_url]');
  });

  it('pairs different answers to the same prompt, each pair once, sides by hash', () => {
    const pairs = comparisonPairs([
      interaction('a', 'Q1', 'x'),
      interaction('b', 'Q1', 'y'),
      interaction('c', 'Q1', 'z'),
      interaction('d', 'Q1', 'x'),
      interaction('e', 'Q2', 'w'),
    ]);
    const keys = pairs.map(([l, r]) => taskKey(comparisonTask(l, r).data));
    expect(keys.sort()).toEqual(['a\u0000b', 'b\u0000c']);
    expect(comparisonPairs([interaction('b', 'Q1', 'y'), interaction('a', 'Q1', 'x')])).toEqual(
      comparisonPairs([interaction('a', 'Q1', 'x'), interaction('b', 'Q1', 'y')]),
    );
  });
});
