import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { testDatabases } from '@ratchet/store/testing';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './testing/server.js';

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
}

/**
 * The server's side of OpenID Connect against a real provider (`oidc-provider`, started here):
 * the redirect carries PKCE (S256), state and nonce, and a callback that does not match the flow
 * this browser started is refused with nothing written. The whole sign-in, through the
 * provider's login form, runs in the browser test (packages/web/src/e2e/people.test.ts).
 */
for (const target of testDatabases()) {
  describe(`sign-in with OpenID Connect on ${target.name}`, () => {
    let t: TestServer;
    let idp: Server;
    let issuer: string;

    beforeAll(async () => {
      let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
      idp = createServer((req, res) => handler?.(req, res));
      issuer = `http://127.0.0.1:${await listen(idp)}`;
      const probe = createServer();
      const port = await listen(probe);
      await new Promise((r) => probe.close(r));
      const redirect = `http://127.0.0.1:${port}/api/v1/auth/oidc/callback`;
      handler = new Provider(issuer, {
        clients: [{ client_id: 'ratchet', client_secret: 'test-client-secret', redirect_uris: [redirect] }],
        cookies: { keys: ['test-cookie-key'] },
      }).callback();
      t = await startTestServer(await target.create(), {
        config: {
          port,
          oidcIssuer: issuer,
          oidcClientId: 'ratchet',
          oidcClientSecret: 'test-client-secret',
          oidcRedirectUrl: redirect,
          oidcProject: 'test',
        },
      });
    });
    afterAll(async () => {
      await t?.close();
      await new Promise((r) => idp?.close(r));
      await target.cleanup();
    });

    it('says SSO is on, and starts with a redirect to the provider carrying PKCE, state and nonce', async () => {
      expect((await t.call('/api/v1/auth/config', { key: null })).body).toEqual({
        password: true,
        sso: true,
      });
      const res = await fetch(`${t.url}/api/v1/auth/oidc/start`, { redirect: 'manual' });
      expect(res.status).toBe(302);
      const to = new URL(res.headers.get('location')!);
      expect(to.origin).toBe(issuer);
      expect(to.searchParams.get('client_id')).toBe('ratchet');
      expect(to.searchParams.get('response_type')).toBe('code');
      expect(to.searchParams.get('code_challenge_method')).toBe('S256');
      expect(to.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(to.searchParams.get('state')).toBeTruthy();
      expect(to.searchParams.get('nonce')).toBeTruthy();
      const flowCookie = res.headers.get('set-cookie')!;
      expect(flowCookie).toMatch(/^ratchet_oidc=/);
      expect(flowCookie).toMatch(/HttpOnly/);
      // The verifier stays in the browser's HTTP-only cookie, never in the URL.
      expect(res.headers.get('location')).not.toContain('code_verifier');
    });

    it('refuses a callback this browser did not start, or whose state does not match, and writes nothing', async () => {
      const users = async () => (await t.store.db.selectFrom('users').select('id').execute()).length;
      const sessions = async () =>
        (await t.store.db.selectFrom('sessions').select('id_hash').execute()).length;
      const before = [await users(), await sessions()];
      const noFlow = await t.call('/api/v1/auth/oidc/callback?code=abc&state=forged', { key: null });
      expect(noFlow.status).toBe(401);
      expect(noFlow.body.error.path).toBe('state');
      const garbage = await t.call('/api/v1/auth/oidc/callback?code=abc&state=forged', {
        key: null,
        headers: { cookie: 'ratchet_oidc=not-json' },
      });
      expect(garbage.status).toBe(401);
      expect(garbage.body.error.path).toBe('state');
      const started = await fetch(`${t.url}/api/v1/auth/oidc/start`, { redirect: 'manual' });
      const flow = /ratchet_oidc=([^;]+)/.exec(started.headers.get('set-cookie')!)![1]!;
      const forged = await t.call(
        `/api/v1/auth/oidc/callback?code=abc&state=forged&iss=${encodeURIComponent(issuer)}`,
        {
          key: null,
          headers: { cookie: `ratchet_oidc=${flow}` },
        },
      );
      expect(forged.status).toBe(401);
      expect(forged.body.error.path).toBe('code');
      expect(forged.headers.get('set-cookie')).toBeNull();
      expect([await users(), await sessions()]).toEqual(before);
    });
  });
}
