import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { exited, freePort, startServeProcess } from './test-utils/process.js';

const BATCH = 10;

/**
 * Kills the server with SIGKILL in the middle of a load of feedback writes, restarts it, and
 * checks that every write it acknowledged is there, and that no batch was half-written.
 */
for (const target of testDatabases()) {
  describe(`durability on ${target.name}`, () => {
    afterAll(() => target.cleanup());

    it('keeps every acknowledged feedback write across a SIGKILL, and no batch half-written', async () => {
      const url = await target.create();
      const env = { RATCHET_DATABASE_URL: url, RATCHET_RATE_LIMIT_PER_SECOND: '0' };
      const setup = await Store.open(url);
      const project = await setup.projects.create('durable');
      const key = (await setup.projects.createKey(project.id, 'secret')).key;
      await setup.interactions.insert(
        project.id,
        Array.from({ length: 50 }, (_, i) => ({
          id: `i-${i}`,
          model: 'm',
          messages: [{ role: 'user' as const, content: `q${i}` }],
          output: { role: 'assistant' as const, content: 'a' },
          status: 'ok' as const,
          source: 'api' as const,
        })),
      );
      await setup.close();

      const port = await freePort();
      const server = await startServeProcess(env, port);
      const acked: string[] = [];
      const ackedBatches: string[] = [];
      const attemptedBatches: string[] = [];
      let stop = false;
      let seq = 0;
      const worker = async (w: number) => {
        while (!stop) {
          const n = seq++;
          const batch = n % 3 === 0;
          const key0 = `w${w}-${n}`;
          const event = (k: string, i: number) => ({
            kind: 'thumbs',
            interactionId: `i-${i % 50}`,
            raterId: `r-${w}`,
            value: 'up',
            idempotencyKey: k,
          });
          const body = batch
            ? { items: Array.from({ length: BATCH }, (_, i) => event(`${key0}-${i}`, n + i)) }
            : event(key0, n);
          if (batch) attemptedBatches.push(key0);
          try {
            const res = await fetch(`http://127.0.0.1:${port}/api/v1/feedback`, {
              method: 'POST',
              headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
              body: JSON.stringify(body),
            });
            if (res.status === 201) (batch ? ackedBatches : acked).push(key0);
          } catch {
            return; // the server died under us: this write was never acknowledged
          }
        }
      };
      const workers = Array.from({ length: 8 }, (_, w) => worker(w));
      // Kill mid-load: once enough writes were acknowledged (however fast this machine is today).
      const deadline = Date.now() + 60_000;
      while (acked.length + ackedBatches.length < 100 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      server.kill('SIGKILL');
      stop = true;
      await Promise.all(workers);
      await exited(server);
      expect(acked.length + ackedBatches.length).toBeGreaterThanOrEqual(100);

      const restarted = await startServeProcess(env, port);
      try {
        const store = await Store.open(url);
        try {
          const rows = await store.db
            .selectFrom('feedback')
            .select('idempotency_key')
            .where('project_id', '=', project.id)
            .execute();
          const present = new Set(rows.map((r) => r.idempotency_key));
          const lost = acked.filter((k) => !present.has(k));
          expect(lost).toEqual([]);
          for (const b of attemptedBatches) {
            const count = Array.from({ length: BATCH }, (_, i) => `${b}-${i}`).filter((k) =>
              present.has(k),
            ).length;
            if (ackedBatches.includes(b)) expect(count).toBe(BATCH);
            else expect([0, BATCH]).toContain(count);
          }
        } finally {
          await store.close();
        }
        // The restarted server serves the surviving data.
        const res = await fetch(`http://127.0.0.1:${port}/api/v1/interactions/i-0`, {
          headers: { authorization: `Bearer ${key}` },
        });
        expect(res.status).toBe(200);
      } finally {
        restarted.kill('SIGTERM');
        await exited(restarted);
      }
    }, 240_000);
  });
}
