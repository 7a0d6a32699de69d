import { existsSync, mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from '@ratchet/server/testing';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * End to end in a real browser (Debian's chromium through playwright-core) against a real server
 * serving the built dashboard: annotate, explore, promote, and the widget on another origin.
 */
const webDist = fileURLToPath(new URL('../../dist', import.meta.url));
const chromiumPath = process.env.RATCHET_CHROMIUM ?? '/usr/bin/chromium';

/** Every control with no accessible name (a label, aria-label/labelledby, or its own text). */
async function unnamedControls(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const named = (el: HTMLElement): boolean => {
      const by = el.getAttribute('aria-labelledby');
      if (by && document.getElementById(by)?.textContent?.trim()) return true;
      if (el.getAttribute('aria-label')?.trim() || el.getAttribute('title')?.trim()) return true;
      const labels = (el as HTMLInputElement).labels;
      if (labels && [...labels].some((l) => l.textContent?.trim())) return true;
      return ['BUTTON', 'A', 'SUMMARY'].includes(el.tagName) && !!el.textContent?.trim();
    };
    return [...document.querySelectorAll<HTMLElement>('button, input, select, textarea, a[href], summary')]
      .filter((el) => el.offsetParent !== null && !named(el))
      .map((el) => el.outerHTML.slice(0, 120));
  });
}

/** Tabs through the page and returns the visible controls the keyboard never reached. */
async function unreachableByTab(page: Page): Promise<string[]> {
  await page.evaluate(() => {
    for (const [i, el] of [
      ...document.querySelectorAll<HTMLElement>('button, input, select, textarea, a[href], summary'),
    ].entries())
      el.dataset.e2eControl = String(i);
    // Start from the top of the page, as a keyboard user arriving on it would.
    const start = Object.assign(document.createElement('span'), { tabIndex: -1 });
    document.body.prepend(start);
    start.focus();
  });
  const total = await page.locator('[data-e2e-control]:visible').count();
  const reached = new Set<string>();
  // Some controls take several presses (a date input's day, month and year), hence the margin.
  for (let i = 0; i < total * 4 && reached.size < total; i++) {
    await page.keyboard.press('Tab');
    const id = await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.e2eControl);
    if (id !== undefined) reached.add(id);
  }
  return page.evaluate(
    (seen) =>
      [...document.querySelectorAll<HTMLElement>('[data-e2e-control]')]
        .filter((el) => el.offsetParent !== null && !seen.includes(el.dataset.e2eControl!))
        .map((el) => el.outerHTML.slice(0, 120)),
    [...reached],
  );
}

describe('dashboard and widget in a browser', () => {
  const db = sqliteTestDatabase();
  let t: TestServer;
  let browser: Browser;
  let page: Page;
  let host: Server;
  let hostUrl: string;

  beforeAll(async () => {
    if (!existsSync(join(webDist, 'index.html')))
      throw new Error(`the dashboard is not built (${webDist}): run \`make build\``);
    if (!existsSync(chromiumPath))
      throw new Error(`no chromium at ${chromiumPath}: \`make test\` installs it`);
    process.env.RATCHET_WEB_DIR = webDist;
    t = await startTestServer(await db.create(), {
      config: { dataDir: mkdtempSync(join(tmpdir(), 'ratchet-e2e-data-')) },
    });
    delete process.env.RATCHET_WEB_DIR;
    // Two answers to each of three prompts (pairs to compare), rated by two raters except q0.
    const items = Array.from({ length: 6 }, (_, i) => ({
      id: `q${i}`,
      route: 'support',
      model: 'tiny',
      messages: [{ role: 'user', content: `How do I reset password ${i % 3}?` }],
      output: `Answer number ${i}`,
      createdAt: Date.now() - (6 - i) * 1000,
    }));
    expect((await t.call('/api/v1/interactions', { body: { items } })).status).toBe(201);
    const ratings = items.slice(0, 4).flatMap((it, i) =>
      ['r1', 'r2'].map((raterId) => ({
        kind: 'thumbs',
        interactionId: it.id,
        raterId,
        source: 'annotator',
        value: i % 2 ? 'up' : 'down',
      })),
    );
    expect((await t.call('/api/v1/feedback', { body: { items: ratings } })).status).toBe(201);
    expect((await t.call('/api/v1/calibrations', { body: {} })).status).toBe(201);
    const dataset = await t.call('/api/v1/datasets', {
      body: {
        name: 'kto',
        method: 'kto',
        curation: false,
        options: { requireConfidentSign: false, margin: 0, split: { by: 'prompt', testFraction: 0 } },
      },
    });
    expect(dataset.status).toBe(201);
    for (const name of ['support-v1', 'support-v2']) {
      await t.store.models.register(
        t.projectId,
        { name, route: 'support', baseModel: 'tiny', datasetId: dataset.body.id },
        'e2e',
      );
    }
    await t.store.models.setStage(t.projectId, 'support-v1', 'production', 'e2e', 'baseline');

    // The application's own page, on another origin, embedding the widget script.
    host = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(`<!doctype html><title>App</title><p>An answer</p>
        <div data-ratchet-interaction="q5" data-ratchet-route="support" data-ratchet-rater="end-user-7"
             data-ratchet-criteria="accuracy"></div>
        <script src="${t.url}/ratchet-widget.js" data-key="${t.publicKey}"></script>`);
    });
    await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
    hostUrl = `http://127.0.0.1:${(host.address() as AddressInfo).port}`;

    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage();
    page.setDefaultTimeout(10_000);
    await page.goto(t.url);
    await page.getByLabel('Project secret key').fill(t.secretKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => host?.close(resolve));
    await t?.close();
    await db.cleanup();
  });

  it('refuses a public key at sign-in', async () => {
    const other = await browser.newPage();
    await other.goto(t.url);
    await other.getByLabel('Project secret key').fill(t.publicKey);
    await other.getByRole('button', { name: 'Sign in' }).click();
    await expect(other.getByRole('alert').textContent()).resolves.toContain('public key');
    await other.close();
  });

  it('every page loads; every control has a name and is reachable by Tab', async () => {
    const pages = [
      ['overview', 'Overview'],
      ['explorer', 'Feedback explorer'],
      ['queue', 'Annotation queue'],
      ['raters', 'Raters'],
      ['analysis', 'Error analysis'],
      ['datasets', 'Datasets'],
      ['runs', 'Training runs'],
      ['models', 'Models and experiments'],
      ['what-changed', 'What changed'],
    ];
    for (const [route, title] of pages) {
      await page.goto(`${t.url}/#/${route}`);
      await page.getByRole('heading', { name: title, level: 1 }).waitFor();
      await page.waitForFunction(() => !document.body.textContent?.includes('Loading'));
      expect({ route, unnamed: await unnamedControls(page) }).toEqual({ route, unnamed: [] });
      expect({ route, errors: await page.getByRole('alert').allTextContents() }).toEqual({
        route,
        errors: [],
      });
    }
    for (const route of ['queue', 'models', 'explorer']) {
      await page.goto(`${t.url}/#/${route}`);
      await page.waitForFunction(() => !document.body.textContent?.includes('Loading'));
      expect({ route, unreachable: await unreachableByTab(page) }).toEqual({ route, unreachable: [] });
    }
  });

  it('rates an item in the annotation queue with the keyboard and finds it in the explorer', async () => {
    await page.goto(`${t.url}/#/queue`);
    await page.getByLabel('Your rater id').fill('e2e-annotator');
    const item = page.getByRole('article', { name: 'Item to rate' });
    await item.waitFor();
    const id = (await item.getAttribute('data-interaction'))!;
    // Unrated, newest first: q5 then q4; each has a sibling answer to compare with.
    expect(id).toBe('q5');
    await page.locator('body').click({ position: { x: 1, y: 1 } });
    await page.keyboard.press('u');
    await expect(page.getByRole('button', { name: /Thumbs up/ }).getAttribute('aria-pressed')).resolves.toBe(
      'true',
    );
    await page.keyboard.press('4');
    await page.keyboard.press('b');
    await page.getByLabel('accuracy').selectOption('4');
    await page.locator('body').click({ position: { x: 1, y: 1 } });
    await page.keyboard.press('c');
    await page.keyboard.type('clear and correct');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Enter');
    await page.getByText(`Saved 5 feedback events for ${id}.`).waitFor();
    // The queue moved on to the next unrated item.
    await page.waitForFunction(
      (first) => document.querySelector('[data-interaction]')?.getAttribute('data-interaction') !== first,
      id,
    );

    const stored = await t.call(`/api/v1/interactions/${id}`);
    const mine = stored.body.feedback.filter((f: { raterId: string }) => f.raterId === 'e2e-annotator');
    expect(mine.map((f: { kind: string }) => f.kind).sort()).toEqual([
      'comment',
      'criteria',
      'preference',
      'stars',
      'thumbs',
    ]);
    expect(mine.find((f: { kind: string }) => f.kind === 'preference')).toMatchObject({
      label: 'other',
      data: { other: 'q2' },
    });

    await page.goto(`${t.url}/#/explorer`);
    await page.getByLabel('Rater').fill('e2e-annotator');
    await page.getByLabel('Rating').selectOption('up');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    const rows = page.getByRole('table', { name: 'Interactions, newest first' }).locator('tbody tr');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(1);
    await rows.getByRole('link').click();
    await page.getByRole('heading', { name: `Interaction ${id}` }).waitFor();
    const history = page.getByRole('table', { name: /Every feedback event/ });
    await expect(history.textContent()).resolves.toContain('e2e-annotator');
    await expect(history.textContent()).resolves.toContain('clear and correct');
  });

  it('promotes a model only after confirmation', async () => {
    await page.goto(`${t.url}/#/models`);
    const promote = page.getByRole('button', { name: 'Promote support-v2' });
    await promote.click();
    const dialog = page.getByRole('dialog');
    await expect(dialog.textContent()).resolves.toContain('Move support-v2 to production');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    expect((await t.store.models.get(t.projectId, 'support-v2'))!.stage).toBe('candidate');

    await promote.click();
    await dialog.getByLabel('Reason (kept in the audit log)').fill('won the canary');
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    await page.getByText('Done: Move support-v2 to production').waitFor();
    expect((await t.store.models.get(t.projectId, 'support-v2'))!.stage).toBe('production');
    expect((await t.store.models.get(t.projectId, 'support-v1'))!.stage).toBe('archived');
    const audit = await t.store.audit.list(t.projectId, { subjectType: 'model' });
    expect(audit[0]).toMatchObject({
      action: 'model.stage',
      details: expect.objectContaining({ reason: 'won the canary' }),
    });
  });

  it('the widget posts feedback with the public key from another origin, and reads nothing else', async () => {
    const app = await browser.newPage();
    await app.goto(hostUrl);
    const form = app.getByRole('form', { name: 'Rate this answer' });
    await form.getByRole('button', { name: 'Thumbs down' }).click();
    await form.getByRole('button', { name: '2 stars' }).click();
    await form.getByLabel('accuracy').selectOption('2');
    await form.getByLabel('Comment').fill('it ignored my question');
    await form.getByRole('button', { name: 'Send feedback' }).click();
    const thanks = form.getByRole('status');
    await expect
      .poll(() => thanks.textContent(), { timeout: 10_000 })
      .toMatch(/ratings like yours went into the current version/);
    const learned = await t.store.dashboard.learnedFrom(
      t.projectId,
      (await t.store.models.get(t.projectId, 'support-v2'))!.datasetId!,
    );
    const count = Object.values(learned.feedbackByKind).reduce((a, b) => a + b, 0);
    await expect(thanks.textContent()).resolves.toContain(`${count} ratings`);

    const sent = (await t.call('/api/v1/interactions/q5')).body.feedback.filter(
      (f: { raterId: string }) => f.raterId === 'end-user-7',
    );
    expect(sent.map((f: { kind: string; source: string }) => `${f.kind}:${f.source}`).sort()).toEqual([
      'comment:user',
      'criteria:user',
      'stars:user',
      'thumbs:user',
    ]);

    // From the page, with the public key: the secret-key API is not readable (no CORS, and 403).
    const reads = await app.evaluate(
      async ({ base, key }) => {
        const outcome = async (path: string) => {
          try {
            const res = await fetch(base + path, { headers: { authorization: `Bearer ${key}` } });
            return `${res.status} ${Object.keys(await res.json()).join(',')}`;
          } catch {
            return 'blocked';
          }
        };
        return {
          interactions: await outcome('/api/v1/interactions'),
          one: await outcome('/api/v1/interactions/q5'),
          summary: await outcome('/api/v1/widget/summary?route=support'),
        };
      },
      { base: t.url, key: t.publicKey },
    );
    expect(reads).toEqual({
      interactions: 'blocked',
      one: 'blocked',
      summary: '200 route,ratingsInCurrentModel,since',
    });
    for (const path of ['/api/v1/interactions', '/api/v1/interactions/q5', '/api/v1/dashboard/overview']) {
      expect((await t.call(path, { key: t.publicKey })).status).toBe(403);
    }
    await app.close();
  });
});
