import type { ChildProcess } from 'node:child_process';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exited, freePort, runCli, startServeProcess } from './test-utils/process.js';

async function status(url: string, key: string): Promise<number> {
  return (await fetch(`${url}/api/v1/interactions`, { headers: { authorization: `Bearer ${key}` } })).status;
}

/** Asks until the key is refused; returns how many requests it took (1: the next one). */
async function requestsUntilRefused(url: string, key: string, deadlineMs: number): Promise<number> {
  const deadline = Date.now() + deadlineMs;
  for (let n = 1; ; n++) {
    if ((await status(url, key)) === 401) return n;
    if (Date.now() > deadline) return Number.POSITIVE_INFINITY;
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const target of testDatabases()) {
  describe(`revocation across two ratchet serve processes on ${target.name}`, () => {
    let databaseUrl: string;
    const servers: ChildProcess[] = [];
    let a: string;
    let b: string;
    let secret: string;
    const env = () => ({ RATCHET_DATABASE_URL: databaseUrl });

    beforeAll(async () => {
      databaseUrl = await target.create();
      const store = await Store.open(databaseUrl);
      const project = await store.projects.create('keys');
      secret = (await store.projects.createKey(project.id, 'secret')).key;
      await store.close();
      const [pa, pb] = [await freePort(), await freePort()];
      servers.push(await startServeProcess(env(), pa), await startServeProcess(env(), pb));
      a = `http://127.0.0.1:${pa}`;
      b = `http://127.0.0.1:${pb}`;
    }, 180_000);
    afterAll(async () => {
      for (const s of servers) s.kill('SIGTERM');
      await Promise.all(servers.map(exited));
      await target.cleanup();
    });

    it('the CLI creates a key with scopes; revoked through one server, the other refuses it', async () => {
      const created = await runCli(
        ['keys', 'create', '--project', 'keys', '--scopes', 'read,admin', '--json'],
        env(),
      );
      expect(created.code).toBe(0);
      const key = JSON.parse(created.stdout) as { id: string; key: string; scopes: string[] };
      expect(key.scopes).toEqual(['read', 'admin']);
      // Both servers have it cached.
      expect(await status(a, key.key)).toBe(200);
      expect(await status(b, key.key)).toBe(200);
      const revoked = await fetch(`${a}/api/v1/keys/${key.id}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${secret}` },
      });
      expect(revoked.status).toBe(200);
      const revokedAt = performance.now();
      expect(await status(a, key.key)).toBe(401);
      // PostgreSQL: NOTIFY at commit reaches the other server before the next request. SQLite has
      // no NOTIFY: the other process polls the key version every 250 ms.
      if (target.name === 'postgres') expect(await status(b, key.key)).toBe(401);
      else expect(await requestsUntilRefused(b, key.key, 1000)).toBeLessThan(Number.POSITIVE_INFINITY);
      console.log(
        `${target.name}: the other server refused the revoked key ${(performance.now() - revokedAt).toFixed(0)} ms after the revoke answered`,
      );
    });

    it('a key revoked by `ratchet keys revoke` is refused by both running servers', async () => {
      const created = JSON.parse(
        (await runCli(['keys', 'create', '--project', 'keys', '--scopes', 'read', '--json'], env())).stdout,
      ) as { id: string; key: string };
      expect(await status(a, created.key)).toBe(200);
      expect(await status(b, created.key)).toBe(200);
      const revoked = await runCli(['keys', 'revoke', '--project', 'keys', created.id], env());
      expect(revoked.code).toBe(0);
      for (const url of [a, b]) {
        if (target.name === 'postgres') expect(await status(url, created.key)).toBe(401);
        else
          expect(await requestsUntilRefused(url, created.key, 1000)).toBeLessThan(Number.POSITIVE_INFINITY);
      }
    });

    it('refuses a bad scope on the command line naming it', async () => {
      const bad = await runCli(['keys', 'create', '--project', 'keys', '--scopes', 'read,root'], env());
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain('scopes.1');
    });
  });
}
