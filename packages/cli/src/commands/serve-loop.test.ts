import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { exited, freePort, runCli, spawnCli } from '../test-utils/process.js';

describe('ratchet serve --loop-policy', () => {
  const db = sqliteTestDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'ratchet-serve-loop-'));
  afterAll(() => db.cleanup());

  it('runs a loop pass at start and says what the trigger waits for; refuses a bad policy file', async () => {
    const env = { RATCHET_DATABASE_URL: await db.create(), RATCHET_LOG_LEVEL: 'info' };
    expect((await runCli(['keys', 'create', '--project', 'app'], env)).code).toBe(0);
    const gateway = join(dir, 'gateway.yaml');
    writeFileSync(gateway, 'upstreams:\n  worker:\n    baseURL: http://127.0.0.1:9/v1\n');
    const policy = join(dir, 'loop.yaml');
    writeFileSync(
      policy,
      'policies:\n  - route: support-bot\n    baseModel: /models/base\n    trigger: { minNewFeedback: 500 }\n',
    );

    const port = await freePort();
    const child = spawnCli(
      [
        'serve',
        '--port',
        String(port),
        '--gateway-config',
        gateway,
        '--loop-policy',
        policy,
        '--loop-project',
        'app',
      ],
      env,
    );
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    const deadline = Date.now() + 60_000;
    while (!output.includes('a round starts at 500') && Date.now() < deadline && child.exitCode === null)
      await new Promise((r) => setTimeout(r, 200));
    child.kill('SIGTERM');
    await exited(child);
    expect(output).toContain('support-bot: 0 new feedback events, a round starts at 500');

    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'policies:\n  - route: support-bot\n');
    const refused = await runCli(
      [
        'serve',
        '--port',
        String(await freePort()),
        '--gateway-config',
        gateway,
        '--loop-policy',
        bad,
        '--loop-project',
        'app',
      ],
      env,
    );
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/bad\.yaml.*policies\.0\.baseModel/s);
  }, 120_000);
});
