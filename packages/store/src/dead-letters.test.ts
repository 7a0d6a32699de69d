import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_DEAD_LETTER_PAYLOAD } from './dead-letters.js';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

function nested(depth: number): unknown {
  let v: unknown = 'bottom';
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

for (const target of testDatabases()) {
  describe(`dead letters on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    let otherProject: string;
    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('dead')).id;
      otherProject = (await store.projects.create('other')).id;
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('keeps payloads no column could take as they are (NUL, lone surrogate, 20,000 levels) as JSON text', async () => {
      const deep = { parameters: nested(20_000) };
      await store.deadLetters.insert(projectId, [
        {
          interactionId: 'i-nul',
          source: 'gateway',
          reason: 'nul_character',
          error: 'messages.0.content: contains a NUL character \u0000',
          payload: { messages: [{ role: 'user', content: 'a\u0000b\uD800' }] },
          repaired: true,
        },
        {
          interactionId: 'i-deep',
          source: 'gateway',
          reason: 'too_deep',
          error: 'deep',
          payload: deep,
          repaired: true,
        },
      ]);
      await store.deadLetters.insert(otherProject, [
        {
          interactionId: 'x',
          source: 'gateway',
          reason: 'write_failed',
          error: 'no',
          payload: {},
          repaired: false,
        },
      ]);
      const page = await store.deadLetters.list(projectId);
      expect(page.items.map((d) => d.interactionId).sort()).toEqual(['i-deep', 'i-nul']);
      const nul = page.items.find((d) => d.interactionId === 'i-nul')!;
      expect(nul).toMatchObject({ reason: 'nul_character', repaired: true, payloadTruncated: false });
      expect(nul.error).not.toContain('\u0000');
      expect(JSON.parse(nul.payload)).toEqual({ messages: [{ role: 'user', content: 'a\u0000b\uD800' }] });
      const deepLetter = page.items.find((d) => d.interactionId === 'i-deep')!;
      expect(deepLetter.payload.length).toBe(20_000 * '{"a":}'.length + '{"parameters":}'.length + 8);
      expect(await store.deadLetters.countByReason(projectId)).toEqual({ nul_character: 1, too_deep: 1 });
      // A page may show previews only; the letter itself keeps all of it.
      const preview = (await store.deadLetters.list(projectId, { payloadChars: 100 })).items;
      expect(preview.map((d) => [d.payload.length <= 100, d.payloadTruncated])).toEqual([
        [true, true],
        [true, false],
      ]);
      expect((await store.deadLetters.get(projectId, deepLetter.id))?.payload).toBe(deepLetter.payload);
      expect(await store.deadLetters.get(otherProject, deepLetter.id)).toBeUndefined();
      expect(await store.deadLetters.countByReason(otherProject)).toEqual({ write_failed: 1 });
    });

    it('cuts a payload above the limit and says so', async () => {
      const big = 'x'.repeat(MAX_DEAD_LETTER_PAYLOAD + 10);
      const [stored] = await store.deadLetters.insert(otherProject, [
        {
          interactionId: 'big',
          source: 'gateway',
          reason: 'write_failed',
          error: 'e',
          payload: big,
          repaired: false,
        },
      ]);
      expect(stored).toMatchObject({ payloadTruncated: true });
      const got = (await store.deadLetters.list(otherProject, { limit: 1 })).items[0]!;
      expect(got).toMatchObject({ interactionId: 'big', payloadTruncated: true });
      expect(got.payload.length).toBe(MAX_DEAD_LETTER_PAYLOAD);
    });

    it('pages newest first with a cursor', async () => {
      for (let i = 0; i < 5; i++)
        await store.deadLetters.insert(otherProject, [
          {
            interactionId: `p${i}`,
            source: 'gateway',
            reason: 'write_failed',
            error: 'e',
            payload: i,
            repaired: false,
          },
        ]);
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await store.deadLetters.list(otherProject, { limit: 3, cursor });
        seen.push(...page.items.map((d) => d.interactionId));
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      expect(seen).toHaveLength(7);
      expect(new Set(seen).size).toBe(7);
      // Newest first: p4 was written last (ids are time-ordered within a millisecond too).
      expect(seen[0]).toBe('p4');
    });
  });
}
