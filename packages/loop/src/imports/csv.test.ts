import { describe, expect, it } from 'vitest';
import { parseFeedbackCsv } from './csv.js';

const csv = (...lines: string[]) => lines.join('\r\n') + '\r\n';

describe('CSV import', () => {
  it('reads a row per rated answer: interaction plus one event per filled rating column', () => {
    const batch = parseFeedbackCsv(
      csv(
        'prompt,response,model,user_id,rater_id,thumbs,stars,relevance,accuracy,comment,correction,created_at',
        '"Capital of France?","Paris, of course.",gpt-x,u1,r1,up,5,5,4,"Short, ""right""",,2024-05-01 10:00:00',
        '"Capital of France?","Paris, of course.",gpt-x,u1,r2,down,,,,"multi\nline",Paris.,2024-05-01T11:00:00Z',
      ),
      { file: 'ratings.csv' },
    );
    expect(batch.interactions).toHaveLength(1);
    const [interaction] = batch.interactions;
    expect(interaction).toMatchObject({
      model: 'gpt-x',
      userId: 'u1',
      messages: [{ role: 'user', content: 'Capital of France?' }],
      output: { role: 'assistant', content: 'Paris, of course.' },
      source: 'import',
      createdAt: Date.parse('2024-05-01T10:00:00Z'),
    });
    expect(batch.feedback.map((f) => [f.raterId, f.kind, f.source, f.createdAt])).toEqual([
      ['r1', 'thumbs', 'user', Date.parse('2024-05-01T10:00:00Z')],
      ['r1', 'stars', 'user', Date.parse('2024-05-01T10:00:00Z')],
      ['r1', 'comment', 'user', Date.parse('2024-05-01T10:00:00Z')],
      ['r1', 'criteria', 'user', Date.parse('2024-05-01T10:00:00Z')],
      ['r2', 'thumbs', 'user', Date.parse('2024-05-01T11:00:00Z')],
      ['r2', 'comment', 'user', Date.parse('2024-05-01T11:00:00Z')],
      ['r2', 'correction', 'user', Date.parse('2024-05-01T11:00:00Z')],
    ]);
    expect(batch.feedback[3]).toMatchObject({ kind: 'criteria', scores: { relevance: 5, accuracy: 4 } });
    expect(batch.feedback[2]).toMatchObject({ kind: 'comment', text: 'Short, "right"' });
    expect(batch.feedback[5]).toMatchObject({ kind: 'comment', text: 'multi\nline' });
    expect(batch.feedbackOrigins[1]).toBe('ratings.csv:2: column "stars"');
  });

  it('maps headers it does not know by name, and reports columns it ignores', () => {
    const batch = parseFeedbackCsv(
      csv('Question,Bot answer,Score (1-5),Helpful?,notes_internal', 'q,a,4,2,x'),
      {
        file: 'f.csv',
        columns: {
          prompt: 'Question',
          response: 'Bot answer',
          stars: 'Score (1-5)',
          helpfulness: 'Helpful?',
        },
        model: 'm1',
      },
    );
    expect(batch.interactions[0]).toMatchObject({ model: 'm1', messages: [{ content: 'q' }] });
    expect(batch.feedback.map((f) => f.kind)).toEqual(['stars', 'criteria']);
    expect(batch.feedback[1]).toMatchObject({ scores: { helpfulness: 2 } });
    expect(batch.warnings).toEqual(['f.csv:1: ignored columns: notes_internal']);
  });

  it('rates interactions already in the project when a row has only their id', () => {
    const batch = parseFeedbackCsv(csv('interaction_id,rater_id,thumbs', 'abc,r1,👍', 'abc,r2,no'), {
      file: 'f.csv',
    });
    expect(batch.interactions).toEqual([]);
    expect(batch.feedback.map((f) => [f.interactionId, f.kind === 'thumbs' && f.value])).toEqual([
      ['abc', 'up'],
      ['abc', 'down'],
    ]);
  });

  it('is deterministic: the same rows give the same ids and keys, a repeated row is one event', () => {
    const text = csv('prompt,response,rater_id,stars', 'q,a,r1,4', 'q,a,r1,4', 'q,a,r1,5');
    const first = parseFeedbackCsv(text, { file: 'f.csv' });
    const again = parseFeedbackCsv(text, { file: 'f.csv' });
    expect(first.feedback).toHaveLength(2);
    expect(again.feedback.map((f) => f.idempotencyKey)).toEqual(first.feedback.map((f) => f.idempotencyKey));
    expect(first.interactions[0]!.id).toMatch(/^csv-[0-9a-f]{32}$/);
  });

  it('names file, line and column of bad values', () => {
    const header = 'prompt,response,thumbs,stars,created_at,source';
    expect(() => parseFeedbackCsv(csv(header, 'q,a,maybe,,,'), { file: 'f.csv' })).toThrow(
      'f.csv:2: column "thumbs": "maybe" is not a thumbs value',
    );
    expect(() => parseFeedbackCsv(csv(header, 'q,a,,four,,'), { file: 'f.csv' })).toThrow(
      'f.csv:2: column "stars": "four" is not a number',
    );
    expect(() => parseFeedbackCsv(csv(header, 'q,a,,,yesterday,'), { file: 'f.csv' })).toThrow(
      'f.csv:2: column "created_at":',
    );
    expect(() => parseFeedbackCsv(csv(header, 'q,a,,,,robot'), { file: 'f.csv' })).toThrow(
      'f.csv:2: column "source":',
    );
    expect(() => parseFeedbackCsv(csv(header, ',a,up,,,'), { file: 'f.csv' })).toThrow(
      'f.csv:2: column "prompt": is empty',
    );
    expect(() => parseFeedbackCsv(csv(header, 'q,a,up'), { file: 'f.csv' })).toThrow(
      'f.csv:2: has 3 fields, the header has 6',
    );
    expect(() => parseFeedbackCsv(csv('text,label', 'x,1'), { file: 'f.csv' })).toThrow(
      'f.csv:1: needs prompt and response columns, or an interaction_id column',
    );
    expect(() => parseFeedbackCsv(csv(header), { file: 'f.csv', columns: { prompt: 'Q' } })).toThrow(
      'f.csv:1: no column "Q" (mapped to prompt)',
    );
    expect(() => parseFeedbackCsv(csv(header), { file: 'f.csv', columns: { vibes: 'thumbs' } })).toThrow(
      'no field or criterion named "vibes"',
    );
  });
});
