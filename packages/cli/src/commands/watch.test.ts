import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exited, freePort, runCli, startServeProcess } from '../test-utils/process.js';
import { plantHarm } from '../test-utils/watch.js';

const secret = 'whsec-cli';

for (const target of testDatabases()) {
  describe(`ratchet watch and the guardrail timer of ratchet serve on ${target.name}`, () => {
    let url: string;
    let store: Store;
    let projectId: string;
    const received: { signature: string; body: string }[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push({ signature: String(req.headers['x-ratchet-signature']), body });
        res.writeHead(200).end();
      });
    });
    let hookUrl: string;

    beforeAll(async () => {
      url = await target.create();
      store = await Store.open(url);
      projectId = (await store.projects.create('watched')).id;
      await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
      hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    }, 60_000);
    afterAll(async () => {
      await store?.close();
      await new Promise<void>((r) => receiver.close(() => r()));
      await target.cleanup();
    });

    const signedBy = (r: { signature: string; body: string }, key: string) => {
      const [, ts, mac] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(r.signature) ?? [];
      return mac !== undefined && createHmac('sha256', key).update(`${ts}.${r.body}`).digest('hex') === mac;
    };

    it('`watch status` shows the open watch; `watch check` rolls back the harm and sends the signed webhook', async () => {
      await plantHarm(store, projectId, 'cli');
      const env = {
        RATCHET_DATABASE_URL: url,
        RATCHET_GUARDRAIL_WEBHOOK_URL: hookUrl,
        RATCHET_GUARDRAIL_WEBHOOK_SECRET: secret,
      };
      const status = await runCli(['watch', 'status', '--project', 'watched'], env);
      expect(status.stdout).toMatch(/^cli: cli-bad watched against cli-good \(holdback 50%\), watching/);
      const check = await runCli(['watch', 'check', '--project', 'watched'], env);
      expect(check.code, check.stderr).toBe(0);
      expect(check.stdout).toMatch(
        /^cli: rollback \(webhook: 200\): thumbs_up_rate: new 0\.0000 \(30 users\) vs holdback 1\.0000/,
      );
      expect((await store.models.production(projectId, 'cli'))?.name).toBe('cli-good');
      const after = await runCli(['watch', 'status', '--project', 'watched', '--all'], env);
      expect(after.stdout).toContain('rolled_back');
      expect(after.stdout).toMatch(/closed by guardrail: guardrail: the promoted model is worse/);
      expect(after.stdout).toMatch(/thumbs_up_rate +new 0 +holdback 1 +users 30\/30/);
      expect(received).toHaveLength(1);
      expect(signedBy(received[0]!, secret)).toBe(true);
      expect(signedBy(received[0]!, 'another key')).toBe(false);
      // Half a webhook configuration is refused, not silently unsigned.
      const half = await runCli(['watch', 'check', '--project', 'watched'], {
        RATCHET_DATABASE_URL: url,
        RATCHET_GUARDRAIL_WEBHOOK_URL: hookUrl,
      });
      expect(half.code).not.toBe(0);
      expect(half.stderr).toContain('go together');
    }, 120_000);

    it('`ratchet serve` looks at open watches on its timer and rolls back a harmful promotion', async () => {
      await plantHarm(store, projectId, 'served');
      const child = await startServeProcess(
        {
          RATCHET_DATABASE_URL: url,
          RATCHET_WATCH_LOOK_SECONDS: '1',
          RATCHET_GUARDRAIL_WEBHOOK_URL: hookUrl,
          RATCHET_GUARDRAIL_WEBHOOK_SECRET: secret,
        },
        await freePort(),
      );
      try {
        await expect
          .poll(async () => (await store.models.production(projectId, 'served'))?.name, {
            timeout: 30_000,
            interval: 250,
          })
          .toBe('served-good');
        const [rolled] = await store.audit.list(projectId, { action: 'model.rolled_back', limit: 1 });
        expect(rolled).toMatchObject({ actor: 'guardrail', details: { route: 'served' } });
        await expect.poll(() => received.length, { timeout: 10_000 }).toBe(2);
        expect(JSON.parse(received[1]!.body)).toMatchObject({
          route: 'served',
          restored: { name: 'served-good' },
        });
      } finally {
        child.kill('SIGTERM');
        await exited(child);
      }
    }, 180_000);
  });
}
