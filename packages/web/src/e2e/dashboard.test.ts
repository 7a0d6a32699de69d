import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type LocalUpstream,
  startLocalUpstream,
  startTestServer,
  type TestServer,
} from '@ratchet/server/testing';
import { LATENCY_BIN_EDGES, latencyBin } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import react from '@vitejs/plugin-react';
import { type Browser, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
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
  const total = await page.evaluate(() => {
    const controls = [
      ...document.querySelectorAll<HTMLElement>('button, input, select, textarea, a[href], summary'),
    ];
    for (const [i, el] of controls.entries()) el.dataset.e2eControl = String(i);
    const seen = new Set<string>();
    (window as unknown as { e2eSeen: Set<string> }).e2eSeen = seen;
    document.addEventListener('focusin', (e) => {
      const id = (e.target as HTMLElement).dataset?.e2eControl;
      if (id !== undefined) seen.add(id);
    });
    // Start from the top of the page, as a keyboard user arriving on it would.
    const start = Object.assign(document.createElement('span'), { tabIndex: -1 });
    document.body.prepend(start);
    start.focus();
    return controls.filter((el) => el.offsetParent !== null).length;
  });
  const reached = () => page.evaluate(() => (window as unknown as { e2eSeen: Set<string> }).e2eSeen.size);
  // Some controls take several presses (a date input's day, month and year), hence the margin.
  for (let presses = 0; presses < total * 4 && (await reached()) < total; presses += 10)
    for (let i = 0; i < 10; i++) await page.keyboard.press('Tab');
  return page.evaluate(() => {
    const seen = (window as unknown as { e2eSeen: Set<string> }).e2eSeen;
    return [...document.querySelectorAll<HTMLElement>('[data-e2e-control]')]
      .filter((el) => el.offsetParent !== null && !seen.has(el.dataset.e2eControl!))
      .map((el) => el.outerHTML.slice(0, 120));
  });
}

describe('dashboard and widget in a browser', () => {
  const db = sqliteTestDatabase();
  let t: TestServer;
  let upstream: LocalUpstream;
  let browser: Browser;
  let page: Page;
  let host: Server;
  let hostUrl: string;
  let experimentId: string;
  /** The React widget's host page, bundled by vite in its test. */
  let reactBundle: string | undefined;
  /** What chromium refused under the dashboard's Content-Security-Policy, over every test. */
  const cspViolations: string[] = [];
  /** The CSP header the dashboard's page came with. */
  let dashboardCsp: string | undefined;

  /** What a page can read with the public key: the secret-key API is blocked (no CORS, and 403). */
  const readsFrom = (app: Page) =>
    app.evaluate(
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
  const onlyTheSummary = {
    interactions: 'blocked',
    one: 'blocked',
    summary: '200 route,ratingsInCurrentModel,since',
  };

  /** What the gateway answers a call to the route `support` with (the upstream names the model). */
  const answer = async (): Promise<string> => {
    const res = await t.call('/v1/chat/completions', {
      // One end user throughout: a promotion over a production model keeps 5% of the users
      // (sticky) on the replaced model while it is watched; this user is in the other 95%.
      body: {
        model: 'support',
        user: 'dashboard-e2e-user',
        messages: [{ role: 'user', content: 'How do I reset my password?' }],
      },
    });
    expect(res.status).toBe(200);
    return res.body.choices[0].message.content;
  };
  /** Milliseconds until the gateway's answers come from `model` (Infinity after 3 s); then five more agree. */
  const servedWithin = async (model: string, since = Date.now()): Promise<number> => {
    let elapsed = Number.POSITIVE_INFINITY;
    while (Date.now() - since < 3000) {
      if ((await answer()) === `served by ${model}`) {
        elapsed = Date.now() - since;
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    for (let i = 0; i < 5; i++) expect(await answer()).toBe(`served by ${model}`);
    return elapsed;
  };

  beforeAll(async () => {
    if (!existsSync(join(webDist, 'index.html')))
      throw new Error(`the dashboard is not built (${webDist}): run \`make build\``);
    if (!existsSync(chromiumPath))
      throw new Error(`no chromium at ${chromiumPath}: \`make test\` installs it`);
    process.env.RATCHET_WEB_DIR = webDist;
    // The gateway's upstream answers with the model it was asked for: the answer says who served it.
    upstream = await startLocalUpstream({
      answer: (body) => `served by ${String(body.model)}`,
      record: false,
    });
    t = await startTestServer(await db.create(), {
      config: { dataDir: mkdtempSync(join(tmpdir(), 'ratchet-e2e-data-')) },
      gateway: { upstreams: { local: { baseURL: upstream.url } }, defaultUpstream: 'local' },
      // The annotation team's route: each item to two annotators.
      queueTerms: { team: { overlap: 2, lockMinutes: 5 } },
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
      // The end users the widgets on the application's pages rate as (their tokens say so).
      ...(i === 3 ? { userId: 'react-user-9' } : i === 5 ? { userId: 'end-user-7' } : {}),
    }));
    const logged = await t.call('/api/v1/interactions', { body: { items } });
    expect(logged.status).toBe(201);
    const tokens = new Map<string, string>(
      logged.body.items.map((r: { id: string; feedbackToken: string }) => [r.id, r.feedbackToken]),
    );
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
    await t.store.models.setStage(t.projectId, 'support-v1', 'production', 'e2e', 'baseline', {
      upstreams: ['local'],
      routeUpstreams: {},
      defaultUpstream: 'local',
    });

    // An experiment on another route with thumbs on both arms: 15 of 30 up against 24 of 30.
    const started = await t.call('/api/v1/experiments', {
      body: {
        name: 'checkout-tone',
        route: 'checkout',
        control: 'control',
        variants: [
          { name: 'control', upstream: 'local', upstreamModel: 'tiny', weight: 0.5 },
          { name: 'friendly', upstream: 'local', upstreamModel: 'tiny-friendly', weight: 0.5 },
        ],
        metric: 'thumbs_up_rate',
        decisionRule: { minObservationsPerArm: 10 },
      },
    });
    expect(started.status).toBe(201);
    experimentId = started.body.id;
    const arms = ['control', 'friendly'].flatMap((variant, v) =>
      Array.from({ length: 30 }, (_, i) => ({
        id: `x${v}-${i}`,
        route: 'checkout',
        model: v ? 'tiny-friendly' : 'tiny',
        variant,
        userId: `user-${v}-${i}`,
        messages: [{ role: 'user', content: `Where is my order ${i}?` }],
        output: `It ships tomorrow (${variant})`,
      })),
    );
    expect((await t.call('/api/v1/interactions', { body: { items: arms } })).status).toBe(201);
    const armThumbs = arms.map((it, n) => ({
      kind: 'thumbs',
      interactionId: it.id,
      raterId: it.userId,
      source: 'user',
      value: (n < 30 ? n < 15 : n - 30 < 24) ? 'up' : 'down',
    }));
    expect((await t.call('/api/v1/feedback', { body: { items: armThumbs } })).status).toBe(201);

    // The application's own pages, on another origin: one embedding the widget script, one
    // rendering the React component (bundled in the React widget's test).
    host = createServer((req, res) => {
      if (req.url === '/react-host.js' && reactBundle) {
        res.setHeader('content-type', 'text/javascript');
        return res.end(readFileSync(reactBundle));
      }
      res.setHeader('content-type', 'text/html');
      if (req.url === '/react')
        return res.end(`<!doctype html><title>React app</title><div id="root"></div>
          <script>window.ratchetWidget = ${JSON.stringify({
            baseUrl: t.url,
            publicKey: t.publicKey,
            interactionId: 'q3',
            feedbackToken: tokens.get('q3'),
            route: 'support',
            criteria: ['helpfulness'],
          })}</script>
          <script type="module" src="/react-host.js"></script>`);
      res.end(`<!doctype html><title>App</title><p>An answer</p>
        <div data-ratchet-interaction="q5" data-ratchet-token="${tokens.get('q5')}"
             data-ratchet-route="support" data-ratchet-criteria="accuracy"></div>
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
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
    });
    const loaded = await page.goto(t.url);
    dashboardCsp = loaded?.headers()['content-security-policy'];
    await page.getByLabel('Project secret key').fill(t.secretKey);
    await page.getByRole('button', { name: 'Use key' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => host?.close(resolve));
    await t?.close();
    await upstream?.close();
    await db.cleanup();
  });

  it('refuses a public key at sign-in', async () => {
    const other = await browser.newPage();
    await other.goto(t.url);
    await other.getByLabel('Project secret key').waitFor();
    expect({ unnamed: await unnamedControls(other) }).toEqual({ unnamed: [] });
    expect({ unreachable: await unreachableByTab(other) }).toEqual({ unreachable: [] });
    await other.getByLabel('Project secret key').fill(t.publicKey);
    await other.getByRole('button', { name: 'Use key' }).click();
    await expect(other.getByRole('alert').textContent()).resolves.toContain('public key');
    await other.close();
  });

  it('every page loads; every control has a name and is reachable by Tab', async () => {
    const pages = [
      ['overview', 'Overview'],
      ['explorer', 'Feedback explorer'],
      ['queue', 'Annotation queue'],
      ['team', 'Annotation team'],
      ['raters', 'Raters'],
      ['analysis', 'Error analysis'],
      ['datasets', 'Datasets'],
      ['runs', 'Training runs'],
      ['models', 'Models and experiments'],
      ['what-changed', 'What changed'],
      ['loop', 'Loop'],
      ['interactions/q1', 'Interaction q1'],
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
    for (const [route] of pages) {
      await page.goto(`${t.url}/#/${route}`);
      await page.waitForFunction(() => !document.body.textContent?.includes('Loading'));
      expect({ route, unreachable: await unreachableByTab(page) }).toEqual({ route, unreachable: [] });
    }
  });

  it('the Overview shows the dead letters: their count by reason and the latest with its reason', async () => {
    await t.store.deadLetters.insert(t.projectId, [
      {
        interactionId: 'poisoned-1',
        source: 'gateway',
        reason: 'nul_character',
        error: 'messages.0.content: contains a NUL character',
        payload: { messages: [{ role: 'user', content: 'a\u0000' }] },
        repaired: true,
      },
    ]);
    await page.goto(`${t.url}/#/overview`);
    const table = page.getByRole('table', { name: 'Latest dead letters' });
    await expect(table.textContent()).resolves.toMatch(/poisoned-1nul_characteryesmessages\.0\.content/);
    await expect(
      page.getByText('1 gateway calls could not be stored as they arrived').textContent(),
    ).resolves.toContain('nul_character 1');
  });

  it("the Models page shows each model version's production health with the numbers the calls make", async () => {
    // 20 calls of one model in one hour: 18 answered in 10..180 ms, 2 failed upstream (slow,
    // and not in the percentiles); 10 input and 5 output tokens each; 3 of 4 thumbs up.
    const at = Date.now() - 60_000;
    const items = Array.from({ length: 20 }, (_, i) => ({
      id: `h${i}`,
      route: 'health-e2e',
      model: 'health-v1',
      messages: [{ role: 'user', content: `health ${i}` }],
      output: 'ok',
      createdAt: at,
      status: i < 18 ? 'ok' : 'error',
      latencyMs: i < 18 ? 10 * (i + 1) : 5000,
      usage: { inputTokens: 10, outputTokens: 5 },
    }));
    expect((await t.call('/api/v1/interactions', { body: { items } })).status).toBe(201);
    const thumbs = ['up', 'up', 'up', 'down'].map((value, i) => ({
      kind: 'thumbs',
      interactionId: `h${i}`,
      raterId: 'r1',
      value,
    }));
    expect((await t.call('/api/v1/feedback', { body: { items: thumbs } })).status).toBe(201);
    await page.goto(`${t.url}/#/models`);
    const panel = page.getByRole('article', { name: 'production health of health-e2e' });
    await panel.waitFor();
    const row = panel.getByRole('row').filter({ hasText: 'health-v1' });
    // Model, stage (not registered), since, calls, p50 (9th of 18: 90 ms), p95 (18th: 180 ms),
    // errors, tokens, thumbs. Percentiles come from the rollups' latency histogram, reported as the
    // upper edge of the bin that holds the exact value (at most 5% above it).
    const binned = (ms: number) => String(LATENCY_BIN_EDGES[latencyBin(ms)]);
    const cells = (await row.getByRole('cell').allTextContents()).map((c) => c.trim());
    expect([cells[0], cells[1], ...cells.slice(3)]).toEqual([
      'health-v1',
      '–',
      '20',
      binned(90),
      binned(180),
      '10%',
      '200 / 100',
      '75% of 4',
    ]);
    await panel.getByRole('img', { name: 'health-e2e: latency p95 (ms)' }).waitFor();
    await panel.getByRole('img', { name: 'health-e2e: satisfaction (thumbs-up share)' }).waitFor();
    // Per day over 30 days: the same calls in one bucket.
    const controls = page.getByRole('form', { name: 'Production health window' });
    await controls.locator('select[name="window"]').selectOption('30d');
    await controls.locator('select[name="bucket"]').selectOption('day');
    await expect
      .poll(async () => (await row.getByRole('cell').nth(2).textContent())?.trim())
      .toBe(new Date(at).toISOString().slice(5, 10));
  });

  it('what changed: release notes per version with its lineage', async () => {
    await page.goto(`${t.url}/#/what-changed`);
    const v2 = page.getByRole('article', { name: 'support-v2' });
    await expect(v2.textContent()).resolves.toContain('Follows support-v1 on its route.');
    await expect(v2.textContent()).resolves.toMatch(/Learned from kto v1 \(kto\): 4 interactions, 8 ratings/);
    const v1 = page.getByRole('article', { name: 'support-v1' });
    await expect(v1.textContent()).resolves.toContain('Promoted by hand');
  });

  it("shows an experiment's posteriors, intervals and probability to beat as charts", async () => {
    // An AI judge labels two of the friendly arm's answers: shown apart, not in the metrics.
    const judged = ['x1-0', 'x1-1'].map((interactionId) => ({
      kind: 'thumbs',
      interactionId,
      raterId: 'judge:tone',
      source: 'judge',
      value: 'down',
    }));
    expect((await t.call('/api/v1/feedback', { body: { items: judged } })).status).toBe(201);
    // Two looks recorded, as the loop records them.
    for (let i = 0; i < 2; i++)
      expect((await t.call(`/api/v1/experiments/${experimentId}/analyze`, { body: {} })).status).toBe(200);
    const status = (await t.call(`/api/v1/experiments/${experimentId}`)).body;
    const [friendly] = status.decision.comparisons;
    expect(friendly).toMatchObject({ variant: 'friendly', metric: 'thumbs_up_rate' });
    await page.goto(`${t.url}/#/models`);
    const card = page.getByRole('article', { name: 'Experiment checkout-tone' });
    await card
      .getByRole('img', { name: "checkout-tone: posterior of each variant's thumbs-up rate per user" })
      .waitFor();
    // One density curve per variant, labelled with its users (the unit of the experiment).
    await expect(card.locator('figure').first().textContent()).resolves.toMatch(
      /control \(30 users\).*friendly \(30 users\)/,
    );
    await card
      .getByRole('img', { name: /checkout-tone: each variant minus control, 95% credible/ })
      .waitFor();
    await card.getByRole('img', { name: 'checkout-tone: probability to beat control' }).waitFor();
    await expect(card.textContent()).resolves.toContain('Decision now:');
    await card.getByRole('img', { name: 'checkout-tone: decision at each of 2 recorded looks' }).waitFor();
    await expect(
      card
        .getByRole('table', { name: 'checkout-tone: decisions recorded at each look' })
        .locator('tbody tr')
        .count(),
    ).resolves.toBe(2);
    // The numbers beside the charts are the API's.
    const row = card
      .getByRole('table', { name: 'checkout-tone: comparisons' })
      .getByRole('row', { name: /friendly · thumbs up rate/ });
    await expect(row.textContent()).resolves.toContain(`${(friendly.probabilityToBeat * 100).toFixed(0)}%`);
    expect(friendly.probabilityToBeat).toBeGreaterThan(0.95);
    // Per user: 24 of 30 thumbs up, one each, so 80% ± 1.96 × sqrt(0.8 × 0.2 × 30 / 29 / 30).
    const variants = await card
      .getByRole('table', { name: /checkout-tone: variants, per user/ })
      .textContent();
    expect(variants).toContain('24 of 30');
    expect(variants).toContain('80% (65% … 95%), 30 users');
    const labels = card.getByRole('table', { name: /checkout-tone: AI and annotator labels/ });
    await expect(labels.getByRole('row', { name: /friendly judge/ }).textContent()).resolves.toContain(
      '0% of 2',
    );
  });

  it('rates an item in the annotation queue with the keyboard and finds it in the explorer', async () => {
    await page.goto(`${t.url}/#/queue`);
    const item = page.getByRole('article', { name: 'Item to rate' });
    await item.waitFor();
    // Only the keyboard from here on: Tab to the annotator's name (past the skip link, sign-out and
    // the page links), type it, leave the field with Escape, then the queue's keys.
    const raterField = page.getByLabel('Your name on the team');
    for (let i = 0; i < 30 && !(await raterField.evaluate((el) => el === document.activeElement)); i++)
      await page.keyboard.press('Tab');
    await expect(raterField.evaluate((el) => el === document.activeElement)).resolves.toBe(true);
    await page.keyboard.press('ControlOrMeta+A');
    await page.keyboard.type('e2e-annotator');
    await page.keyboard.press('Escape');
    // Leaving the field gives the key's item back and claims one for the name typed.
    await page.getByText('Rating as e2e-annotator').waitFor();
    await item.waitFor();
    const id = (await item.getAttribute('data-interaction'))!;
    // Unrated, newest first: q5 then q4; each has a sibling answer to compare with.
    expect(id).toBe('q5');
    await page.keyboard.press('u');
    await expect(page.getByRole('button', { name: /Thumbs up/ }).getAttribute('aria-pressed')).resolves.toBe(
      'true',
    );
    await page.keyboard.press('4');
    await page.keyboard.press('b');
    // r: to the criteria, where the select takes the score as typed; Escape leaves it.
    await page.keyboard.press('r');
    await expect(page.getByLabel('accuracy').evaluate((el) => el === document.activeElement)).resolves.toBe(
      true,
    );
    await page.keyboard.press('4');
    await page.keyboard.press('Escape');
    await expect(page.getByLabel('accuracy').inputValue()).resolves.toBe('4');
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
    // Kinds are named as people call them (core's descriptors, through feedback-kinds.json).
    await expect(history.textContent()).resolves.toContain('Preference or ranking');
    await expect(history.textContent()).resolves.toContain('Scores per criterion');
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
    expect(await servedWithin('support-v2')).toBeLessThan(1000);
    expect((await t.store.models.get(t.projectId, 'support-v2'))!.stage).toBe('production');
    expect((await t.store.models.get(t.projectId, 'support-v1'))!.stage).toBe('archived');
    const audit = await t.store.audit.list(t.projectId, { subjectType: 'model' });
    // The promotion replaced support-v1, so a watch opened with it (the newest entry).
    expect(audit.map((a) => a.action).slice(0, 2)).toEqual(['watch.opened', 'model.stage']);
    expect(audit[1]).toMatchObject({
      action: 'model.stage',
      details: expect.objectContaining({ reason: 'won the canary' }),
    });
  });

  it('the widget posts feedback with the public key from another origin, and reads nothing else', async () => {
    const app = await browser.newPage();
    await app.goto(hostUrl);
    const form = app.getByRole('form', { name: 'Rate this answer' });
    await form.waitFor();
    expect({ unnamed: await unnamedControls(app) }).toEqual({ unnamed: [] });
    expect({ unreachable: await unreachableByTab(app) }).toEqual({ unreachable: [] });
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

    expect(await readsFrom(app)).toEqual(onlyTheSummary);
    for (const path of ['/api/v1/interactions', '/api/v1/interactions/q5', '/api/v1/dashboard/overview']) {
      expect((await t.call(path, { key: t.publicKey })).status).toBe(403);
    }
    await app.close();
  });

  it('the React widget, bundled into an application, posts feedback with the public key only', async () => {
    const out = mkdtempSync(join(tmpdir(), 'ratchet-react-host-'));
    // A production build, as an application ships it: the React plugin reads NODE_ENV (vitest's
    // "test" would compile JSX for React's development runtime).
    const nodeEnv = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production';
    try {
      await build({
        configFile: false,
        mode: 'production',
        logLevel: 'warn',
        root: fileURLToPath(new URL('..', import.meta.url)),
        plugins: [react()],
        define: { 'process.env.NODE_ENV': '"production"' },
        build: {
          outDir: out,
          emptyOutDir: true,
          lib: {
            entry: fileURLToPath(new URL('./widget-host.tsx', import.meta.url)),
            formats: ['es'],
            fileName: () => 'react-host.js',
          },
        },
      });
    } finally {
      if (nodeEnv === undefined) delete process.env.NODE_ENV;
      else process.env.NODE_ENV = nodeEnv;
    }
    reactBundle = join(out, 'react-host.js');

    const app = await browser.newPage();
    app.setDefaultTimeout(10_000);
    // Every request the widget makes to Ratchet, with the key it used.
    const calls: string[] = [];
    app.on('request', (r) => {
      if (r.url().startsWith(t.url) && r.method() !== 'OPTIONS')
        calls.push(`${r.method()} ${new URL(r.url()).pathname} ${r.headers().authorization ?? 'no key'}`);
    });
    const errors: string[] = [];
    app.on('pageerror', (e) => errors.push(e.message));
    app.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await app.goto(`${hostUrl}/react`);
    await app.waitForLoadState('load');
    expect(errors).toEqual([]);
    const form = app.getByRole('form', { name: 'Rate this answer' });
    await form.waitFor();
    expect({ unnamed: await unnamedControls(app) }).toEqual({ unnamed: [] });
    expect({ unreachable: await unreachableByTab(app) }).toEqual({ unreachable: [] });
    // Sending nothing is refused on the page, with no request.
    await form.getByRole('button', { name: 'Send feedback' }).click();
    await expect(form.getByRole('status').textContent()).resolves.toContain('Choose a rating');
    await form.getByRole('button', { name: 'Thumbs up' }).click();
    await expect(form.getByRole('button', { name: 'Thumbs up' }).getAttribute('aria-pressed')).resolves.toBe(
      'true',
    );
    await form.getByRole('button', { name: '4 stars' }).click();
    await form.getByLabel('helpfulness').selectOption('5');
    await form.getByLabel('Comment').fill('exactly what I needed');
    await form.getByRole('button', { name: 'Send feedback' }).click();
    await expect
      .poll(() => form.getByRole('status').textContent(), { timeout: 10_000 })
      .toMatch(/ratings like yours went into the current version/);

    const sent = (await t.call('/api/v1/interactions/q3')).body.feedback.filter(
      (f: { raterId: string }) => f.raterId === 'react-user-9',
    );
    expect(sent.map((f: { kind: string; source: string }) => `${f.kind}:${f.source}`).sort()).toEqual([
      'comment:user',
      'criteria:user',
      'stars:user',
      'thumbs:user',
    ]);
    expect(sent.find((f: { kind: string }) => f.kind === 'criteria').data).toMatchObject({
      scores: { helpfulness: 5 },
    });
    // One feedback batch and the public summary, both with the public key; nothing else.
    expect(calls).toEqual([
      `POST /api/v1/feedback Bearer ${t.publicKey}`,
      `GET /api/v1/widget/summary Bearer ${t.publicKey}`,
    ]);
    expect(await readsFrom(app)).toEqual(onlyTheSummary);
    await app.close();
  }, 60_000);

  it('a round awaiting approval is rejected without a reason, then approved, by a person on the Loop page', async () => {
    // A round whose experiment shipped under `promotion.auto: false`, as the loop leaves it.
    const round = await t.store.loops.start(t.projectId, 'helpdesk', 'decide', {}, 'e2e');
    await t.store.loops.advance(t.projectId, round.id, {
      from: 'decide',
      to: 'decide',
      status: 'awaiting_approval',
      actor: 'loop',
      state: {
        production: 'helpdesk-r1',
        candidate: 'helpdesk-r2',
        decision: 'ship',
        decisionReasons: ['p = 0.01'],
      },
    });
    await page.goto(`${t.url}/#/loop`);
    const request = page.getByRole('region', { name: 'Approval for helpdesk round 1' });
    await expect(request.textContent()).resolves.toContain('promote helpdesk-r2?');
    expect({ unnamed: await unnamedControls(page) }).toEqual({ unnamed: [] });

    await request.getByRole('button', { name: 'Reject' }).click();
    await expect(request.getByRole('alert').textContent()).resolves.toContain('reason');
    expect((await t.store.loops.get(t.projectId, round.id))!.status).toBe('awaiting_approval');

    await request.getByLabel('Reason (required to reject)').fill('read the examples');
    await request.getByRole('button', { name: 'Approve' }).click();
    await request.waitFor({ state: 'detached' });
    const answered = (await t.store.loops.get(t.projectId, round.id))!;
    expect(answered.status).toBe('running');
    expect(answered.state.approval).toMatchObject({ approved: true, reason: 'read the examples' });
    const audit = await t.store.audit.list(t.projectId, { subjectId: round.id });
    expect(audit[0]).toMatchObject({ action: 'loop.round.approved', actor: expect.stringMatching(/^api:/) });
  });

  it('rolls a route back from the dashboard: the gateway serves the restored model at once, and the page shows it', async () => {
    await page.goto(`${t.url}/#/models`);
    const served = page.getByRole('table', { name: 'What the gateway serves now, per route' });
    const support = served
      .getByRole('row')
      .filter({ has: page.getByRole('cell', { name: 'support', exact: true }) });
    // support-v2 was promoted over support-v1: its watch keeps support-v1 for 5% of the users.
    await expect
      .poll(() => support.textContent())
      .toMatch(
        /support-v2.*support-v2 @ local: 95%.*support-v1 @ local: 5%.*yes \(watched: support-v1 kept as holdback\)/,
      );

    await page.getByRole('button', { name: 'Roll back support' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Reason (kept in the audit log)').fill('complaints spiked');
    const since = Date.now();
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    await page.getByText('Done: Roll back route support').waitFor();
    expect(await servedWithin('support-v1', since)).toBeLessThan(1000);
    // The promotion's watch is on the page, closed by the person's rollback with the reason.
    const watch = page.getByRole('article', { name: 'watch support: support-v2 against support-v1' });
    await expect
      .poll(() => watch.textContent(), { timeout: 10_000 })
      .toMatch(/rolled_back.*holdback 5%.*Decision by api:.*complaints spiked/);
    await expect.poll(() => support.textContent()).toMatch(/support-v1.*support-v1 @ local: 100%.*yes/);

    // Archiving the production model would leave the route nothing to serve (the gateway file has
    // no route "support"): refused with the reason, and nothing changes.
    const audit = (await t.store.audit.list(t.projectId, { limit: 1000 })).length;
    await page.getByRole('button', { name: 'Archive support-v1' }).click();
    await dialog.getByLabel('Reason (kept in the audit log)').fill('tidy up');
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    await page.getByText(/Refused: .*route "support" would serve nothing/).waitFor();
    expect((await t.store.models.get(t.projectId, 'support-v1'))!.stage).toBe('production');
    expect((await t.store.audit.list(t.projectId, { limit: 1000 })).length).toBe(audit);
    expect(await answer()).toBe('served by support-v1');
  });

  it('deletes an interaction and an end user from the interaction page; the registry marks the models trained on it', async () => {
    await page.goto(`${t.url}/#/interactions/q1`);
    await page.getByRole('button', { name: 'Delete this interaction' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByText(/Deleted: interactions 1, .*models marked: .*support-v1/).waitFor();
    expect(await t.store.interactions.get(t.projectId, 'q1')).toBeUndefined();
    await page.goto(`${t.url}/#/models`);
    const v1 = page
      .getByRole('row')
      .filter({ has: page.getByRole('cell', { name: 'support-v1', exact: true }) });
    await expect.poll(() => v1.first().textContent()).toMatch(/partly deleted/);

    await page.goto(`${t.url}/#/interactions/q5`);
    await page.getByRole('button', { name: 'Delete all data of end user end-user-7' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByText(/Deleted: interactions 1\b/).waitFor();
    expect(await t.store.interactions.get(t.projectId, 'q5')).toBeUndefined();
    const [entry] = await t.store.audit.list(t.projectId, { action: 'data.deleted' });
    expect(entry).toMatchObject({ subjectType: 'end_user', actor: expect.stringMatching(/^api:/) });
    expect(JSON.stringify(entry)).not.toContain('end-user-7');
  });

  it('shows two annotators with overlap 2 their shared item one at a time, their agreement per person, and adjudicates the split', async () => {
    const logged = await t.call('/api/v1/interactions', {
      body: {
        items: ['t1'].map((id) => ({
          id,
          route: 'team',
          model: 'tiny',
          messages: [{ role: 'user', content: 'Is the team item fine?' }],
          output: 'It is.',
        })),
      },
    });
    expect(logged.status).toBe(201);
    const claim = (annotator: string) =>
      t.call('/api/v1/annotation/claim', { body: { route: 'team', annotator } });
    const rate = (annotator: string, value: string) =>
      t.call('/api/v1/annotation/submit', {
        body: { interactionId: 't1', annotator, items: [{ kind: 'thumbs', value }] },
      });
    expect((await claim('ann')).body.item).toMatchObject({ interactionId: 't1', overlap: 2 });
    // Locked to ann: nothing on the route for bob until she is done.
    expect((await claim('bob')).body.item).toBeNull();
    expect((await rate('ann', 'up')).status).toBe(200);
    expect((await claim('bob')).body.item).toMatchObject({ interactionId: 't1', submitted: 1 });
    expect((await rate('bob', 'down')).status).toBe(200);

    await page.goto(`${t.url}/#/team`);
    const people = page.getByRole('table', { name: /Each annotator/ });
    await people.getByRole('cell', { name: 'bob', exact: true }).waitFor();
    const rowOf = async (name: string) =>
      (await people.locator('tr', { has: page.getByRole('cell', { name, exact: true }) }).textContent()) ??
      '';
    expect(await rowOf('ann')).toContain('0%');
    expect(await rowOf('bob')).toContain('0%');
    const split = page.getByRole('article', { name: 'Disagreement on t1 (thumbs)' });
    await expect(split.textContent()).resolves.toContain('ann: up');
    await split.getByLabel('Final label for t1 (thumbs)').selectOption('down');
    await split.getByLabel('Note').fill('bob is right');
    await split.getByRole('button', { name: 'Record final label for t1 (thumbs)' }).click();
    await split.getByText('Recorded down for t1 (thumbs).').waitFor();
    const decided = await t.call('/api/v1/annotation/disagreements');
    expect(decided.body.items.find((d: { interactionId: string }) => d.interactionId === 't1')).toMatchObject(
      {
        adjudication: { value: 'down', note: 'bob is right' },
      },
    );
    expect({ unnamed: await unnamedControls(page) }).toEqual({ unnamed: [] });
  });

  it('every page above ran under the Content-Security-Policy without a violation', async () => {
    expect(dashboardCsp).toContain("script-src 'self'");
    expect(dashboardCsp).toContain("frame-ancestors 'none'");
    expect({ violations: cspViolations }).toEqual({ violations: [] });
    // The policy is enforced: an inline script on the dashboard's page is refused and reported.
    await page.goto(`${t.url}/#/overview`);
    await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
    const inlineRan = await page.evaluate(() => {
      const script = document.createElement('script');
      script.textContent = 'window.__inlineRan = true';
      document.body.append(script);
      return (window as unknown as { __inlineRan?: boolean }).__inlineRan === true;
    });
    expect(inlineRan).toBe(false);
    await expect.poll(() => cspViolations.length).toBe(1);
    expect(cspViolations[0]).toMatch(/inline script/i);
  });
});
