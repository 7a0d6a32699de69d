import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type FeedbackInput,
  FeedbackInput as FeedbackSchema,
  InteractionInput,
  mulberry32,
  parseInput,
} from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrateProject } from './calibrate.js';
import { buildDatasetVersion } from './datasets.js';

/**
 * 60 prompts x 4 answers with a hidden quality; 40 raters with their own leniency, 8 of them
 * adversarial (they rate the opposite of the truth). Each answer gets 5 star ratings.
 */
function world(seed = 5) {
  const rand = mulberry32(seed);
  const interactions: ReturnType<typeof parseInput<typeof InteractionInput>>[] = [];
  const truth = new Map<string, number>();
  for (let p = 0; p < 60; p++) {
    for (let a = 0; a < 4; a++) {
      const id = `p${p}-a${a}`;
      truth.set(id, rand() * 2 - 1);
      interactions.push(
        parseInput(InteractionInput, {
          id,
          model: 'tiny',
          messages: [{ role: 'user', content: `Question ${p}: how do I do thing ${p * 7}?` }],
          output: `Answer ${a} to question ${p}, variant ${Math.floor(rand() * 1e6)}.`,
          createdAt: 1_000_000 + p * 1000 + a,
          tags: [p % 3 ? 'plan:free' : 'plan:pro'],
        }),
      );
    }
  }
  const raters = Array.from({ length: 40 }, (_, r) => ({
    id: `rater-${r}`,
    bias: rand() * 1.2 - 0.6,
    adversarial: r < 8,
  }));
  const feedback: FeedbackInput[] = [];
  for (const i of interactions) {
    const q = truth.get(i.id!)!;
    const chosen = new Set<number>();
    while (chosen.size < 5) chosen.add(Math.floor(rand() * raters.length));
    for (const r of chosen) {
      const rater = raters[r]!;
      const signal = rater.adversarial ? -q : q;
      const x = signal + rater.bias + (rand() - 0.5) * 0.4;
      const stars = Math.min(5, Math.max(1, Math.round(3 + 2 * x)));
      feedback.push({ kind: 'stars', interactionId: i.id!, raterId: rater.id, value: stars });
    }
  }
  return { interactions, feedback: feedback.map((f) => parseInput(FeedbackSchema, f)), truth, raters };
}

for (const target of testDatabases()) {
  describe(`calibrate and build datasets on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    const w = world();
    const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-data-'));

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('loop')).id;
      await store.interactions.insert(projectId, w.interactions);
      await store.feedback.insert(projectId, w.feedback);
      // An answer that leaks an email address, rated well: curation must redact it, on record.
      await store.interactions.insert(projectId, [
        parseInput(InteractionInput, {
          id: 'pii-1',
          model: 'tiny',
          messages: [{ role: 'user', content: 'My email is jane@example.com, reset it' }],
          output: 'Done, jane@example.com.',
        }),
      ]);
      await store.feedback.insert(
        projectId,
        ['rater-20', 'rater-21', 'rater-22'].map((raterId) =>
          parseInput(FeedbackSchema, { kind: 'stars', interactionId: 'pii-1', raterId, value: 5 }),
        ),
      );
      // A correction and a preference: pairwise evidence for DPO.
      await store.feedback.insert(projectId, [
        parseInput(FeedbackSchema, {
          kind: 'correction',
          interactionId: 'p1-a0',
          raterId: 'editor',
          source: 'annotator',
          text: 'The corrected answer.',
        }),
        parseInput(FeedbackSchema, {
          kind: 'preference',
          interactionId: 'p2-a0',
          other: 'p2-a1',
          choice: 'this',
          raterId: 'editor',
        }),
      ]);
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('calibrates: flags the adversarial raters and stores rewards that beat the raw mean', async () => {
      const summary = await calibrateProject(store, projectId);
      expect(summary.ratings).toBe(w.feedback.length + 3);
      const raters = await store.raters.list(projectId, { limit: 100 });
      const flagged = new Set(raters.filter((r) => r.flagged).map((r) => r.id));
      const adversaries = w.raters.filter((r) => r.adversarial).map((r) => r.id);
      expect(adversaries.filter((id) => flagged.has(id)).length).toBeGreaterThanOrEqual(7);
      expect([...flagged].filter((id) => !adversaries.includes(id)).length).toBeLessThanOrEqual(1);
      expect(raters.find((r) => flagged.has(r.id))?.flagReason).toBeTruthy();

      let agreeCalibrated = 0;
      let agreeRaw = 0;
      for (const [id, q] of w.truth) {
        const r = (await store.calibration.rewardOf(projectId, id))!;
        if (Math.sign(r.reward) === Math.sign(q)) agreeCalibrated++;
        if (Math.sign(r.rawMean) === Math.sign(q)) agreeRaw++;
      }
      expect(agreeCalibrated / w.truth.size).toBeGreaterThan(agreeRaw / w.truth.size + 0.05);
    });

    it('builds immutable KTO and DPO versions with files, hash, lineage and no prompt leakage', async () => {
      const kto = await buildDatasetVersion(
        store,
        projectId,
        { name: 'support-kto', method: 'kto', options: { split: { by: 'prompt', testFraction: 0.2 } } },
        { dataDir },
      );
      expect(kto).toMatchObject({ version: 1, method: 'kto' });
      const rows = readFileSync(join(kto.path, 'rows.jsonl'), 'utf8');
      expect(createHash('sha256').update(rows).digest('hex')).toBe(kto.contentHash);
      const lineage = readFileSync(join(kto.path, 'lineage.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(lineage).toHaveLength(kto.rowCount);
      const splitsByPrompt = new Map<string, Set<string>>();
      for (const l of lineage)
        splitsByPrompt.set(l.promptHash, (splitsByPrompt.get(l.promptHash) ?? new Set()).add(l.split));
      expect([...splitsByPrompt.values()].every((s) => s.size === 1)).toBe(true);
      expect(lineage[0].feedbackIds.length).toBeGreaterThan(0);
      expect(rows).not.toContain('jane@example.com');
      const curation = readFileSync(join(kto.path, 'curation.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(curation).toContainEqual({
        id: 'pii-1',
        subject: 'interaction',
        filter: 'pii',
        action: 'changed',
        reason: 'redacted 2 span(s): email',
      });
      const first = JSON.parse(rows.split('\n')[0]!);
      expect(first).toMatchObject({
        prompt: [{ role: 'user' }],
        completion: [{ role: 'assistant' }],
        label: expect.any(Boolean),
      });

      const again = await buildDatasetVersion(
        store,
        projectId,
        { name: 'support-kto', method: 'kto', options: { split: { by: 'prompt', testFraction: 0.2 } } },
        { dataDir },
      );
      expect(again.version).toBe(2);
      expect(again.contentHash).toBe(kto.contentHash);
      expect(existsSync(kto.path)).toBe(true);

      const dpo = await buildDatasetVersion(
        store,
        projectId,
        { name: 'support-dpo', method: 'dpo' },
        { dataDir },
      );
      const pairs = readFileSync(join(dpo.path, 'rows.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(pairs.some((p) => p.chosen[0].content === 'The corrected answer.')).toBe(true);
      expect((await store.datasets.get(projectId, 'support-kto'))?.version).toBe(2);
      expect((await store.datasets.get(projectId, 'support-kto@1'))?.id).toBe(kto.id);
      const membership = await store.datasets.membershipOf(projectId, 'p1-a0');
      expect(membership.map((m) => m.name)).toContain('support-dpo');
    });

    it('with curation off builds from the texts as read the same files as from parsed messages', async () => {
      // Curation off reads no text: the candidates keep theirs as JSON text and rows are written
      // from it. Prompt grouping reads text (parsed path); at threshold 1 these prompts group
      // only with themselves, so both paths must write the same bytes, pairwise evidence,
      // flagged raters' exclusion and segment balancing included.
      const read = (path: string, file: string) => readFileSync(join(path, file), 'utf8');
      for (const method of ['sft', 'kto', 'dpo', 'reward', 'rwsft'] as const) {
        const spec = {
          method,
          curation: false as const,
          segmentTagPrefix: 'plan:',
          options: { split: { by: 'prompt', testFraction: 0.25, seed: 2 }, maxSegmentShare: 0.6 },
        };
        const text = await buildDatasetVersion(
          store,
          projectId,
          { ...spec, name: `text-${method}` },
          { dataDir },
        );
        const parsed = await buildDatasetVersion(
          store,
          projectId,
          { ...spec, name: `parsed-${method}`, groupSimilarPrompts: 1 },
          { dataDir },
        );
        expect(text.rowCount, method).toBeGreaterThan(5);
        expect(text.contentHash, method).toBe(parsed.contentHash);
        for (const file of ['rows.jsonl', 'lineage.jsonl', 'curation.jsonl'])
          expect(read(text.path, file), `${method} ${file}`).toBe(read(parsed.path, file));
        const { name: _a, spec: _b, ...textManifest } = text.manifest as Record<string, unknown>;
        const { name: _c, spec: _d, ...parsedManifest } = parsed.manifest as Record<string, unknown>;
        expect(textManifest, method).toEqual(parsedManifest);
        expect(await store.datasets.members(projectId, text.id)).toEqual(
          await store.datasets.members(projectId, parsed.id),
        );
      }
    });

    it('refuses bad specs with the field named, writing nothing', async () => {
      const before = (await store.datasets.list(projectId)).length;
      await expect(
        buildDatasetVersion(store, projectId, { name: 'Bad Name', method: 'kto' }, { dataDir }),
      ).rejects.toMatchObject({ path: 'name' });
      await expect(
        buildDatasetVersion(store, projectId, { name: 'x', method: 'ppo' as 'kto' }, { dataDir }),
      ).rejects.toMatchObject({ path: 'method' });
      await expect(
        buildDatasetVersion(
          store,
          projectId,
          { name: 'x', method: 'dpo', options: { minMargin: 9 } },
          { dataDir },
        ),
      ).rejects.toMatchObject({ path: 'options' });
      expect((await store.datasets.list(projectId)).length).toBe(before);
    });
  });
}
