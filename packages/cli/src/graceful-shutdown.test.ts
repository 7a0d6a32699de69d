import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LocalUpstream, startLocalUpstream } from '@ratchet/server/testing';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { exited, freePort, startServeProcess } from './test-utils/process.js';

/**
 * SIGTERM to `ratchet serve` while a call is under way: the call completes, the server stops
 * taking new ones, and the call is in the database (its interaction log flushed) when it exits 0.
 */
describe('ratchet serve shuts down gracefully', () => {
  const db = sqliteTestDatabase();
  let upstream: LocalUpstream | undefined;
  afterAll(async () => {
    await upstream?.close();
    await db.cleanup();
  });

  it('a streamed call in flight during SIGTERM completes and is logged; the exit code is 0', async () => {
    const url = await db.create();
    const store = await Store.open(url);
    const project = await store.projects.create('app');
    const key = (await store.projects.createKey(project.id, 'secret')).key;
    await store.close();
    // A slow upstream: each streamed word a quarter of a second apart.
    upstream = await startLocalUpstream({
      answer: () => 'one two three four five six seven eight',
      chunkDelayMs: 250,
      record: false,
    });
    const gateway = join(mkdtempSync(join(tmpdir(), 'ratchet-graceful-')), 'gateway.json');
    writeFileSync(
      gateway,
      JSON.stringify({ upstreams: { slow: { baseURL: upstream.url } }, defaultUpstream: 'slow' }),
    );
    const port = await freePort();
    const child = await startServeProcess(
      { RATCHET_DATABASE_URL: url, RATCHET_GATEWAY_CONFIG: gateway, RATCHET_LOG_LEVEL: 'info' },
      port,
    );
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));

    const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny',
        stream: true,
        messages: [{ role: 'user', content: 'count for me' }],
      }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = decoder.decode((await reader.read()).value);
    // The first chunk is here, the rest is still coming: now the server is told to stop.
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    // A new call meanwhile finds the server closing, not half-served.
    const late = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (r) => r.status,
      () => 'refused',
    );
    expect([503, 'refused']).toContain(late);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    expect(text).toContain('eight');
    expect(text).toContain('[DONE]');
    const stopping = Date.now();
    await exited(child);
    expect(child.exitCode).toBe(0);
    // The call ended a second or two after the signal; exiting then must not wait on timers.
    expect(Date.now() - stopping).toBeLessThan(10_000);
    expect(output).toContain('shutting down');

    const after = await Store.open(url);
    try {
      const [logged] = (await after.interactions.list(project.id)).items;
      expect(logged).toMatchObject({ output: { content: 'one two three four five six seven eight' } });
    } finally {
      await after.close();
    }
  }, 120_000);
});
