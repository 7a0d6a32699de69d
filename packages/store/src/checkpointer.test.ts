import { existsSync, statSync } from 'node:fs';
import { InteractionInput, parseInput } from '@ratchet/core';
import { afterAll, describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { sqliteTestDatabase } from './testing.js';

describe('WAL checkpoints off the event loop (SQLite)', () => {
  const target = sqliteTestDatabase();
  afterAll(() => target.cleanup());

  it('copies committed writes into the database file while the writer only appends, and closes cleanly', async () => {
    const url = await target.create();
    const file = url.slice('sqlite:'.length);
    const store = await Store.open(url);
    const project = await store.projects.getOrCreate('wal');
    const before = statSync(file).size;
    const text = 'x'.repeat(2000);
    const items = Array.from({ length: 500 }, (_, i) =>
      parseInput(InteractionInput, {
        id: `i-${i}`,
        model: 'm',
        messages: [{ role: 'user', content: text }],
        output: text,
      }),
    );
    await store.interactions.insert(project.id, items);
    // About 2 MB of pages: far below the writer's own threshold (20,000 pages), so only the
    // checkpoint thread can have moved them into the database file.
    const deadline = Date.now() + 10_000;
    while (statSync(file).size < before + 1_000_000 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(statSync(file).size).toBeGreaterThan(before + 1_000_000);
    expect(await store.interactions.get(project.id, 'i-499')).toBeDefined();
    await store.close();
    // The thread closed its connection first, so the writer's close was the last one and
    // removed the WAL; a connection left open would have kept it.
    expect(existsSync(`${file}-wal`)).toBe(false);
    const reopened = await Store.open(url);
    expect(await reopened.interactions.get(project.id, 'i-0')).toBeDefined();
    await reopened.close();
  });
});
