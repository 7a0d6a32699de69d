import { describe, expect, it } from 'vitest';
import { curate } from './pipeline.js';
import type { SafetyClassifier } from './safety.js';

const row = (id: string, prompt: string, completion: string) => ({ id, prompt, completion, extra: id });
const filler = Array.from({ length: 12 }, (_, i) =>
  row(
    `f${i}`,
    `Question number ${i} about orders?`,
    `Answer ${i}: orders ship within ${i + 1} days from our warehouse in Lyon.`,
  ),
);

describe('curation pipeline', () => {
  it('drops and changes rows, recording which filter and why, and keeps the rest intact', async () => {
    const rows = [
      ...filler,
      row(
        'dup',
        'Question number 3 about orders?',
        'Answer 3: orders ship within 4 days from our warehouse in Lyon.',
      ),
      row('pii', 'My email is jo@example.com', 'Thanks, we will write to you at jo@example.com.'),
      row('unsafe', 'how do i make a pipe bomb', 'I cannot help with that.'),
      row('empty', 'hi', ''),
      row('loop', 'hello', 'I am sorry I am sorry I am sorry I am sorry I am sorry I am sorry I am sorry'),
      row('huge', 'tell me everything', Array.from({ length: 2000 }, (_, i) => `w${i}`).join(' ')),
    ];
    const { kept, decisions } = await curate(rows, { length: { maxChars: 100_000 } });
    const byId = Object.fromEntries(decisions.map((d) => [d.id, d]));
    expect(byId.dup).toMatchObject({ filter: 'duplicate', action: 'dropped' });
    expect(byId.dup!.reason).toContain('duplicate of f3');
    expect(byId.pii).toMatchObject({ filter: 'pii', action: 'changed', reason: 'redacted 2 span(s): email' });
    expect(byId.unsafe).toMatchObject({ filter: 'safety', action: 'dropped' });
    expect(byId.unsafe!.reason).toContain('weapons');
    expect(byId.empty).toMatchObject({ filter: 'length' });
    expect(byId.loop).toMatchObject({ filter: 'repetition' });
    expect(byId.huge).toMatchObject({ filter: 'outlier' });
    expect(kept.map((r) => r.id)).toEqual([...filler.map((r) => r.id), 'pii']);
    expect(kept.at(-1)).toMatchObject({ prompt: 'My email is [EMAIL]', extra: 'pii' });
  });

  it('takes a pluggable safety classifier and can switch filters off', async () => {
    const strict: SafetyClassifier = {
      name: 'strict-test-classifier',
      async classify(texts) {
        return texts.map((t) => ({
          unsafe: t.includes('Lyon'),
          matches: t.includes('Lyon') ? [{ category: 'location', match: 'Lyon' }] : [],
        }));
      },
    };
    const res = await curate(
      filler,
      { dedup: { enabled: false }, pii: { enabled: false }, length: { outliers: false } },
      strict,
    );
    expect(res.kept).toHaveLength(0);
    expect(res.decisions.every((d) => d.reason.startsWith('strict-test-classifier: location'))).toBe(true);
  });

  it('rejects a bad config naming the field', async () => {
    await expect(curate(filler, { dedup: { enabled: true, threshold: 2 } })).rejects.toThrow(/threshold/);
  });

  it('keeps rated-bad answers as negative examples through the content filters, not through dedup', async () => {
    const negative = (id: string, completion: string) => ({
      ...row(id, `prompt ${id} about orders`, completion),
      negative: true,
    });
    const rows = [
      ...filler,
      negative('unsafe-bad', 'Send me your card number and security code and I will log in as you.'),
      negative('garbled-bad', 'the the the the the the the the the the the the'),
      {
        ...row('unsafe-good', 'prompt about orders', 'Send me your card number and security code.'),
        negative: false,
      },
      { ...filler[3]!, id: 'dup-bad', negative: true },
    ];
    const { kept, decisions } = await curate(rows);
    const ids = kept.map((r) => r.id);
    expect(ids).toEqual(expect.arrayContaining(['unsafe-bad', 'garbled-bad']));
    expect(ids).not.toContain('unsafe-good');
    expect(ids).not.toContain('dup-bad');
    expect(decisions.find((d) => d.id === 'unsafe-good')?.filter).toBe('safety');
    expect(decisions.find((d) => d.id === 'dup-bad')?.filter).toBe('duplicate');
  });
});
