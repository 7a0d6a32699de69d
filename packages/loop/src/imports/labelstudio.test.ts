import { defaultScoreConfigs, type ScoreConfig } from '@ratchet/core';
import { describe, expect, it } from 'vitest';
import { parseLabelStudioExport, topLevelElementLines } from './labelstudio.js';

const result = (from_name: string, type: string, value: object, to_name = 'answer') => ({
  from_name,
  to_name,
  type,
  value,
});

const task = (id: number, data: object, annotations: object[]) => ({ id, data, annotations });

const ratchetTask = task(7, { ratchet_interaction_id: 'i1', prompt: 'Q', answer: 'A' }, [
  {
    id: 11,
    completed_by: 3,
    created_at: '2024-05-01T10:00:00.123456Z',
    updated_at: '2024-05-01T10:05:00.000001Z',
    was_cancelled: false,
    result: [
      result('thumbs', 'choices', { choices: ['up'] }),
      result('stars', 'rating', { rating: 4 }),
      result('criterion_relevance', 'rating', { rating: 5 }),
      result('criterion_accuracy', 'rating', { rating: 3 }),
      result('comment', 'textarea', { text: ['fine', 'but long'] }),
      result('correction', 'textarea', { text: ['A, shorter.'] }),
    ],
  },
  { id: 12, completed_by: 4, was_cancelled: true, result: [] },
]);

const file = (tasks: object[]) => JSON.stringify(tasks, null, 2);

describe('Label Studio JSON export import', () => {
  it('maps the results of our labeling config to feedback from the annotator', () => {
    const batch = parseLabelStudioExport(file([ratchetTask]), { file: 'export.json' });
    expect(batch.interactions).toEqual([]);
    const common = {
      interactionId: 'i1',
      raterId: 'labelstudio:3',
      source: 'annotator',
      createdAt: Date.parse('2024-05-01T10:05:00.000Z'),
      metadata: { labelStudio: { taskId: 7, annotationId: 11 } },
    };
    expect(batch.feedback).toEqual([
      expect.objectContaining({ ...common, kind: 'thumbs', value: 'up' }),
      expect.objectContaining({ ...common, kind: 'stars', value: 4, scale: 'stars' }),
      expect.objectContaining({ ...common, kind: 'comment', text: 'fine\nbut long' }),
      expect.objectContaining({ ...common, kind: 'correction', text: 'A, shorter.' }),
      expect.objectContaining({ ...common, kind: 'criteria', scores: { accuracy: 3, relevance: 5 } }),
    ]);
    expect(batch.feedback.every((f) => f.idempotencyKey?.startsWith('labelstudio:11:'))).toBe(true);
    expect(new Set(batch.feedback.map((f) => f.idempotencyKey)).size).toBe(5);
  });

  it('reads pairwise results as a preference between the two interactions', () => {
    const pair = (selected: string) =>
      task(
        8,
        {
          ratchet_interaction_id: 'a',
          ratchet_interaction_id_b: 'b',
          prompt: 'Q',
          answer: 'x',
          answer_b: 'y',
        },
        [
          {
            id: selected === 'left' ? 1 : 2,
            completed_by: { id: 5, email: 'ann@example.com' },
            result: [result('preference', 'pairwise', { selected })],
          },
        ],
      );
    const batch = parseLabelStudioExport(file([pair('left'), pair('right')]), { file: 'export.json' });
    expect(
      batch.feedback.map((f) => f.kind === 'preference' && [f.interactionId, f.other, f.choice, f.raterId]),
    ).toEqual([
      ['a', 'b', 'this', 'labelstudio:5'],
      ['a', 'b', 'other', 'labelstudio:5'],
    ]);
  });

  it('shifts Rating stars onto scales that do not start at 1, and reads categorical criteria', () => {
    const scales: ScoreConfig[] = [
      ...defaultScoreConfigs,
      {
        name: 'nps',
        usage: 'stars',
        dataType: 'numeric',
        min: 0,
        max: 10,
        categories: null,
        weight: 1,
        description: null,
      },
      {
        name: 'tone',
        usage: 'criterion',
        dataType: 'categorical',
        min: null,
        max: null,
        categories: ['rude', 'ok', 'kind'],
        weight: 1,
        description: null,
      },
    ];
    const t = task(9, { ratchet_interaction_id: 'i1' }, [
      {
        id: 20,
        completed_by: 1,
        result: [
          result('stars_nps', 'rating', { rating: 1 }),
          result('criterion_tone', 'choices', { choices: ['kind'] }),
        ],
      },
    ]);
    const batch = parseLabelStudioExport(file([t]), { file: 'e.json', scales });
    expect(batch.feedback).toEqual([
      expect.objectContaining({ kind: 'stars', scale: 'nps', value: 0 }),
      expect.objectContaining({ kind: 'criteria', scores: { tone: 'kind' } }),
    ]);
  });

  it('imports tasks that Ratchet did not make, with their prompt and answer, mapping results by type', () => {
    const foreign = task(10, { question: 'Why?', response: 'Because.', model: 'm9' }, [
      {
        id: 30,
        completed_by: 2,
        result: [
          result('quality', 'rating', { rating: 2 }),
          result('notes', 'textarea', { text: 'too short' }),
          result('verdict', 'choices', { choices: ['Good'] }),
          result('label', 'labels', { start: 0, end: 3, labels: ['X'] }),
        ],
      },
    ]);
    const batch = parseLabelStudioExport(file([foreign]), { file: 'e.json' });
    expect(batch.interactions).toEqual([
      expect.objectContaining({
        model: 'm9',
        messages: [{ role: 'user', content: 'Why?' }],
        source: 'import',
      }),
    ]);
    const id = batch.interactions[0]!.id;
    expect(id).toMatch(/^ls-/);
    expect(batch.feedback.map((f) => [f.interactionId, f.kind])).toEqual([
      [id, 'stars'],
      [id, 'comment'],
      [id, 'thumbs'],
    ]);
    expect(batch.warnings).toEqual([
      expect.stringMatching(
        /^e\.json:2: tasks\.0: annotations\.0: result\.3: skipped a labels result from "label"/,
      ),
    ]);
  });

  it('skips tasks without finished annotations, even when they cannot be mapped', () => {
    const batch = parseLabelStudioExport(
      file([task(1, { other: 'x' }, []), task(2, { other: 'y' }, [{ id: 1, result: [] }])]),
      {
        file: 'e.json',
      },
    );
    expect(batch.feedback).toEqual([]);
  });

  it('is idempotent: the same export gives the same keys', () => {
    const a = parseLabelStudioExport(file([ratchetTask]), { file: 'e.json' });
    const b = parseLabelStudioExport(JSON.stringify([ratchetTask]), { file: 'e.json' });
    expect(b.feedback.map((f) => f.idempotencyKey)).toEqual(a.feedback.map((f) => f.idempotencyKey));
  });

  it('names the line of the task and the path of a bad result', () => {
    const bad = task(5, { ratchet_interaction_id: 'i1' }, [
      { id: 1, completed_by: 1, result: [result('stars', 'rating', { rating: 'four' })] },
    ]);
    const text = file([ratchetTask, bad]);
    // The task's opening brace is on the line before its id (0-based index + 1 - 1).
    const line = text.split('\n').findIndex((l) => l.includes('"id": 5'));
    expect(() => parseLabelStudioExport(text, { file: 'e.json' })).toThrow(
      `e.json:${line}: tasks.1: annotations.0: result.0: value.rating: Invalid input: expected number`,
    );
    expect(() =>
      parseLabelStudioExport(
        file([task(1, { text: 'x' }, [{ id: 1, result: [result('c', 'textarea', { text: 'x' })] }])]),
        {
          file: 'e.json',
        },
      ),
    ).toThrow('e.json:2: tasks.0: data: needs ratchet_interaction_id, or a prompt');
    expect(() => parseLabelStudioExport('{"not": "a list"}', { file: 'e.json' })).toThrow('e.json:1:');
    expect(() => parseLabelStudioExport('[{', { file: 'e.json' })).toThrow('e.json: not valid JSON');
  });
});

describe('top-level element lines', () => {
  it('finds where each element of a JSON array starts, ignoring brackets inside strings', () => {
    expect(topLevelElementLines('[\n  {"a": "[{,"},\n  {"b": [1,\n 2]},\n  3\n]')).toEqual([2, 3, 5]);
    expect(topLevelElementLines('[{"a":"\\"}"},{"b":1}]')).toEqual([1, 1]);
    expect(topLevelElementLines('[]')).toEqual([]);
  });
});
