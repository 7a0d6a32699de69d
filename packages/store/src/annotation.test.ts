import { FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

const thumbs = (interactionId: string, raterId: string, value: 'up' | 'down') =>
  parseInput(FeedbackInput, { kind: 'thumbs', interactionId, raterId, source: 'annotator', value });

for (const target of testDatabases()) {
  describe(`the annotation team's assignments and locks on ${target.name}`, () => {
    let store: Store;
    let other: Store;
    let projectId: string;
    const t = 5_000_000;
    const twoEach = () => ({ overlap: 2, lockMs: 60_000 });
    beforeAll(async () => {
      const url = await target.create();
      store = await Store.open(url);
      // A second connection stands for a second server: its claims race the first's. On SQLite
      // the servers are processes; two connections in one process would block each other's
      // transactions on the one event loop, so there the claims race on one connection.
      other = store.dialect === 'postgres' ? await Store.open(url) : store;
      projectId = (await store.projects.create('annotation')).id;
      await store.interactions.insert(
        projectId,
        ['x', 'y', 'z', 'w', 's'].map((id, i) =>
          parseInput(InteractionInput, {
            id,
            model: 'm',
            route: 'support',
            messages: [{ role: 'user', content: `question ${id}` }],
            output: `answer ${id}`,
            createdAt: 1_000 + i,
          }),
        ),
      );
    });
    afterAll(async () => {
      if (other !== store) await other?.close();
      await store?.close();
      await target.cleanup();
    });
    const feedbackCount = async () => store.feedback.count(projectId);

    it('gives an item with overlap 2 to both annotators, never both at once, and to no third', async () => {
      // Both ask at once, on two connections: exactly one gets the lock.
      const [a, b] = await Promise.all([
        store.annotation.claim(projectId, 'ann', ['x'], twoEach, t),
        other.annotation.claim(projectId, 'bob', ['x'], twoEach, t),
      ]);
      expect([a, b].filter((c) => c !== null)).toHaveLength(1);
      const [first, second] = a ? ['ann', 'bob'] : ['bob', 'ann'];
      // While it is locked the other annotator cannot have it, however often they ask.
      expect(await other.annotation.claim(projectId, second, ['x'], twoEach, t + 10)).toBeNull();
      await store.annotation.submit(projectId, first, 'x', [thumbs('x', first, 'up')], 2, t + 20);
      // Submitted once, overlap 2: the other annotator gets it now, and it is offered to them first.
      expect(await store.annotation.openItems(projectId, second, { limit: 10 }, t + 30)).toEqual(['x']);
      expect(await store.annotation.openItems(projectId, first, { limit: 10 }, t + 30)).toEqual([]);
      expect(await store.annotation.claim(projectId, first, ['x'], twoEach, t + 30)).toBeNull();
      const again = await other.annotation.claim(projectId, second, ['x'], twoEach, t + 30);
      expect(again).toMatchObject({ interactionId: 'x', submitted: 1, resumed: false });
      await other.annotation.submit(projectId, second, 'x', [thumbs('x', second, 'down')], 2, t + 40);
      // Overlap reached: no one else is given it.
      expect(await store.annotation.claim(projectId, 'cy', ['x'], twoEach, t + 50)).toBeNull();
      expect(await store.annotation.openItems(projectId, 'cy', { limit: 10 }, t + 50)).toEqual([]);
      // Each annotator's rating carries their identity as its rater.
      const rated = await store.feedback.listForInteraction(projectId, 'x');
      expect(rated.map((f) => [f.raterId, f.source]).sort()).toEqual([
        ['ann', 'annotator'],
        ['bob', 'annotator'],
      ]);
    });

    it('never gives two annotators asking at once the same item, over many races', async () => {
      const ids = Array.from({ length: 12 }, (_, i) => `race-${i}`);
      await store.interactions.insert(
        projectId,
        ids.map((id) =>
          parseInput(InteractionInput, {
            id,
            model: 'm',
            messages: [{ role: 'user', content: id }],
            output: id,
          }),
        ),
      );
      // Six pairs of annotators, each pair racing on the same candidates from two connections.
      for (let round = 0; round < 6; round++) {
        const [a, b] = await Promise.all([
          store.annotation.claim(projectId, `racer-a${round}`, ids, twoEach, t),
          other.annotation.claim(projectId, `racer-b${round}`, ids, twoEach, t),
        ]);
        expect(a).not.toBeNull();
        expect(b).not.toBeNull();
        expect(a!.interactionId).not.toBe(b!.interactionId);
      }
      const holders = await store.db
        .selectFrom('annotation_locks')
        .select(['interaction_id', 'annotator_id'])
        .where('project_id', '=', projectId)
        .where('interaction_id', 'like', 'race-%')
        .execute();
      // Twelve claims, twelve different items: one holder per item.
      expect(new Set(holders.map((h) => h.interaction_id)).size).toBe(12);
      for (const h of holders) await store.annotation.release(projectId, h.annotator_id, h.interaction_id);
    });

    it('lets a lock expire: the item goes to the next annotator and the late submit writes nothing', async () => {
      const short = () => ({ overlap: 2, lockMs: 1_000 });
      expect(await store.annotation.claim(projectId, 'ann', ['y'], short, t)).toMatchObject({
        interactionId: 'y',
        expiresAt: t + 1_000,
      });
      expect(await other.annotation.claim(projectId, 'bob', ['y'], short, t + 999)).toBeNull();
      expect(await other.annotation.claim(projectId, 'bob', ['y'], short, t + 1_000)).toMatchObject({
        interactionId: 'y',
        submitted: 0,
      });
      const before = await feedbackCount();
      await expect(
        store.annotation.submit(projectId, 'ann', 'y', [thumbs('y', 'ann', 'up')], 2, t + 1_100),
      ).rejects.toMatchObject({ code: 'conflict', path: 'interactionId' });
      expect(await feedbackCount()).toBe(before);
      // The holder's own submit goes through.
      await other.annotation.submit(projectId, 'bob', 'y', [thumbs('y', 'bob', 'up')], 2, t + 1_200);
      expect(await feedbackCount()).toBe(before + 1);
    });

    it('hands an annotator the item they hold until they finish it, and skips what they skipped', async () => {
      const first = await store.annotation.claim(projectId, 'dee', ['z', 'w'], twoEach, t);
      expect(first).toMatchObject({ interactionId: 'z', resumed: false });
      expect(await store.annotation.claim(projectId, 'dee', ['w'], twoEach, t + 5)).toMatchObject({
        interactionId: 'z',
        resumed: true,
        expiresAt: t + 5 + 60_000,
      });
      await store.annotation.skip(projectId, 'dee', 'z', 2, t + 10);
      // Skipped: not theirs again, and it does not count towards the overlap for others.
      expect(await store.annotation.claim(projectId, 'dee', ['z', 'w'], twoEach, t + 20)).toMatchObject({
        interactionId: 'w',
      });
      expect(await store.annotation.release(projectId, 'dee', 'w')).toBe(true);
      expect(await store.annotation.claim(projectId, 'eve', ['z'], twoEach, t + 30)).toMatchObject({
        interactionId: 'z',
        submitted: 0,
      });
      await store.annotation.release(projectId, 'eve', 'z');
    });

    it('refuses a submit from someone who never claimed the item, writing nothing', async () => {
      const before = await feedbackCount();
      await expect(
        store.annotation.submit(projectId, 'mallory', 's', [thumbs('s', 'mallory', 'up')], 2, t),
      ).rejects.toMatchObject({ code: 'conflict' });
      expect(await feedbackCount()).toBe(before);
      expect((await store.annotation.progress(projectId, t)).map((p) => p.annotatorId)).not.toContain(
        'mallory',
      );
    });

    it('counts progress per annotator and lists disagreements for adjudication, audited', async () => {
      const progress = await store.annotation.progress(projectId, t);
      expect(progress.find((p) => p.annotatorId === 'ann')).toEqual({
        annotatorId: 'ann',
        submitted: 1,
        skipped: 0,
        holding: null,
      });
      expect(progress.find((p) => p.annotatorId === 'dee')).toMatchObject({ submitted: 0, skipped: 1 });
      // x: ann and bob split; y has one submitted rating, nothing to compare.
      const split = await store.annotation.disagreements(projectId);
      expect(split).toEqual([
        {
          interactionId: 'x',
          kind: 'thumbs',
          ratings: expect.arrayContaining([
            { annotatorId: 'ann', value: expect.any(String) },
            { annotatorId: 'bob', value: expect.any(String) },
          ]),
          adjudication: null,
        },
      ]);
      await expect(
        store.annotation.adjudicate(projectId, { interactionId: 'y', kind: 'thumbs', value: 'up' }, 'owner'),
      ).rejects.toMatchObject({ code: 'conflict' });
      await store.annotation.adjudicate(
        projectId,
        { interactionId: 'x', kind: 'thumbs', value: 'down', note: 'policy says so' },
        'owner',
        t + 100,
      );
      const [decided] = await store.annotation.disagreements(projectId);
      expect(decided?.adjudication).toEqual({
        interactionId: 'x',
        kind: 'thumbs',
        value: 'down',
        note: 'policy says so',
        decidedBy: 'owner',
        decidedAt: t + 100,
      });
      const audit = await store.audit.list(projectId, { action: 'annotation.adjudicated' });
      expect(audit).toHaveLength(1);
      expect(audit[0]).toMatchObject({ actor: 'owner', subjectId: 'x', details: { value: 'down' } });
    });

    it("gives each item its own route's overlap, whatever the claim asked for", async () => {
      await store.interactions.insert(projectId, [
        parseInput(InteractionInput, {
          id: 'solo-1',
          model: 'm',
          route: 'solo',
          messages: [{ role: 'user', content: 'one rater is enough here' }],
          output: 'fine',
        }),
      ]);
      const byRoute = (route: string | null) => ({ overlap: route === 'solo' ? 1 : 2, lockMs: 60_000 });
      expect(await store.annotation.claim(projectId, 'fay', ['solo-1', 's'], byRoute, t)).toMatchObject({
        interactionId: 'solo-1',
        overlap: 1,
      });
      await store.annotation.submit(projectId, 'fay', 'solo-1', [thumbs('solo-1', 'fay', 'up')], 1, t + 1);
      expect(await store.annotation.openItems(projectId, 'gus', { limit: 10 }, t + 2)).not.toContain(
        'solo-1',
      );
      expect(await store.annotation.claim(projectId, 'gus', ['solo-1', 's'], byRoute, t + 2)).toMatchObject({
        interactionId: 's',
        overlap: 2,
      });
      await store.annotation.release(projectId, 'gus', 's');
    });

    it("deletes an interaction's locks, assignments and adjudication with it", async () => {
      const deleted = await store.deletion.delete(projectId, { kind: 'interactions', ids: ['x'] }, 'owner');
      // ann's and bob's submissions and the adjudication.
      expect(deleted.counts.annotations).toBe(3);
      expect(await store.annotation.disagreements(projectId)).toEqual([]);
      expect(await store.annotation.openItems(projectId, 'cy', { limit: 10 }, t)).not.toContain('x');
    });
  });
}
