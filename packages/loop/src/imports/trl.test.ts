import { describe, expect, it } from 'vitest';
import { parseTrlJsonl } from './trl.js';

const jsonl = (...rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
const user = (content: string) => ({ role: 'user', content });
const assistant = (content: string) => ({ role: 'assistant', content });
const parse = (text: string) => parseTrlJsonl(text, { file: 'data.jsonl', model: 'base' });

describe('TRL JSONL import', () => {
  it('reads standard and conversational prompt-completion rows as interactions', () => {
    const batch = parse(
      jsonl(
        { prompt: 'What is 2+2?', completion: '4' },
        { prompt: [user('Hi')], completion: [assistant('Hello!')] },
        { messages: [{ role: 'system', content: 'Be brief' }, user('Bye'), assistant('Bye!')] },
      ),
    );
    expect(batch.feedback).toEqual([]);
    expect(batch.interactions.map((i) => [i.messages, i.output, i.model, i.source])).toEqual([
      [[user('What is 2+2?')], assistant('4'), 'base', 'import'],
      [[user('Hi')], assistant('Hello!'), 'base', 'import'],
      [[{ role: 'system', content: 'Be brief' }, user('Bye')], assistant('Bye!'), 'base', 'import'],
    ]);
  });

  it('turns a preference row into two interactions for one prompt and a preference', () => {
    const batch = parse(jsonl({ prompt: 'Capital of France?', chosen: 'Paris.', rejected: 'Lyon.' }));
    const [chosen, rejected] = batch.interactions;
    expect(chosen!.output).toEqual(assistant('Paris.'));
    expect(rejected!.output).toEqual(assistant('Lyon.'));
    expect(chosen!.messages).toEqual(rejected!.messages);
    expect(batch.feedback).toEqual([
      expect.objectContaining({
        kind: 'preference',
        interactionId: chosen!.id,
        other: rejected!.id,
        choice: 'this',
        source: 'annotator',
        raterId: 'import:trl',
      }),
    ]);
    expect(batch.feedbackOrigins).toEqual(['data.jsonl:1: chosen']);
  });

  it('splits the implicit prompt of conversational preference rows', () => {
    const batch = parse(
      jsonl({ chosen: [user('Hi'), assistant('Hello!')], rejected: [user('Hi'), assistant('Go away.')] }),
    );
    expect(batch.interactions.map((i) => i.messages)).toEqual([[user('Hi')], [user('Hi')]]);
    expect(batch.feedback[0]).toMatchObject({ kind: 'preference', choice: 'this' });
  });

  it('turns unpaired KTO rows into interactions with thumbs', () => {
    const batch = parse(
      jsonl(
        { prompt: 'Q', completion: 'good answer', label: true },
        { prompt: 'Q', completion: 'bad answer', label: false },
      ),
    );
    expect(batch.feedback.map((f) => [f.kind, f.kind === 'thumbs' && f.value])).toEqual([
      ['thumbs', 'up'],
      ['thumbs', 'down'],
    ]);
  });

  it('gives the same content the same ids, so a second import names the same rows', () => {
    const text = jsonl(
      { prompt: 'Q', chosen: 'A', rejected: 'B' },
      { prompt: 'Q', completion: 'A', label: true },
    );
    const first = parse(text);
    const again = parse(text);
    expect(again.interactions.map((i) => i.id)).toEqual(first.interactions.map((i) => i.id));
    expect(again.feedback.map((f) => f.idempotencyKey)).toEqual(first.feedback.map((f) => f.idempotencyKey));
    // "A" answers Q in both rows: one interaction, rated twice.
    expect(first.interactions).toHaveLength(2);
    expect(first.feedback.map((f) => f.interactionId)).toEqual([
      first.interactions[0]!.id,
      first.interactions[0]!.id,
    ]);
    expect(first.interactions[0]!.id).toMatch(/^trl-[0-9a-f]{32}$/);
  });

  it('keeps extra scalar columns as metadata', () => {
    const batch = parse(jsonl({ prompt: 'Q', completion: 'A', source: 'forum', score: 3, images: [1] }));
    expect(batch.interactions[0]!.metadata).toEqual({
      importedFrom: 'trl',
      trl: { source: 'forum', score: 3 },
    });
  });

  it('names file, line and field of a bad row', () => {
    expect(() => parse('{"prompt": "Q", "completion": "A"}\n\n{"prompt": "Q"\n')).toThrow(
      /^data\.jsonl:3: not valid JSON/,
    );
    expect(() => parse(jsonl({ prompt: 'Q', completion: 'A' }, { prompt: 'Q', chosen: 'A' }))).toThrow(
      'data.jsonl:2: rejected: a preference row needs rejected',
    );
    expect(() => parse(jsonl({ prompt: 'Q', completion: 'A', label: 'yes' }))).toThrow(
      'data.jsonl:1: label:',
    );
    expect(() => parse(jsonl({ text: 'just text' }))).toThrow('data.jsonl:1: text: language-modeling rows');
    expect(() => parse(jsonl({ prompt: [user('Q')], completion: [user('not an answer')] }))).toThrow(
      'data.jsonl:1: completion: must be plain text or a single assistant message',
    );
    expect(() =>
      parse(jsonl({ chosen: [user('Q'), assistant('A')], rejected: [user('R'), assistant('B')] })),
    ).toThrow('data.jsonl:1: rejected: chosen and rejected must share the implicit prompt');
    expect(() => parse(jsonl({ prompt: 'Q', chosen: 'A', rejected: 'A' }))).toThrow(
      'data.jsonl:1: rejected: chosen and rejected are the same answer',
    );
  });
});
