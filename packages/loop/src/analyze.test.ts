import { FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeProject } from './analyze.js';
import { calibrateProject } from './calibrate.js';

for (const target of testDatabases()) {
  describe(`error analysis on ${target.name}`, () => {
    let store: Store;
    let projectId: string;

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('analysis')).id;
      const interactions = [];
      const feedback = [];
      for (let i = 0; i < 40; i++) {
        const model = i % 2 ? 'model-b' : 'model-a';
        const prompt = i < 20 ? 'How do refunds work?' : `Where is order ${i}?`;
        interactions.push({
          id: `i${i}`,
          model,
          route: 'support',
          messages: [{ role: 'user', content: prompt }],
          output: `answer ${i}`,
          tags: [i % 4 ? 'web' : 'mobile'],
        });
        // model-b is accurate but unhelpful; model-a the reverse: the criteria disagree.
        const accuracy = model === 'model-b' ? 5 : 2;
        const helpfulness = model === 'model-b' ? 2 : 5;
        for (const rater of ['r1', 'r2', 'r3']) {
          feedback.push({
            kind: 'criteria',
            interactionId: `i${i}`,
            raterId: rater,
            scores: { accuracy, helpfulness, relevance: 3 + (i % 3) - 1 },
          });
          feedback.push({
            kind: 'thumbs',
            interactionId: `i${i}`,
            raterId: rater,
            value: i < 20 ? 'down' : 'up',
          });
        }
        if (i < 20)
          feedback.push({
            kind: 'comment',
            interactionId: `i${i}`,
            raterId: 'r1',
            text: i % 2 ? 'The refund policy answer was wrong' : 'Way too long and rambling reply',
          });
        else
          feedback.push({
            kind: 'comment',
            interactionId: `i${i}`,
            raterId: 'r1',
            text: 'Great, thanks a lot',
          });
      }
      await store.interactions.insert(
        projectId,
        interactions.map((x) => parseInput(InteractionInput, x)),
      );
      await store.feedback.insert(
        projectId,
        feedback.map((x) => parseInput(FeedbackInput, x)),
      );
      await calibrateProject(store, projectId);
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('finds themes only in negative comments, the worst prompt, breakdowns and criteria correlations', async () => {
      const report = await analyzeProject(store, projectId, { themes: 2 });
      expect(report.negativeTexts).toBe(20);
      expect(report.themes.map((t) => t.count).sort()).toEqual([10, 10]);
      expect(report.themes.flatMap((t) => t.terms).join(' ')).toMatch(/refund|wrong/);
      expect(report.worstPrompts[0]).toMatchObject({ prompt: 'How do refunds work?', n: 20 });
      expect(report.worstPrompts[0]!.meanReward).toBeLessThan(0);

      const accuracyByModel = Object.fromEntries(
        report.breakdown.model.filter((r) => r.criterion === 'accuracy').map((r) => [r.group, r.meanValue]),
      );
      expect(accuracyByModel).toEqual({ 'model-a': 2, 'model-b': 5 });
      const byTag = report.breakdown.tag.filter((r) => r.criterion === 'accuracy');
      expect(byTag.map((r) => [r.group, r.n])).toEqual([
        ['mobile', 30],
        ['web', 90],
      ]);
      const ah = report.correlations.find((c) => c.a === 'accuracy' && c.b === 'helpfulness')!;
      expect(ah.n).toBe(120);
      expect(ah.r).toBeCloseTo(-1, 9);
      // Raters agree perfectly on accuracy and thumbs here (alpha 1); relevance varies by item only.
      expect(report.agreement.criteria.accuracy?.alpha).toBeCloseTo(1, 9);
      expect(report.agreement.criteria.thumbs?.alpha).toBeCloseTo(1, 9);
      expect(report.agreement.criteria.thumbs?.level).toBe('nominal');
      expect(report.agreement.overall?.units).toBeGreaterThan(100);
    });
  });
}
