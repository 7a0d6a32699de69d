import { InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './test-utils/process.js';

const hour = 3_600_000;
const at = Date.UTC(2026, 10, 20, 9, 30);

/**
 * `ratchet rollups rebuild` on both databases: rows written behind the store's back (as a COPY
 * load or a restore writes them, so no hour was logged as stale) are missing from the dashboard's
 * figures until the rebuild, and counted after it; an unknown project is refused by name.
 */
for (const target of testDatabases()) {
  describe(`ratchet rollups rebuild on ${target.name}`, () => {
    let databaseUrl: string;
    let store: Store;
    let projectId: string;
    const calls = async () =>
      (await store.dashboard.modelHealth(projectId, { from: at - hour, to: at + hour, bucketMs: hour }))
        .flatMap((s) => s.buckets)
        .reduce((n, b) => n + b.calls, 0);

    beforeAll(async () => {
      databaseUrl = await target.create();
      store = await Store.open(databaseUrl);
      projectId = (await store.projects.create('loaded')).id;
      await store.interactions.insert(projectId, [
        parseInput(InteractionInput, {
          id: 'through-the-api',
          model: 'tiny',
          createdAt: at,
          messages: [{ role: 'user', content: 'hi' }],
          output: 'hello',
        }),
      ]);
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('counts rows loaded outside the API once rebuilt', async () => {
      expect(await calls()).toBe(1);
      const row = await store.db
        .selectFrom('interactions')
        .selectAll()
        .where('id', '=', 'through-the-api')
        .executeTakeFirstOrThrow();
      await store.db
        .insertInto('interactions')
        .values(
          ['copied-1', 'copied-2'].map((id) => ({
            ...row,
            id,
            messages: JSON.stringify(row.messages),
            output: JSON.stringify(row.output),
            parameters: JSON.stringify(row.parameters),
            metadata: JSON.stringify(row.metadata),
            tags: JSON.stringify(row.tags),
          })),
        )
        .execute();
      expect(await calls()).toBe(1);
      const rebuilt = await runCli(['rollups', 'rebuild', '--project', 'loaded'], {
        RATCHET_DATABASE_URL: databaseUrl,
      });
      expect(rebuilt.stderr).toBe('');
      expect(rebuilt.stdout).toMatch(/rebuilt rollups of loaded/);
      expect(await calls()).toBe(3);
      const unknown = await runCli(['rollups', 'rebuild', '--project', 'nope'], {
        RATCHET_DATABASE_URL: databaseUrl,
      });
      expect(unknown.code).not.toBe(0);
      expect(unknown.stderr).toMatch(/nope/);
    });
  });
}
