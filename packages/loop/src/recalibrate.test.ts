import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeCalibrationSnapshot,
  FeedbackInput,
  InteractionInput,
  parseInput,
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

      const full = await calibrateProject(store, projectId, { recalibration: false });
      expect(full.mode).toBe('full');
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
  });
}
