import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from '@ratchet/server/testing';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import Provider from 'oidc-provider';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * People in a real browser (chromium through playwright-core) against a real server serving the
 * built dashboard: sign-in with a password per role, and with OpenID Connect through a real
 * provider (the `oidc-provider` package) this test starts on its own port.
 */
const webDist = fileURLToPath(new URL('../../dist', import.meta.url));
const chromiumPath = process.env.RATCHET_CHROMIUM ?? '/usr/bin/chromium';
const PASSWORD = 'a long enough password';

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
}

async function freePort(): Promise<number> {
  const s = createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

describe('people and roles in a browser', () => {
  const db = sqliteTestDatabase();
  let t: TestServer;
  let browser: Browser;
  let idp: Server;

  /** A fresh browser context (its own cookies) signed in with email and password. */
  const signedIn = async (email: string): Promise<Page> => {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    await page.goto(t.url);
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    return page;
  };

  /** A write from the signed-in page with its CSRF token, as the dashboard's own code would send it. */
  const postFromPage = (page: Page, path: string, body: unknown) =>
    page.evaluate(
      async ({ path, body }) => {
        const me = await (await fetch('/api/v1/session')).json();
        const res = await fetch(path, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-ratchet-csrf': me.csrfToken },
          body: JSON.stringify(body),
        });
        return { status: res.status, body: await res.json() };
      },
      { path, body },
    );

  beforeAll(async () => {
    if (!existsSync(join(webDist, 'index.html')))
      throw new Error(`the dashboard is not built (${webDist}): run \`make build\``);
    // The provider's address must be known to the server and the server's to the provider.
    let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
    idp = createServer((req, res) => handler?.(req, res));
    const issuer = `http://127.0.0.1:${await listen(idp)}`;
    const port = await freePort();
    const redirect = `http://127.0.0.1:${port}/api/v1/auth/oidc/callback`;
    const provider = new Provider(issuer, {
      clients: [
        {
          client_id: 'ratchet',
          client_secret: 'test-client-secret',
          redirect_uris: [redirect],
          response_types: ['code'],
          grant_types: ['authorization_code'],
        },
      ],
      // Whoever logs in at the provider's development form is `<login>@sso.example`, verified.
      async findAccount(_ctx, id) {
        return {
          accountId: id,
          async claims() {
            return { sub: id, email: `${id}@sso.example`, email_verified: true, name: id };
          },
        };
      },
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
      features: { devInteractions: { enabled: true } },
      cookies: { keys: ['test-cookie-key'] },
    });
    handler = provider.callback();

    process.env.RATCHET_WEB_DIR = webDist;
    t = await startTestServer(await db.create(), {
      config: {
        port,
        oidcIssuer: issuer,
        oidcClientId: 'ratchet',
        oidcClientSecret: 'test-client-secret',
        oidcRedirectUrl: redirect,
        oidcProject: 'test',
        oidcDefaultRole: 'viewer',
      },
    });
    delete process.env.RATCHET_WEB_DIR;
    for (const role of ['owner', 'annotator', 'viewer'] as const) {
      const user = await t.store.accounts.createUser({ email: `${role}@example.com`, password: PASSWORD });
      await t.store.accounts.setRole(t.projectId, user.id, role, 'e2e');
    }
    const items = Array.from({ length: 3 }, (_, i) => ({
      id: `q${i}`,
      route: 'support',
      model: 'tiny',
      messages: [{ role: 'user', content: `Question ${i}?` }],
      output: `Answer ${i}`,
    }));
    expect((await t.call('/api/v1/interactions', { body: { items } })).status).toBe(201);
    await t.store.models.register(
      t.projectId,
      { name: 'support-v2', route: 'support', baseModel: 'tiny' },
      'e2e',
    );

    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await t?.close();
    await new Promise((resolve) => idp?.close(resolve));
    await db.cleanup();
  });

  it('an annotator signs in, rates in the queue, sees no promote button and gets 403 from the promote API', async () => {
    const page = await signedIn('annotator@example.com');
    await page.getByText('annotator@example.com (annotator)').waitFor();
    await page.goto(`${t.url}/#/queue`);
    const item = page.getByRole('article', { name: 'Item to rate' });
    await item.waitFor();
    const annotator = (await t.store.accounts.getUserByEmail('annotator@example.com'))!;
    // The queue claims as the signed-in person: no name to type, the rater is their account.
    await page.getByText(`Rating as user:${annotator.id}`).waitFor();
    expect(await page.getByLabel('Your name on the team').count()).toBe(0);
    const id = (await item.getAttribute('data-interaction'))!;
    await page.keyboard.press('u');
    await page.keyboard.press('Enter');
    await page.getByText(`Saved 1 feedback events for ${id}.`).waitFor();
    const stored = await t.store.feedback.listForInteraction(t.projectId, id);
    expect(stored.map((f) => [f.raterId, f.kind])).toContainEqual([`user:${annotator.id}`, 'thumbs']);

    await page.goto(`${t.url}/#/models`);
    await page.getByRole('cell', { name: 'support-v2' }).waitFor();
    expect(await page.getByRole('button', { name: /Promote/ }).count()).toBe(0);
    const promote = await postFromPage(page, '/api/v1/models/support-v2/stage', {
      stage: 'production',
      reason: 'let me',
    });
    expect(promote.status).toBe(403);
    expect(promote.body.error).toMatchObject({ code: 'forbidden', path: 'role' });
    expect(promote.body.error.message).toMatch(/you are annotator/);
    expect((await t.store.models.get(t.projectId, 'support-v2'))!.stage).toBe('candidate');
    await page.context().close();
  });

  it('a viewer reads but cannot write: no promote button, and the API refuses feedback and keys', async () => {
    const page = await signedIn('viewer@example.com');
    await page.goto(`${t.url}/#/models`);
    await page.getByRole('cell', { name: 'support-v2' }).waitFor();
    expect(await page.getByRole('button', { name: /Promote/ }).count()).toBe(0);
    const before = await t.store.feedback.listForInteraction(t.projectId, 'q0');
    const rate = await postFromPage(page, '/api/v1/feedback', {
      interactionId: 'q0',
      kind: 'thumbs',
      value: 'up',
    });
    expect(rate.status).toBe(403);
    expect(rate.body.error.path).toBe('role');
    const key = await postFromPage(page, '/api/v1/keys', { scopes: ['read'] });
    expect(key.status).toBe(403);
    // Nor the interaction page's deletions.
    await page.goto(`${t.url}/#/interactions/q0`);
    await page.getByRole('heading', { name: 'Dataset membership' }).waitFor();
    expect(await page.getByRole('button', { name: /Delete/ }).count()).toBe(0);
    expect(await t.store.feedback.listForInteraction(t.projectId, 'q0')).toEqual(before);
    await page.context().close();
  });

  it('an owner sees the promote button and adds a member, who then signs in with their role', async () => {
    const page = await signedIn('owner@example.com');
    await page.goto(`${t.url}/#/models`);
    await page.getByRole('button', { name: 'Promote support-v2' }).waitFor();
    await page.goto(`${t.url}/#/interactions/q0`);
    await page.getByRole('button', { name: 'Delete this interaction' }).waitFor();
    await page.goto(`${t.url}/#/members`);
    const form = page.getByRole('form', { name: 'Add a member' });
    await form.getByLabel('Member email').fill('new.annotator@example.com');
    await form.getByLabel('Role').selectOption('annotator');
    await form.getByLabel('Password for a new account (empty: SSO only)').fill(PASSWORD);
    await form.getByRole('button', { name: 'Add member' }).click();
    await page.getByText('Added new.annotator@example.com as annotator.').waitFor();
    await page.getByRole('cell', { name: 'new.annotator@example.com', exact: true }).waitFor();
    const added = (await t.store.accounts.getUserByEmail('new.annotator@example.com'))!;
    expect(await t.store.accounts.roleOf(t.projectId, added.id)).toBe('annotator');
    const owner = (await t.store.accounts.getUserByEmail('owner@example.com'))!;
    const audit = await t.store.audit.list(t.projectId, { action: 'member.added', subjectId: added.id });
    expect(audit[0]?.actor).toBe(`user:${owner.id}`);
    const member = await signedIn('new.annotator@example.com');
    await member.getByText('new.annotator@example.com (annotator)').waitFor();
    await member.context().close();
    await page.context().close();
  });

  it("signs in through the test's OpenID Connect provider (code + PKCE): a new person joins as the default role", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    await page.goto(t.url);
    await page.getByRole('link', { name: 'Sign in with SSO' }).click();
    // The provider's own development login form, then its consent prompt.
    await page.locator('input[name="login"]').fill('sam');
    await page.locator('input[name="password"]').fill('anything');
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByText('sam@sso.example (viewer)').waitFor();
    const sam = (await t.store.accounts.getUserByEmail('sam@sso.example'))!;
    expect(sam.hasPassword).toBe(false);
    expect(await t.store.accounts.roleOf(t.projectId, sam.id)).toBe('viewer');
    const cookies = await context.cookies(t.url);
    const session = cookies.find((c) => c.name === 'ratchet_session')!;
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Lax' });
    await context.close();
  });
});
