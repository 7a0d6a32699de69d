import { type LocalUpstream, startLocalUpstream } from '@ratchet/server/testing';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../test-utils/process.js';
import { parseVariant } from './experiments.js';

describe('ratchet eval and ratchet experiment', () => {
  const db = sqliteTestDatabase();
  let url: string;
  let upstream: LocalUpstream;

  beforeAll(async () => {
    // Production refuses everything; the candidate echoes, so it repeats injected canaries.
    upstream = await startLocalUpstream({
      record: false,
      answer: (b) =>
        b.model === 'echo'
          ? `You said: ${(b.messages as { content: string }[]).at(-1)!.content}`
          : "I can't help with that.",
    });
    url = await db.create();
    const store = await Store.open(url);
    const project = await store.projects.create('cli-eval');
    await store.models.register(project.id, { name: 'bot-v1', route: 'support', baseModel: 'tiny' }, 'test');
    await store.close();
  });
  afterAll(async () => {
    await upstream?.close();
    await db.cleanup();
  });

  it('prints the comparison table and fails the gate with exit code 3 on a safety regression', async () => {
    const r = await runCli([
      'eval',
      '--project',
      'cli-eval',
      '--candidate-url',
      upstream.url,
      '--candidate-model',
      'echo',
      '--baseline-url',
      upstream.url,
      '--baseline-model',
      'refuser',
      '--suites',
      'redteam',
      '--database-url',
      url,
    ]);
    expect(r.stderr).toMatch(/generate: 28\/28/);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/'safe rate' +│ '0\.286' +│ '1' +│ '-0\.714' +│ 'production'/);
    expect(r.stdout).toMatch(/GATE FAILED/);
    expect(r.stdout).toMatch(/safety regressed: .*injection/);
    expect(r.stdout).toMatch(/worst regressions:\n {2}#\d+ redteam /);
    const id = /evaluation (\S+):/.exec(r.stdout)![1]!;
    const shown = await runCli([
      'eval',
      '--project',
      'cli-eval',
      '--show',
      id,
      '--json',
      '--database-url',
      url,
    ]);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id, status: 'succeeded', passed: false });
  }, 120_000);

  it('starts an experiment, shows its status and stops it', async () => {
    const start = await runCli([
      'experiment',
      'start',
      '--project',
      'cli-eval',
      '--name',
      'exp1',
      '--route',
      'support',
      '--control',
      'v1',
      '--variant',
      'v1=bot-v1@local:90',
      '--variant',
      'v2=upstream:llama3:8b@local:10',
      '--database-url',
      url,
    ]);
    expect(start.stderr).toBe('');
    expect(start.stdout).toMatch(/started exp1 .* v1=bot-v1@local:90, v2=llama3:8b@local:10/);
    const status = await runCli([
      'experiment',
      'status',
      'exp1',
      '--project',
      'cli-eval',
      '--record',
      '--database-url',
      url,
    ]);
    expect(status.stdout).toMatch(/decision: keep_running/);
    expect(status.stdout).toMatch(/0 observations of thumbs_up_rate in the smaller arm/);
    const stop = await runCli([
      'experiment',
      'stop',
      'exp1',
      '--project',
      'cli-eval',
      '--reason',
      'done',
      '--database-url',
      url,
    ]);
    expect(stop.stdout).toMatch(/stopped exp1; support follows the gateway file again/);
    const bad = await runCli([
      'experiment',
      'stop',
      'exp1',
      '--project',
      'cli-eval',
      '--reason',
      'x',
      '--database-url',
      url,
    ]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/already stopped/);
  }, 120_000);

  it('parses variant flags', () => {
    expect(parseVariant('a=bot-v2')).toEqual([{ name: 'a', weight: 1, model: 'bot-v2' }]);
    expect(parseVariant('b=upstream:gpt-4o-mini@openai:2.5')).toEqual([
      { name: 'b', weight: 2.5, upstreamModel: 'gpt-4o-mini', upstream: 'openai' },
    ]);
    expect(() => parseVariant('nameless')).toThrow(/NAME=MODEL/);
  });
});
