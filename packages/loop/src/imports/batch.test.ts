import { describe, expect, it } from 'vitest';
import { ImportBatchBuilder } from './batch.js';

describe('an import batch holds records to what either database can store', () => {
  const interaction = { id: 'a', model: 'm', messages: [{ role: 'user', content: 'x' }], output: 'y' };

  it('refuses a NUL, naming the line and the field', () => {
    const batch = new ImportBatchBuilder();
    expect(() =>
      batch.addInteraction(
        { ...interaction, messages: [{ role: 'user', content: 'a\u0000b' }] },
        'f.jsonl:3',
      ),
    ).toThrow('f.jsonl:3: messages.0.content: contains a NUL');
    expect(() =>
      batch.addFeedback(
        { kind: 'comment', interactionId: 'a', text: 'x\uD800', idempotencyKey: 'k' },
        'f.jsonl:4',
      ),
    ).toThrow('f.jsonl:4: text: contains a lone UTF-16 surrogate');
  });

  it('refuses metadata nested deeper than 64 levels', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 10_000; i++) deep = { a: deep };
    expect(() =>
      new ImportBatchBuilder().addInteraction({ ...interaction, metadata: { deep } }, 'f.jsonl:5'),
    ).toThrow(/f\.jsonl:5: metadata\.deep(\.a)+: nested deeper than 64 levels/);
  });
});
