import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { FeedbackInput, InteractionInput, mulberry32, parseInput } from '@ratchet/core';
import { buildDatasetVersion, calibrateProject } from '@ratchet/loop';
import { buildServer, loadServerConfig } from '@ratchet/server';
import { Store } from '@ratchet/store';
import { chromium } from 'playwright-core';
import { type Bench, type BenchContext, loadNote } from './lib/bench.js';
import { repoDir, round, workDir } from './lib/results.js';
import { median } from './lib/stats.js';

const DAY = 86_400_000;
const chromiumPath = process.env.RATCHET_CHROMIUM ?? '/usr/bin/chromium';
const webDist = join(repoDir, 'packages/web/dist');

const complaints = [
  'the refund policy in the answer is wrong',
  'wrong refund amount and policy',
  'too long, did not answer the question',
  'rude tone and unhelpful',
  'the tracking link is broken',
  'asked for my password, unsafe',
];

/**
 * Seeds a project through the store's own write paths (the tables, indexes and derived rows are
 * what production has): `n` interactions over 30 days from four models on two routes, 95% of them
 * rated by one to three of 200 raters (thumbs or stars, some criteria, comments and corrections).
 */
async function seed(store: Store, projectId: string, n: number, log: (m: string) => void): Promise<void> {
  const rand = mulberry32(8);
  const now = Date.now();
  const batch = 2000;
  for (let from = 0; from < n; from += batch) {
    const interactions = [];
    const feedback = [];
    for (let i = from; i < Math.min(n, from + batch); i++) {
      const model = `tiny-v${1 + (i % 4)}`;
      const prompt = `Customer question ${Math.floor(i / 5) % 5000}: where is my order?`;
      const quality = (i % 4) / 3 - 0.5 + (rand() - 0.5);
      interactions.push(
        parseInput(InteractionInput, {
          id: `i${String(i).padStart(7, '0')}`,
          route: i % 3 ? 'support-bot' : 'billing-bot',
          model,
          messages: [{ role: 'user', content: prompt }],
          output: `Answer ${i}: ${quality > 0 ? 'here is how to track it' : 'I do not know'}`,
          tags: [`plan:${['free', 'pro', 'team'][i % 3]}`],
          createdAt: now - Math.floor(((n - i) / n) * 30 * DAY),
        }),
      );
      if (i % 20 === 0) continue; // unrated: the annotation queue's work
      const raters = 1 + Math.floor(rand() * 3);
      for (let r = 0; r < raters; r++) {
        const raterId = `r${Math.floor(rand() * 200)}`;
        const x = quality + (rand() - 0.5) * 0.6;
        const common = { interactionId: `i${String(i).padStart(7, '0')}`, raterId, source: 'annotator' };
        if (rand() < 0.5) feedback.push({ ...common, kind: 'thumbs', value: x > 0 ? 'up' : 'down' });
        else
          feedback.push({ ...common, kind: 'stars', value: Math.min(5, Math.max(1, Math.round(3 + 2 * x))) });
        if (rand() < 0.1)
          feedback.push({
            ...common,
            kind: 'criteria',
            scores: {
              accuracy: Math.min(5, Math.max(1, Math.round(3 + 2 * x))),
              helpfulness: 1 + Math.floor(rand() * 5),
            },
          });
        if (x < 0 && rand() < 0.15)
          feedback.push({
            ...common,
            kind: 'comment',
            text: complaints[Math.floor(rand() * complaints.length)]!,
          });
        if (x < 0 && rand() < 0.03)
          feedback.push({ ...common, kind: 'correction', text: 'Track it under Orders.' });
      }
    }
    await store.interactions.insert(projectId, interactions);
    await store.feedback.insert(
      projectId,
      feedback.map((f) => parseInput(FeedbackInput, f)),
    );
    if ((from / batch) % 10 === 0) log(`seeded ${Math.min(n, from + batch)} interactions`);
  }
}

/** The API calls each dashboard page makes when it opens (as the pages in packages/web do). */
function pageCalls(sampleId: string, pairId: string): Record<string, string[]> {
  return {
    overview: ['/dashboard/overview?days=30', '/experiments'],
    explorer: ['/interactions?limit=50'],
    explorer_filtered: ['/interactions?limit=50&raterId=r7&rating=up&route=support-bot'],
    interaction: [`/interactions/${sampleId}`, '/raters'],
    queue: [
      '/dashboard/queue?raterId=annotator&limit=20',
      `/interactions/${sampleId}`,
      `/interactions/${pairId}`,
      '/score-configs',
    ],
    raters: ['/raters', '/dashboard/analysis'],
    analysis: ['/dashboard/analysis'],
    datasets: ['/datasets'],
    runs: ['/runs'],
    models: ['/models', '/experiments', '/evaluations'],
    what_changed: ['/dashboard/what-changed'],
  };
}

/** The browser's route for each page (the explorer's filters go in the hash). */
const browserRoutes: Record<string, string> = {
  overview: 'overview',
  explorer: 'explorer',
  explorer_filtered: 'explorer?raterId=r7&rating=up&route=support-bot',
  queue: 'queue',
  raters: 'raters',
  analysis: 'analysis',
  datasets: 'datasets',
  runs: 'runs',
  models: 'models',
  what_changed: 'what-changed',
};

async function timeApi(base: string, key: string, paths: string[]): Promise<number> {
  const started = performance.now();
  await Promise.all(
    paths.map(async (p) => {
      const res = await fetch(`${base}/api/v1${p}`, { headers: { authorization: `Bearer ${key}` } });
      await res.arrayBuffer();
      // Endpoints other engineers are still adding may be missing (404); anything else is a failure.
      if (!res.ok && res.status !== 404) throw new Error(`${p}: HTTP ${res.status}`);
    }),
  );
  return performance.now() - started;
}

/** Milliseconds from navigation until the page shows no "Loading" placeholder, per page (median of runs). */
async function timeBrowser(base: string, key: string, runs: number, ctx: BenchContext) {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(base);
    await page.evaluate(`sessionStorage.setItem('ratchet.key', ${JSON.stringify(key)})`);
    const load = async (route: string) => {
      await page.goto('about:blank');
      const started = performance.now();
      await page.goto(`${base}/#/${route}`);
      // Signed in (the navigation only shows then) and the page's own heading is up.
      await page.locator('nav[aria-label="Pages"]').waitFor();
      await page.locator('main h1').waitFor();
      // (A string: this runs in the page, and bench/ is typed without the DOM.)
      await page.waitForFunction('!/Loading|Computing/.test(document.body.textContent || "")', undefined, {
        timeout: 60_000,
        polling: 10,
      });
      return performance.now() - started;
    };
    // The browser's very first load of the app: nothing cached, the bundle compiled from scratch.
    const first = await load('overview');
    ctx.log(`browser first load (cold): ${round(first, 0)} ms`);
    const out: Record<string, number> = {};
    for (const [name, route] of Object.entries(browserRoutes)) {
      await load(route); // warm-up, as for the API timings
      const samples: number[] = [];
      for (let r = 0; r < runs; r++) samples.push(await load(route));
      out[name] = median(samples);
      ctx.log(`browser ${name}: ${round(out[name]!, 0)} ms`);
    }
    return { pages: out, first };
  } finally {
    await browser.close();
  }
}

export const dashboardLoad: Bench = {
  name: 'dashboard-load',
  summary:
    "100k interactions with feedback on SQLite: each dashboard page's API calls and its load in chromium",
  keyMetrics: ['page_load_ms_max_100k', 'api_max_100k_ms'],
  async run(ctx) {
    const n = ctx.tiny ? 2_000 : 100_000;
    const dir = join(workDir, ctx.tiny ? 'dashboard-load-tiny' : 'dashboard-load');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const store = await Store.open(`sqlite:${join(dir, 'ratchet.db')}`);
    const project = await store.projects.create('bench');
    const key = (await store.projects.createKey(project.id, 'secret')).key;
    const seedStart = performance.now();
    ctx.log(`seeding ${n} interactions with feedback`);
    await seed(store, project.id, n, ctx.log);
    await calibrateProject(store, project.id);
    const dataset = await buildDatasetVersion(
      store,
      project.id,
      { name: 'bench-kto', method: 'kto', curation: false },
      { dataDir: join(dir, 'data') },
    );
    for (const [i, name] of ['tiny-v3', 'tiny-v4'].entries()) {
      await store.models.register(
        project.id,
        { name, route: 'support-bot', baseModel: 'tiny', datasetId: dataset.id },
        'bench',
      );
      // As behind a gateway whose default upstream serves the route's models (a stage change
      // must name who serves the model).
      await store.models.setStage(project.id, name, 'production', 'bench', `round ${i + 1}`, {
        upstreams: ['worker'],
        routeUpstreams: {},
        defaultUpstream: 'worker',
      });
    }
    ctx.log(`seeded in ${round((performance.now() - seedStart) / 1000, 1)} s; ${loadNote()}`);

    process.env.RATCHET_WEB_DIR = webDist;
    const server = await buildServer({
      store,
      // BENCH_REPORT_THREAD=off computes the reports on the event loop, as before the report thread.
      reportThread: process.env.BENCH_REPORT_THREAD !== 'off',
      config: loadServerConfig({ port: 0, logLevel: 'silent', dataDir: join(dir, 'data') }, {}),
    });
    delete process.env.RATCHET_WEB_DIR;
    const base = await server.listen();
    try {
      const queue = (await (
        await fetch(`${base}/api/v1/dashboard/queue?raterId=annotator&limit=1`, {
          headers: { authorization: `Bearer ${key}` },
        })
      ).json()) as { items: { interactionId: string; pairWith: string | null }[] };
      const sample = queue.items[0];
      if (!sample) throw new Error('the annotation queue is empty: the seed should leave unrated items');
      const calls = pageCalls(sample.interactionId, sample.pairWith ?? sample.interactionId);
      const metrics: Record<string, number> = {};
      // The background reports, computed once from cold (what the first visitor after new data
      // waits for; later visits get the last report at once while a newer one computes). Meanwhile
      // another client keeps opening the explorer: the report thread must not hold it up.
      const during: number[] = [];
      for (const report of ['analysis', 'what-changed']) {
        const started = performance.now();
        let done = false;
        const probe = (async () => {
          while (!done) {
            const asked = performance.now();
            await timeApi(base, key, calls.explorer!);
            during.push(performance.now() - asked);
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        })();
        try {
          for (;;) {
            const res = await fetch(`${base}/api/v1/dashboard/${report}`, {
              headers: { authorization: `Bearer ${key}` },
            });
            const body = (await res.json()) as { fresh?: boolean };
            if (!res.ok) throw new Error(`${report}: HTTP ${res.status}`);
            if (body.fresh) break;
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        } finally {
          done = true;
          await probe;
        }
        const name = `report_${report.replace('-', '_')}_compute_s`;
        metrics[name] = round((performance.now() - started) / 1000, 2);
        ctx.log(`${report} report computed in ${metrics[name]} s`);
      }
      during.sort((a, b) => a - b);
      metrics.explorer_during_report_compute_p50_ms = round(during[Math.floor(during.length / 2)] ?? 0, 1);
      metrics.explorer_during_report_compute_max_ms = round(during.at(-1) ?? 0, 1);
      ctx.log(
        `explorer while the reports computed: ${during.length} loads, median ${metrics.explorer_during_report_compute_p50_ms} ms, worst ${metrics.explorer_during_report_compute_max_ms} ms`,
      );
      const runs = ctx.tiny ? 2 : 5;
      for (const [page, paths] of Object.entries(calls)) {
        await timeApi(base, key, paths); // warm-up: first-use caches (statements, pages)
        const samples: number[] = [];
        for (let r = 0; r < runs; r++) samples.push(await timeApi(base, key, paths));
        metrics[`api_${page}_ms`] = round(median(samples), 1);
        ctx.log(`api ${page}: ${metrics[`api_${page}_ms`]} ms (${paths.join(' ')})`);
      }
      metrics.api_max_100k_ms = Math.max(
        ...Object.entries(metrics)
          .filter(([k]) => k.startsWith('api_'))
          .map(([, v]) => v),
      );
      let browserNote = 'no browser in the tiny configuration';
      if (!ctx.tiny) {
        if (!existsSync(chromiumPath))
          throw new Error(`no chromium at ${chromiumPath} (make test installs it)`);
        if (!existsSync(join(webDist, 'index.html')))
          throw new Error('the dashboard is not built: run make build');
        const browser = await timeBrowser(base, key, 3, ctx);
        for (const [page, ms] of Object.entries(browser.pages))
          metrics[`page_load_${page}_ms`] = round(ms, 1);
        metrics.page_load_ms_max_100k = round(Math.max(...Object.values(browser.pages)), 1);
        metrics.page_load_first_cold_ms = round(browser.first, 1);
        browserNote =
          'browser: headless Debian chromium, a full reload of the page until no "Loading"/"Computing" placeholder is left, median of 3 after a warm-up (page_load_first_cold_ms: the first load of the app in a fresh browser)';
      }
      metrics.interactions_count = n;
      return {
        metrics,
        notes: `${n} interactions (95% rated, 1-3 ratings each, criteria, comments, corrections), calibrated, one KTO dataset, 2 registered models, SQLite. API: each page's calls in parallel as the page makes them, over HTTP to a real server, median of ${runs} after a warm-up. Error analysis and what-changed are background reports (served from the last computation, recomputed when the data version changes); report_*_compute_s is their cold computation (on the server's report thread), which the page does not wait for; explorer_during_report_compute_* is the explorer's API call made over and over meanwhile. ${browserNote}. ${loadNote()}; the machine is shared, so timings are noisy.`,
      };
    } finally {
      await server.close();
      await store.close();
    }
  },
};
