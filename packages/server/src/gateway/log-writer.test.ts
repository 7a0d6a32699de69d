import type { ParsedInteraction } from '@ratchet/core';
import { newId } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../metrics.js';
import { InteractionLogWriter } from './log-writer.js';

function interaction(i: number): ParsedInteraction & { id: string } {
  return {
    id: newId(),
    model: 'gpt-local',
    messages: [{ role: 'user', content: `question ${i}` }],
    output: { role: 'assistant', content: `answer ${i}` },
    status: 'ok',
    source: 'gateway',
  };
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

for (const target of testDatabases()) {
  describe(`gateway log writer on ${target.name}: writes stay off the calls' way`, () => {
    let store: Store;
    let projectId: string;
    const log = Fastify({ logger: false }).log;

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.getOrCreate('log-writer')).id;
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    async function stored(ids: string[]): Promise<number> {
      const rows = await store.db
        .selectFrom('interactions')
        .select('id')
        .where('project_id', '=', projectId)
        .where('id', 'in', ids)
        .execute();
      return rows.length;
    }

    it('commits a large batch in slices with the event loop free between them, and stores all of it', async () => {
      const writer = new InteractionLogWriter(store, createMetrics(), log, 60_000, 10_000, { sliceSize: 4 });
      const items = Array.from({ length: 10 }, (_, i) => interaction(i));
      for (const item of items) writer.enqueue(projectId, item);
      // What another callback (a request, an upstream answer) would see while the batch is written.
      const seen: number[] = [];
      let done = false;
      const watch = () => {
        seen.push(writer.writes);
        if (!done) setImmediate(watch);
      };
      setImmediate(watch);
      await writer.flush();
      done = true;
      expect(writer.writes).toBe(3);
      // Other work ran after the first slice and before the last: the batch never held the loop.
      expect(seen.some((w) => w > 0 && w < 3)).toBe(true);
      expect(await stored(items.map((i) => i.id))).toBe(10);
      await writer.close();
    });

    it('never writes on the turn of the enqueue that asks for a write (its caller may still be answering)', async () => {
      // A batch size of 1: every enqueue asks for a write at once.
      const writer = new InteractionLogWriter(store, createMetrics(), log, 60_000, 1);
      const item = interaction(0);
      writer.enqueue(projectId, item);
      expect(writer.depth).toBe(1);
      expect(writer.writes).toBe(0);
      for (let i = 0; i < 50 && writer.writes === 0; i++) await nextTurn();
      // The buffer empties when a write starts; flush waits for that write to commit (on SQLite's
      // writer thread it commits a moment later, so an empty buffer alone is not yet a stored row).
      await writer.flush();
      expect(await stored([item.id])).toBe(1);
      await writer.close();
    });

    it('writes from the enqueue once most of the interval has passed, without waiting for the timer', async () => {
      const intervalMs = 2000;
      const writer = new InteractionLogWriter(store, createMetrics(), log, intervalMs, 10_000);
      // Right after a write the next one waits for the timer ...
      await writer.flush();
      const early = interaction(1);
      writer.enqueue(projectId, early);
      await sleep(100);
      expect(writer.has(projectId, early.id)).toBe(true);
      await writer.flush();
      // ... but once 80% of the interval has gone by, the enqueue itself starts it.
      await sleep(intervalMs * 0.85);
      const late = interaction(2);
      const enqueuedAt = Date.now();
      writer.enqueue(projectId, late);
      while (writer.has(projectId, late.id)) await sleep(5);
      expect(Date.now() - enqueuedAt).toBeLessThan(intervalMs / 2);
      expect(await stored([early.id, late.id])).toBe(2);
      await writer.close();
    });
  });
}
