import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeCalibrationSnapshot,
  FeedbackInput,
  InteractionInput,
  parseInput,
  RecalibrationPolicy,
  SeededRandom,
} from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrateProject } from './calibrate.js';

const ITEMS = 600;
const RATERS = 100;

/** Three star ratings per interaction from honest raters (bias + quality + noise) and a few inverted ones. */
function feedbackFor(rng: SeededRandom, item: number, quality: number, raters: number[]) {
  return raters.map((r) => {
    const signal = r % 10 === 0 ? -quality : quality + (r % 5) * 0.1 - 0.2;
    const stars = Math.min(5, Math.max(1, Math.round(3 + 2 * signal + rng.normal(0, 0.3))));
    return parseInput(FeedbackInput, {
      kind: 'stars',
      interactionId: `i${item}`,
      raterId: `r${r}`,
      value: stars,
    });
  });
}

async function storedResults(store: Store, projectId: string) {
  const rewards = new Map<string, number>();
  for (let i = 0; i < ITEMS; i++) {
    const row = await store.calibration.rewardOf(projectId, `i${i}`);
    if (row) rewards.set(row.interactionId, row.reward);
  }
  const raters = await store.calibration.raterParameters(projectId);
  const flagged = [...raters.values()]
    .filter((r) => r.flagged)
    .map((r) => r.raterId)
    .sort();
  return { rewards, flagged };
}

/** Rewards an incremental run stored beside their rows (store.calibration.save). */
async function changeCount(store: Store, projectId: string): Promise<number> {
  const row = await store.db
    .selectFrom('interaction_reward_changes')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('project_id', '=', projectId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

for (const target of testDatabases()) {
  describe(`incremental calibrateProject on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    const rng = new SeededRandom(3);

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('recalibrate')).id;
      const quality = Array.from({ length: ITEMS }, () => rng.normal(0, 0.5));
      await store.interactions.insert(
        projectId,
        quality.map((_, i) =>
          parseInput(InteractionInput, {
            id: `i${i}`,
            model: 'm',
            route: 'support',
            messages: [{ role: 'user', content: `question ${i}` }],
            output: `answer ${i}`,
          }),
        ),
      );
      const feedback = quality.flatMap((q, i) => feedbackFor(rng, i, q, rng.sampleDistinct(RATERS, 3)));
      await store.feedback.insert(projectId, feedback);
      const first = await calibrateProject(store, projectId);
      expect(first.mode).toBe('full');
      // 1% new ratings: a fourth rater on a few interactions.
      const later = [];
      for (let i = 0; i < ITEMS; i += 60)
        later.push(...feedbackFor(rng, i, quality[i]!, [(i * 7 + 1) % RATERS]));
      // Rated by the same rater already? Then it is an edit, which counts as new as well.
      await store.feedback.insert(projectId, later);
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('runs incrementally on the second call, rewrites only changed rewards, and stores what a full refit stores', async () => {
      const second = await calibrateProject(store, projectId);
      expect(second.reason).toBe('incremental');
      expect(second.mode).toBe('incremental');
      expect(second.rewardsWritten).toBeGreaterThan(0);
      expect(second.rewardsWritten).toBeLessThan(second.items);
      const run = await store.calibration.latestRun(projectId);
      expect(run?.stats).toMatchObject({ mode: 'incremental', incrementalRuns: 1 });
      const incremental = await storedResults(store, projectId);
      expect(incremental.rewards.size).toBe(ITEMS);
      // Every item had a reward row, so each rewrite is a change beside its row (readers read it).
      expect(await changeCount(store, projectId)).toBe(second.rewardsWritten);

      const full = await calibrateProject(store, projectId, { recalibration: false });
      expect(full.mode).toBe('full');
      expect(await changeCount(store, projectId)).toBe(0);
      const refit = await storedResults(store, projectId);
      expect(incremental.flagged).toEqual(refit.flagged);
      expect(incremental.flagged.length).toBeGreaterThan(0);
      let max = 0;
      for (const [id, reward] of refit.rewards)
        max = Math.max(max, Math.abs(reward - incremental.rewards.get(id)!));
      console.log(
        `${target.name}: ${second.rewardsWritten} of ${second.items} rewards rewritten, max difference to a full refit ${max.toFixed(4)}`,
      );
      expect(max).toBeLessThan(0.01);
    });

    it('refits fully when ratings were deleted since the last run', async () => {
      await store.deletion.delete(projectId, { kind: 'interactions', ids: ['i5'] }, 'test');
      const summary = await calibrateProject(store, projectId);
      expect(summary.mode).toBe('full');
      expect(summary.reason).toMatch(/deleted/);
      expect(await store.calibration.rewardOf(projectId, 'i5')).toBeUndefined();
    });

    it('refits fully when the options change', async () => {
      const summary = await calibrateProject(store, projectId, { calibration: { tolerance: 1e-5 } });
      expect(summary.mode).toBe('full');
      expect(summary.reason).toMatch(/options changed/);
    });

    it('reads only the ratings received since when this process ran the previous calibration, and stores what a full refit stores', async () => {
      const base = await calibrateProject(store, projectId);
      expect(base.mode).toBe('full'); // the options changed back
      // New ratings only (raters who never rated these interactions): all additions.
      const later = [];
      for (let i = 3; i < ITEMS; i += 50)
        later.push(
          ...feedbackFor(rng, i, 0, []),
          parseInput(FeedbackInput, {
            kind: 'stars',
            interactionId: `i${i}`,
            raterId: `late${i % 4}`,
            value: 1 + (i % 5),
          }),
        );
      await store.feedback.insert(projectId, later);
      const next = await calibrateProject(store, projectId);
      expect(next).toMatchObject({ fromSnapshot: true, mode: 'incremental', reason: 'incremental' });
      expect(next.ratings).toBe(base.ratings + later.length);
      expect(next.rewardsWritten).toBeLessThan(next.items);
      const incremental = await storedResults(store, projectId);
      await calibrateProject(store, projectId, { recalibration: false });
      const refit = await storedResults(store, projectId);
      expect(incremental.flagged).toEqual(refit.flagged);
      let max = 0;
      for (const [id, reward] of refit.rewards)
        max = Math.max(max, Math.abs(reward - incremental.rewards.get(id)!));
      console.log(`${target.name}: from the kept snapshot, max difference to a full refit ${max.toFixed(4)}`);
      expect(max).toBeLessThan(0.01);
      // An edit (a rating replaced) is not an addition: everything is read again.
      await store.feedback.insert(projectId, [
        parseInput(FeedbackInput, { kind: 'stars', interactionId: 'i3', raterId: 'late3', value: 5 }),
      ]);
      const edited = await calibrateProject(store, projectId);
      expect(edited.fromSnapshot).toBe(false);
      expect(edited.mode).toBe('incremental');
    });
  });
}

for (const target of testDatabases()) {
  describe(`calibrateProject continuing from a snapshot file on ${target.name}`, () => {
    let url: string;
    let store: Store;
    let dataDir: string;
    const projects = { memory: '', file: '' };
    const stores: Store[] = [];
    /** Another process on the same database: a Store object of its own keeps no snapshot in memory. */
    const restarted = async () => {
      const s = await Store.open(url);
      stores.push(s);
      return s;
    };

    beforeAll(async () => {
      url = await target.create();
      store = await Store.open(url);
      dataDir = mkdtempSync(join(tmpdir(), 'ratchet-snapshot-'));
      const rng = new SeededRandom(11);
      const quality = Array.from({ length: ITEMS }, () => rng.normal(0, 0.5));
      const feedback = quality.flatMap((q, i) => feedbackFor(rng, i, q, rng.sampleDistinct(RATERS, 3)));
      // Two projects with the same ratings: one continues in memory, the other from its file.
      for (const key of ['memory', 'file'] as const) {
        projects[key] = (await store.projects.create(`snapshot-${key}`)).id;
        await store.interactions.insert(
          projects[key],
          quality.map((_, i) =>
            parseInput(InteractionInput, {
              id: `i${i}`,
              model: 'm',
              route: 'support',
              messages: [{ role: 'user', content: `question ${i}` }],
              output: `answer ${i}`,
            }),
          ),
        );
        await store.feedback.insert(projects[key], feedback);
      }
    });
    afterAll(async () => {
      for (const s of stores) await s.close();
      await store?.close();
      rmSync(dataDir, { recursive: true, force: true });
      await target.cleanup();
    });

    it('a restarted process reads only the ratings since from the file and stores what the in-memory snapshot gives', async () => {
      await calibrateProject(store, projects.memory);
      const base = await calibrateProject(store, projects.file, { dataDir });
      // Additions only: raters new to these interactions.
      const later = [];
      for (let i = 3; i < ITEMS; i += 50)
        later.push(
          parseInput(FeedbackInput, {
            kind: 'stars',
            interactionId: `i${i}`,
            raterId: `late${i % 4}`,
            value: 1 + (i % 5),
          }),
        );
      await store.feedback.insert(projects.memory, later);
      await store.feedback.insert(projects.file, later);

      const inMemory = await calibrateProject(store, projects.memory);
      expect(inMemory).toMatchObject({ fromSnapshot: true, mode: 'incremental' });
      const fromFile = await calibrateProject(await restarted(), projects.file, { dataDir });
      expect(fromFile).toMatchObject({ fromSnapshot: true, mode: 'incremental', reason: 'incremental' });
      expect(fromFile.ratings).toBe(base.ratings + later.length);

      const a = await storedResults(store, projects.memory);
      const b = await storedResults(store, projects.file);
      expect(b.flagged).toEqual(a.flagged);
      expect(b.rewards.size).toBe(ITEMS);
      for (const [id, reward] of a.rewards) expect(b.rewards.get(id)).toBeCloseTo(reward, 12);
      // The file now holds the run just made, for the next process.
      const saved = decodeCalibrationSnapshot(
        readFileSync(join(dataDir, 'calibration', `${projects.file}.snapshot`)),
      );
      expect((saved.meta as { runId: string }).runId).toBe(fromFile.run.id);
    });

    it('a deletion since invalidates the file: the next process refits fully and keeps a new one', async () => {
      await store.deletion.delete(projects.file, { kind: 'interactions', ids: ['i7'] }, 'test');
      const after = await calibrateProject(await restarted(), projects.file, { dataDir });
      expect(after).toMatchObject({ fromSnapshot: false, mode: 'full' });
      expect(after.reason).toMatch(/deleted/);
      expect(await store.calibration.rewardOf(projects.file, 'i7')).toBeUndefined();
      const saved = decodeCalibrationSnapshot(
        readFileSync(join(dataDir, 'calibration', `${projects.file}.snapshot`)),
      );
      expect((saved.meta as { runId: string }).runId).toBe(after.run.id);
      expect(saved.snapshot.data.itemCount).toBe(ITEMS - 1);
    });

    it('changed options invalidate the file', async () => {
      const changed = await calibrateProject(await restarted(), projects.file, {
        dataDir,
        calibration: { tolerance: 1e-5 },
      });
      expect(changed).toMatchObject({ fromSnapshot: false, mode: 'full' });
      expect(changed.reason).toMatch(/options changed/);
    });

    it('a snapshot whose record of the store is wrong fails its save whole, and the next run reads the store instead', async () => {
      const options = { dataDir, calibration: { tolerance: 1e-5 } };
      const snapshot = join(dataDir, 'calibration', `${projects.file}.snapshot`);
      expect(existsSync(snapshot)).toBe(true);
      await store.feedback.insert(projects.file, [
        parseInput(FeedbackInput, { kind: 'stars', interactionId: 'i11', raterId: 'later', value: 5 }),
      ]);
      // A change the snapshot's record does not know of (written behind its back).
      await store.db
        .insertInto('interaction_reward_changes')
        .values({
          project_id: projects.file,
          interaction_id: 'i11',
          calibration_id: 'elsewhere',
          n: 1,
          raw_mean: 0,
          reward: 0.123,
          sd: 1,
          lower: -1,
          upper: 1,
        })
        .execute();
      const runsBefore = (await store.calibration.latestRun(projects.file))!.id;
      await expect(calibrateProject(await restarted(), projects.file, options)).rejects.toThrow(
        /unique|duplicate/i,
      );
      expect((await store.calibration.latestRun(projects.file))!.id).toBe(runsBefore);
      expect(existsSync(snapshot)).toBe(false);

      const next = await calibrateProject(await restarted(), projects.file, options);
      expect(next).toMatchObject({ fromSnapshot: false, mode: 'incremental' });
      const stored = await store.calibration.rewardOf(projects.file, 'i11');
      expect(stored?.n).toBe(4);
      expect(stored?.reward).not.toBe(0.123);
      expect(existsSync(snapshot)).toBe(true);

      // Two more restarts, each with a newly rated interaction: each file appends the new item's id.
      const idsInFile = () =>
        new TextDecoder()
          .decode((decodeCalibrationSnapshot(readFileSync(snapshot)).meta as { items: Uint8Array }).items)
          .split('\n');
      const before = idsInFile();
      for (const id of ['new-a', 'new-b']) {
        await store.interactions.insert(projects.file, [
          parseInput(InteractionInput, {
            id,
            model: 'm',
            messages: [{ role: 'user', content: id }],
            output: id,
          }),
        ]);
        await store.feedback.insert(projects.file, [
          parseInput(FeedbackInput, { kind: 'stars', interactionId: id, raterId: 'r1', value: 4 }),
        ]);
        const run = await calibrateProject(await restarted(), projects.file, options);
        expect(run).toMatchObject({ fromSnapshot: true, mode: 'incremental' });
        expect((await store.calibration.rewardOf(projects.file, id))?.n).toBe(1);
      }
      expect(idsInFile()).toEqual([...before, 'new-a', 'new-b']);
    });
  });
}

/** A project's stored rewards, reward sd and interval by interaction (store.calibration.storedRewards). */
async function storedColumns(store: Store, projectId: string) {
  const out = new Map<string, { reward: number; sd: number; lower: number; upper: number }>();
  for await (const page of store.calibration.storedRewards(projectId))
    for (const r of page) out.set(r.interactionId, r);
  return out;
}

/** The fit of the run whose snapshot file this is, by interaction: what the save compared with. */
function fitInFile(dataDir: string, projectId: string) {
  const { snapshot, meta } = decodeCalibrationSnapshot(
    readFileSync(join(dataDir, 'calibration', `${projectId}.snapshot`)),
  );
  // The item ids are stored as UTF-8 lines.
  const m = meta as { runId: string; items: Uint8Array };
  expect(m.items).toBeInstanceOf(Uint8Array);
  const ids = new TextDecoder().decode(m.items).split('\n');
  const it = snapshot.items;
  const fit = new Map<string, { reward: number; sd: number; lower: number; upper: number }>();
  ids.forEach((id, k) => {
    // Thumbs-only items are stored with their Wilson interval (calibrateProject); these are stars.
    expect(Number.isFinite(it.wilsonLower[k]!)).toBe(false);
    fit.set(id, { reward: it.reward[k]!, sd: it.sd[k]!, lower: it.lower[k]!, upper: it.upper[k]! });
  });
  return { runId: m.runId, fit };
}

for (const target of testDatabases()) {
  describe(`the tolerance-limited save on ${target.name}`, () => {
    const tolerance = RecalibrationPolicy.parse({}).rewardTolerance;
    let url: string;
    let store: Store;
    let dataDir: string;
    let projectId: string;
    const rng = new SeededRandom(29);
    const quality = Array.from({ length: ITEMS }, () => rng.normal(0, 0.5));
    const stores: Store[] = [];
    const restarted = async () => {
      const s = await Store.open(url);
      stores.push(s);
      return s;
    };

    beforeAll(async () => {
      url = await target.create();
      store = await Store.open(url);
      dataDir = mkdtempSync(join(tmpdir(), 'ratchet-tolerance-'));
      projectId = (await store.projects.create('tolerance')).id;
      await store.interactions.insert(
        projectId,
        quality.map((_, i) =>
          parseInput(InteractionInput, {
            id: `i${i}`,
            model: 'm',
            route: 'support',
            messages: [{ role: 'user', content: `question ${i}` }],
            output: `answer ${i}`,
          }),
        ),
      );
      await store.feedback.insert(
        projectId,
        quality.flatMap((q, i) => feedbackFor(rng, i, q, rng.sampleDistinct(RATERS, 3))),
      );
    });
    afterAll(async () => {
      for (const s of stores) await s.close();
      await store?.close();
      rmSync(dataDir, { recursive: true, force: true });
      await target.cleanup();
    });

    it(`keeps every stored reward, sd and interval within ${tolerance} of the latest fit over successive runs, and within 0.01 of a full refit`, async () => {
      const first = await calibrateProject(store, projectId, { dataDir });
      expect(first.mode).toBe('full');
      let skippedMoves = 0;
      // Three rounds of additions (new raters on every 40th interaction, from a new process each
      // time, so it continues from the file), then one from a process whose file is gone (it
      // reads every rating and compares its fit with the stored rewards instead).
      for (let round = 0; round < 4; round++) {
        const later = [];
        for (let i = round; i < ITEMS; i += 40)
          later.push(
            parseInput(FeedbackInput, {
              kind: 'stars',
              interactionId: `i${i}`,
              // Honest new raters (as feedbackFor's), so the priors do not drift to a full refit.
              raterId: `late${round}-${i % 3}`,
              value: Math.min(5, Math.max(1, Math.round(3 + 2 * quality[i]! + rng.normal(0, 0.3)))),
            }),
          );
        await store.feedback.insert(projectId, later);
        const fromFile = round < 3;
        if (!fromFile) rmSync(join(dataDir, 'calibration', `${projectId}.snapshot`));
        const run = await calibrateProject(await restarted(), projectId, { dataDir });
        expect(run, run.reason).toMatchObject({ mode: 'incremental', fromSnapshot: fromFile });
        expect(run.rewardsWritten).toBeLessThan(run.items);
        const { runId, fit } = fitInFile(dataDir, projectId);
        expect(runId).toBe(run.run.id);
        const stored = await storedColumns(store, projectId);
        expect(stored.size).toBe(fit.size);
        let worst = 0;
        for (const [id, f] of fit) {
          const s = stored.get(id)!;
          for (const key of ['reward', 'sd', 'lower', 'upper'] as const) {
            const d = Math.abs(s[key] - f[key]);
            worst = Math.max(worst, d);
            if (key === 'reward' && d > 0) skippedMoves++;
          }
        }
        expect(worst).toBeLessThanOrEqual(tolerance + 1e-12);
      }
      // The tolerance did leave some small moves unwritten (otherwise this tests nothing).
      expect(skippedMoves).toBeGreaterThan(0);
      const incremental = await storedResults(store, projectId);
      const refit = await calibrateProject(store, projectId, { recalibration: false });
      expect(refit.mode).toBe('full');
      const full = await storedResults(store, projectId);
      expect(incremental.flagged).toEqual(full.flagged);
      let max = 0;
      for (const [id, reward] of full.rewards)
        max = Math.max(max, Math.abs(reward - incremental.rewards.get(id)!));
      console.log(
        `${target.name}: after 4 incremental runs, ${skippedMoves} reward moves left unwritten (each within ${tolerance}); max difference to a full refit ${max.toFixed(4)}`,
      );
      expect(max).toBeLessThan(0.01);
    });
  });
}
