import type { ChildProcess } from 'node:child_process';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exited, freePort, runCli, spawnCli } from './test-utils/process.js';

async function signIn(url: string, email: string, password: string): Promise<number> {
  const res = await fetch(`${url}/api/v1/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  return res.status;
}

for (const target of testDatabases()) {
  describe(`ratchet users and the first owner on ${target.name}`, () => {
    let databaseUrl: string;
    let serve: ChildProcess;
    let url: string;
    let serveOutput = '';
    const env = () => ({ RATCHET_DATABASE_URL: databaseUrl });

    beforeAll(async () => {
      databaseUrl = await target.create();
      const port = await freePort();
      serve = spawnCli(['serve', '--port', String(port)], env());
      serve.stderr!.on('data', (d) => (serveOutput += d));
      serve.stdout!.on('data', (d) => (serveOutput += d));
      url = `http://127.0.0.1:${port}`;
      const deadline = Date.now() + 90_000;
      while (!/first run: created the owner/.test(serveOutput)) {
        if (serve.exitCode !== null || Date.now() > deadline) throw new Error(`serve: ${serveOutput}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }, 120_000);
    afterAll(async () => {
      serve?.kill('SIGTERM');
      if (serve) await exited(serve);
      await target.cleanup();
    });

    it("serve's first run creates an owner whose printed password signs in; a second run prints none", async () => {
      const match = /created the owner (\S+) of project "([^"]+)" with the password (\S+)/.exec(serveOutput)!;
      expect(match).not.toBeNull();
      const [, email, project, password] = match;
      expect(project).toBe('default');
      expect(await signIn(url, email!, password!)).toBe(201);
      const store = await Store.open(databaseUrl);
      try {
        const row = await store.db.selectFrom('users').select('password_hash').executeTakeFirstOrThrow();
        expect(row.password_hash).not.toContain(password!);
        const { createFirstOwner } = await import('./commands/users.js');
        expect(await createFirstOwner(store)).toBeUndefined();
      } finally {
        await store.close();
      }
    });

    it('adds a member with a printed password, changes the role, resets the password, removes them', async () => {
      const added = await runCli(
        ['users', 'add', '--email', 'Ann@Example.com', '--project', 'default', '--role', 'annotator'],
        env(),
      );
      expect(added.code, added.stderr).toBe(0);
      const password = /password \(shown once\): (\S+)/.exec(added.stdout)![1]!;
      expect(await signIn(url, 'ann@example.com', password)).toBe(201);

      const badRole = await runCli(
        ['users', 'set-role', '--email', 'ann@example.com', '--project', 'default', '--role', 'god'],
        env(),
      );
      expect(badRole.code).not.toBe(0);
      expect(badRole.stderr).toMatch(/role/);
      const setRole = await runCli(
        ['users', 'set-role', '--email', 'ann@example.com', '--project', 'default', '--role', 'viewer'],
        env(),
      );
      expect(setRole.code, setRole.stderr).toBe(0);
      const list = await runCli(['users', 'list', '--project', 'default'], env());
      expect(list.stdout).toMatch(/ann@example\.com.*viewer/);

      const reset = await runCli(['users', 'reset-password', '--email', 'ann@example.com'], env());
      expect(reset.code, reset.stderr).toBe(0);
      const fresh = /\(shown once\): (\S+)/.exec(reset.stdout)![1]!;
      expect(await signIn(url, 'ann@example.com', password)).toBe(401);
      expect(await signIn(url, 'ann@example.com', fresh)).toBe(201);

      const removed = await runCli(
        ['users', 'remove', '--email', 'ann@example.com', '--project', 'default'],
        env(),
      );
      expect(removed.code, removed.stderr).toBe(0);
      // The account stays but belongs to no project, so it cannot sign in anywhere.
      expect(await signIn(url, 'ann@example.com', fresh)).toBe(403);
    }, 120_000);
  });
}

for (const target of testDatabases()) {
  describe(`the first owner with two servers starting at once on ${target.name}`, () => {
    afterAll(async () => {
      await target.cleanup();
    });

    it('exactly one of them creates an owner; neither fails', async () => {
      const url = await target.create();
      const [a, b] = [await Store.open(url), await Store.open(url)];
      try {
        const { createFirstOwner } = await import('./commands/users.js');
        const made = await Promise.all([createFirstOwner(a), createFirstOwner(b)]);
        expect(made.filter(Boolean)).toHaveLength(1);
        const users = await a.accounts.listUsers();
        expect(users.map((u) => u.email)).toEqual(['owner@ratchet.local']);
        const project = await a.projects.getByName('default');
        expect(await a.accounts.roleOf(project!.id, users[0]!.id)).toBe('owner');
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}
