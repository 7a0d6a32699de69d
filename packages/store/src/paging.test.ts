import { FeedbackInput, InteractionInput, parseInput, RatchetError } from '@ratchet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from './paging.js';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

/** Every page of a list, following `nextCursor` from the first. */
async function walk<T>(list: (cursor?: string) => Promise<Page<T>>): Promise<T[][]> {
  const pages: T[][] = [];
  let cursor: string | undefined;
  do {
    const page = await list(cursor);
    pages.push(page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return pages;
}

const at = Date.UTC(2026, 10, 20);

/**
 * Keyset paging (paging.ts) of every list that grows with history, on both databases:
 * interactions, runs, the audit log, raters, dead letters and usage records. Walking the pages
 * two rows at a time gives every row once, in the list's order, including rows that share a
 * timestamp; a row written while a client is between pages does not shift or repeat the rest;
 * a cursor the API did not hand out is refused naming `cursor`.
 */
for (const target of testDatabases()) {
  describe(`cursor paging on ${target.name}`, () => {
    let store: Store;
    let projectId: string;

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('acme')).id;
      // Seven calls, three of them in the same millisecond.
      await store.interactions.insert(
        projectId,
        [0, 1, 1, 1, 2, 3, 4].map((ms, i) =>
          parseInput(InteractionInput, {
            id: `i-${i}`,
            model: 'tiny',
            createdAt: at + ms,
            messages: [{ role: 'user', content: 'hi' }],
            output: 'hello',
          }),
        ),
      );
      // Raters with 3, 2, 2 and 1 feedback events (two share a count).
      const ratings = { r3: 3, r2a: 2, r2b: 2, r1: 1 };
      await store.feedback.insert(
        projectId,
        Object.entries(ratings).flatMap(([raterId, n]) =>
          Array.from({ length: n }, (_, k) =>
            parseInput(FeedbackInput, { kind: 'thumbs', interactionId: `i-${k}`, raterId, value: 'up' }),
          ),
        ),
      );
      for (let i = 0; i < 5; i++) {
        await store.runs.create(projectId, {
          method: 'sft',
          baseModel: 'tiny',
          datasetId: null,
          spec: {},
          request: {},
          outputDir: `/tmp/run-${i}`,
        });
        await store.audit.record({
          projectId,
          actor: 'test',
          action: 'test.done',
          subjectType: 'thing',
          subjectId: `t-${i}`,
          details: {},
        });
        await store.usage.insert(projectId, {
          kind: 'embeddings',
          model: 'embed',
          upstream: 'local',
          inputs: 1,
          latencyMs: 3,
          status: 'ok',
          createdAt: at + (i % 2),
        });
      }
      await store.deadLetters.insert(
        projectId,
        Array.from({ length: 5 }, (_, i) => ({
          interactionId: `d-${i}`,
          source: 'api',
          reason: 'too_deep' as const,
          error: 'too deep',
          payload: { i },
          repaired: false,
        })),
      );
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    /** Pages of two: every row once, in the order of one big page. */
    const expectComplete = async <T extends { id: string }>(
      list: (page: { limit: number; cursor?: string }) => Promise<Page<T>>,
      total: number,
    ) => {
      const all = (await list({ limit: 1000 })).items.map((r) => r.id);
      expect(all).toHaveLength(total);
      const pages = await walk((cursor) => list({ limit: 2, ...(cursor ? { cursor } : {}) }));
      expect(pages.map((p) => p.length)).toEqual([
        ...Array(Math.floor(total / 2)).fill(2),
        ...(total % 2 ? [1] : []),
      ]);
      expect(pages.flat().map((r) => r.id)).toEqual(all);
    };

    it('walks every list a page at a time, ties by id included', async () => {
      await expectComplete((p) => store.interactions.list(projectId, {}, p), 7);
      await expectComplete((p) => store.runs.page(projectId, p), 5);
      await expectComplete((p) => store.audit.page(projectId, { ...p, action: 'test.done' }), 5);
      await expectComplete((p) => store.raters.page(projectId, p), 4);
      await expectComplete((p) => store.deadLetters.list(projectId, p), 5);
      await expectComplete((p) => store.usage.list(projectId, p), 5);
      const raters = (await store.raters.page(projectId, { limit: 10 })).items;
      expect(raters.map((r) => r.feedbackCount)).toEqual([3, 2, 2, 1]);
    });

    it('a row written between pages neither shifts nor repeats the rest', async () => {
      const first = await store.interactions.list(projectId, {}, { limit: 3 });
      await store.interactions.insert(projectId, [
        parseInput(InteractionInput, {
          id: 'newest',
          model: 'tiny',
          createdAt: at + 10,
          messages: [{ role: 'user', content: 'hi' }],
          output: 'hello',
        }),
      ]);
      const rest = await walk((cursor) =>
        store.interactions.list(projectId, {}, { limit: 3, cursor: cursor ?? first.nextCursor! }),
      );
      expect([...first.items, ...rest.flat()].map((i) => i.id)).toEqual([
        'i-6',
        'i-5',
        'i-4',
        ...['i-3', 'i-2', 'i-1'].sort().reverse(),
        'i-0',
      ]);
    });

    it('refuses a cursor it did not hand out, naming the field', async () => {
      for (const cursor of ['nonsense', Buffer.from('[-1,"x"]').toString('base64url')]) {
        const err = await store.runs.page(projectId, { cursor }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(RatchetError);
        expect(err).toMatchObject({ code: 'invalid_request', path: 'cursor' });
      }
    });
  });
}
