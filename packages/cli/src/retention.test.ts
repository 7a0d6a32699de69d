import type { ChildProcess } from 'node:child_process';
import { dayMs, InteractionInput, parseInput } from '@ratchet/core';
import { MONTHS_AHEAD, monthIndexOf, monthPartition, PARTITIONED_TABLES, Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exited, freePort, runCli, startServeProcess } from './test-utils/process.js';

const interaction = (id: string, userId: string, ageDays: number) =>
  parseInput(InteractionInput, {
    id,
    model: 'tiny',
    userId,
    messages: [{ role: 'user', content: `question ${id}` }],
    output: `answer ${id}`,
    createdAt: Date.now() - ageDays * dayMs,
  });

for (const target of testDatabases()) {
  describe(`retention and deletion from the CLI and ratchet serve on ${target.name}`, () => {
    let databaseUrl: string;
    let server: ChildProcess | undefined;
    const env = () => ({ RATCHET_DATABASE_URL: databaseUrl, RATCHET_RETENTION_CHECK_SECONDS: '1' });
    const ids = async () => {
      const store = await Store.open(databaseUrl);
      try {
        const project = await store.projects.getByName('kept');
        return (await store.interactions.list(project!.id, {}, { limit: 100 })).items.map((i) => i.id).sort();
      } finally {
        await store.close();
      }
    };

    beforeAll(async () => {
      databaseUrl = await target.create();
      const store = await Store.open(databaseUrl);
      const project = await store.projects.create('kept');
      await store.interactions.insert(project.id, [
        interaction('old-1', 'u1', 10),
        interaction('old-2', 'u2', 10),
        interaction('new-1', 'u1', 1),
        interaction('new-2', 'u3', 1),
      ]);
      await store.close();
    });
    afterAll(async () => {
      server?.kill('SIGTERM');
      if (server) await exited(server);
      await target.cleanup();
    });

    it('ratchet delete end-user removes that user only and prints counts, not content', async () => {
      const out = await runCli(['delete', 'end-user', 'u3', '--project', 'kept'], env());
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      expect(out.stdout).toContain('interactions 1');
      expect(out.stdout).not.toContain('question');
      expect(await ids()).toEqual(['new-1', 'old-1', 'old-2']);
    });

    // PostgreSQL only (SQLite has no partitions): the months ahead are dropped before the server
    // starts, so only its own retention pass can have made them again.
    const monthsAhead = () => {
      const first = monthIndexOf(Date.now());
      return PARTITIONED_TABLES.flatMap((table) =>
        Array.from({ length: MONTHS_AHEAD }, (_, i) => monthPartition(table, first + 1 + i).name),
      ).sort();
    };
    const partitionNames = async () => {
      const store = await Store.open(databaseUrl);
      try {
        const lists = await Promise.all(PARTITIONED_TABLES.map((t) => store.partitions.list(t)));
        return lists.flat().map((p) => p.name);
      } finally {
        await store.close();
      }
    };

    it('ratchet serve applies the policy set by the CLI on its schedule', async () => {
      if (target.name === 'postgres') {
        const store = await Store.open(databaseUrl);
        try {
          for (const name of monthsAhead()) await store.db.schema.dropTable(name).ifExists().execute();
        } finally {
          await store.close();
        }
        expect(await partitionNames()).not.toEqual(expect.arrayContaining(monthsAhead()));
      }
      const set = await runCli(['retention', 'set', '--project', 'kept', '--days', '7'], env());
      expect(set.code).toBe(0);
      const bad = await runCli(['retention', 'set', '--project', 'kept', '--days', '0'], env());
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain('days');
      const port = await freePort();
      server = await startServeProcess(env(), port);
      const deadline = Date.now() + 15_000;
      let left = await ids();
      while (left.length > 1 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        left = await ids();
      }
      expect(left).toEqual(['new-1']);
      // The same pass makes the coming months' partitions on PostgreSQL (a no-op on SQLite).
      if (target.name === 'postgres')
        expect(await partitionNames()).toEqual(expect.arrayContaining(monthsAhead()));
      else expect(await partitionNames()).toEqual([]);
    }, 60_000);
  });
}
