import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';

const hardening = {
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

function expectHardened(headers: Headers): void {
  for (const [name, value] of Object.entries(hardening))
    expect({ name, value: headers.get(name) }).toEqual({ name, value });
  const csp = headers.get('content-security-policy') ?? '';
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).toContain("script-src 'self'");
  expect(csp).not.toContain('unsafe-inline');
}

describe('security headers', () => {
  const db = sqliteTestDatabase();
  let t: TestServer;
  let locked: TestServer;
  let webDir: string;

  beforeAll(async () => {
    // A stand-in dashboard folder: what matters here is what the server sends with its files.
    webDir = mkdtempSync(join(tmpdir(), 'ratchet-web-'));
    mkdirSync(join(webDir, 'assets'));
    writeFileSync(
      join(webDir, 'index.html'),
      '<!doctype html><script type="module" src="/assets/a.js"></script>',
    );
    writeFileSync(join(webDir, 'assets/a.js'), 'console.log(1)');
    process.env.RATCHET_WEB_DIR = webDir;
    t = await startTestServer(await db.create());
    locked = await startTestServer(await db.create(), { config: { metricsRequireKey: true } });
    delete process.env.RATCHET_WEB_DIR;
  });
  afterAll(async () => {
    await t?.close();
    await locked?.close();
    await db.cleanup();
    rmSync(webDir, { recursive: true, force: true });
  });

  it('the dashboard, its assets, API answers and errors all carry CSP, frame protection, nosniff and a referrer policy', async () => {
    for (const path of ['/', '/#/models', '/assets/a.js']) {
      const res = await fetch(t.url + path);
      expect(res.status).toBe(200);
      expectHardened(res.headers);
    }
    expectHardened((await t.call('/api/v1/interactions')).headers);
    const unauthorized = await t.call('/api/v1/interactions', { key: null });
    expect(unauthorized.status).toBe(401);
    expectHardened(unauthorized.headers);
    const notFound = await t.call('/api/v1/nothing-here');
    expect(notFound.status).toBe(404);
    expectHardened(notFound.headers);
    const bad = await t.call('/api/v1/interactions', { body: { id: 'x' } });
    expect(bad.status).toBe(400);
    expectHardened(bad.headers);
  });

  it('the widget endpoints keep their CORS for any origin', async () => {
    const preflight = await fetch(`${t.url}/api/v1/feedback`, { method: 'OPTIONS' });
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    expectHardened(preflight.headers);
  });

  it('/metrics is open by default and requires a read key when configured', async () => {
    expect((await t.call('/metrics', { key: null })).status).toBe(200);
    const anonymous = await locked.call('/metrics', { key: null });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error.path).toBe('authorization');
    const publicKey = await locked.call('/metrics', { key: locked.publicKey });
    expect(publicKey.status).toBe(403);
    expect(publicKey.body.error.message).toContain('"read"');
    const scrape = await locked.call('/metrics');
    expect(scrape.status).toBe(200);
    expect(String(scrape.body)).toContain('ratchet_');
  });
});
