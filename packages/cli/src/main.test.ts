import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './test-utils/process.js';

describe('ratchet CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ratchet-cli-'));
  const env = { RATCHET_DATABASE_URL: `sqlite:${join(dir, 'r.db')}` };

  it('prints help for every command', async () => {
    const root = await runCli(['--help']);
    expect(root.code).toBe(0);
    for (const cmd of ['serve', 'keys', 'import', 'export', 'sample', 'demo'])
      expect(root.stdout).toContain(cmd);
    const keys = await runCli(['keys', 'create', '--help']);
    expect(keys.stdout).toContain('--kind');
  });

  it('refuses a demo population or seed it does not know before starting anything', async () => {
    const population = await runCli(['demo', '--population', 'everyone', '--exit'], env);
    expect(population.code).not.toBe(0);
    expect(population.stderr).toMatch(/--population.*everyone.*default, realistic/s);
    const seed = await runCli(['demo', '--seed', 'seven', '--exit'], env);
    expect(seed.code).not.toBe(0);
    expect(seed.stderr).toContain('--seed');
    const help = await runCli(['demo', '--help']);
    for (const flag of ['--seed', '--population', '--record', '--canary-chats'])
      expect(help.stdout).toContain(flag);
  }, 120_000); // three CLI starts; on the shared machine each took 10 s

  it('creates keys, loads the demo sample and exports it as JSONL', async () => {
    const created = await runCli(['keys', 'create', '--project', 'p1', '--kind', 'public', '--json'], env);
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({
      project: 'p1',
      kind: 'public',
      key: expect.stringMatching(/^rk_pub_/),
    });

    const demo = await runCli(['sample', '--exit', '--port', '0', '--calls', '40'], env);
    expect(demo.code).toBe(0);
    expect(demo.stdout).toContain('40 simulated support chats went through the gateway');

    const out = join(dir, 'demo.jsonl');
    const exported = await runCli(['export', '--project', 'demo', '--out', out], env);
    expect(exported.code).toBe(0);
    const lines = readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(40);
    expect(lines.every((l) => l.route === 'support-bot' && l.source === 'gateway')).toBe(true);
    expect(lines.some((l) => l.feedback.length > 0)).toBe(true);

    const raters = await runCli(['raters', '--project', 'demo', '--calibrate'], env);
    expect(raters.code).toBe(0);
    expect(raters.stderr).toMatch(/calibrated \d+ ratings of \d+ interactions/);
    expect(raters.stdout).toContain('reliability');
    const data = { ...env, RATCHET_DATA_DIR: join(dir, 'data') };
    const built = await runCli(
      ['dataset', 'build', '--project', 'demo', '--name', 'd1', '--method', 'rwsft', '--no-curation'],
      data,
    );
    expect(built.code).toBe(0);
    expect(built.stdout).toMatch(/^d1@1 \(rwsft\): \d+ rows/);
    const bad = await runCli(
      [
        'dataset',
        'build',
        '--project',
        'demo',
        '--name',
        'd1',
        '--method',
        'kto',
        '--options',
        '{"margin": 5}',
      ],
      data,
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('options: margin');
  }, 120_000);

  it('fails with a clear message and exit code on bad input', async () => {
    const res = await runCli(['export', '--project', 'no-such-project'], env);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('no project named "no-such-project"');
    const badKind = await runCli(['keys', 'create', '--project', 'x', '--kind', 'root'], env);
    expect(badKind.code).not.toBe(0);
    expect(badKind.stderr).toContain('Allowed choices are secret, public');
  });
});
