import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SignedPerson, startTestServer, type TestServer } from '../testing/server.js';

for (const target of testDatabases()) {
  describe(`the annotation team's queue over HTTP on ${target.name}`, () => {
    let t: TestServer;
    // Each annotator is a key of their own until people have accounts.
    const keys: Record<'ann' | 'bob' | 'cy', { key: string; id: string }> = {} as never;
    const who = (name: keyof typeof keys) => `api:${keys[name].id}`;
    const claim = (name: keyof typeof keys) =>
      t.call('/api/v1/annotation/claim', { key: keys[name].key, body: { route: 'support' } });
    const submit = (name: keyof typeof keys, interactionId: string, value: 'up' | 'down') =>
      t.call('/api/v1/annotation/submit', {
        key: keys[name].key,
        body: { interactionId, items: [{ kind: 'thumbs', value }] },
      });

    beforeAll(async () => {
      t = await startTestServer(await target.create(), {
        queueTerms: { support: { overlap: 2, lockMinutes: 10 } },
      });
      for (const name of ['ann', 'bob', 'cy'] as const) {
        const k = await t.store.projects.createKey(t.projectId, ['admin', 'read'], name);
        keys[name] = { key: k.key, id: k.id };
      }
      const items = ['q1', 'q2', 'q3', 'q4'].map((id) => ({
        id,
        model: 'tiny',
        route: 'support',
        messages: [{ role: 'user', content: `question ${id}` }],
        output: `answer ${id}`,
      }));
      expect((await t.call('/api/v1/interactions', { body: { items } })).status).toBe(201);
    });
    afterAll(async () => {
      await t?.close();
      await target.cleanup();
    });

    it('gives two annotators with overlap 2 the same items, never at the same time, and their agreement per person', async () => {
      const a1 = await claim('ann');
      expect(a1.status).toBe(200);
      expect(a1.body).toMatchObject({ annotator: who('ann'), item: { submitted: 0, overlap: 2 } });
      const first = a1.body.item.interactionId as string;
      // Locked to ann: bob gets another item.
      const b1 = await claim('bob');
      const second = b1.body.item.interactionId as string;
      expect(second).not.toBe(first);
      expect((await submit('ann', first, 'up')).status).toBe(200);
      expect((await submit('bob', second, 'up')).status).toBe(200);
      // Each is offered the item the other started, before anything new.
      const a2 = await claim('ann');
      const b2 = await claim('bob');
      expect(a2.body.item).toMatchObject({ interactionId: second, submitted: 1 });
      expect(b2.body.item).toMatchObject({ interactionId: first, submitted: 1 });
      expect((await submit('ann', second, 'up')).status).toBe(200);
      expect((await submit('bob', first, 'down')).status).toBe(200);
      // Both items have their two annotators: a third is given neither.
      const c1 = await claim('cy');
      expect([first, second]).not.toContain(c1.body.item.interactionId);
      await t.call('/api/v1/annotation/release', {
        key: keys.cy.key,
        body: { interactionId: c1.body.item.interactionId },
      });

      // Their ratings carry their identities as raters.
      const feedback = await t.store.feedback.listForInteraction(t.projectId, first);
      expect(feedback.map((f) => [f.raterId, f.source, f.label]).sort()).toEqual(
        [
          [who('ann'), 'annotator', 'up'],
          [who('bob'), 'annotator', 'down'],
        ].sort(),
      );

      // Each person is one rater, as calibration sees them.
      const raters = (await t.call('/api/v1/raters')).body.items as { id: string; source: string }[];
      for (const name of ['ann', 'bob'] as const)
        expect(raters.find((r) => r.id === who(name))).toMatchObject({
          source: 'annotator',
          feedbackCount: 2,
        });

      const progress = await t.call('/api/v1/annotation/progress');
      expect(progress.status).toBe(200);
      const person = (name: keyof typeof keys) =>
        progress.body.annotators.find((p: { annotatorId: string }) => p.annotatorId === who(name));
      // Agreed on one of their two shared items: one half each, per person.
      expect(person('ann')).toMatchObject({
        submitted: 2,
        skipped: 0,
        agreement: { thumbs: { units: 2, sharedUnits: 2, agreement: 0.5 } },
      });
      expect(person('bob')).toMatchObject({ submitted: 2, agreement: { thumbs: { agreement: 0.5 } } });
      expect(progress.body.agreement.thumbs.pairs).toEqual([
        expect.objectContaining({ n: 2, agreement: 0.5 }),
      ]);
    });

    it('sends the disagreement to adjudication, where the final label is recorded and audited', async () => {
      const open = await t.call('/api/v1/annotation/disagreements?open=true');
      expect(open.status).toBe(200);
      expect(open.body.items).toHaveLength(1);
      const [split] = open.body.items;
      expect(split.kind).toBe('thumbs');
      expect(split.ratings.map((r: { value: string }) => r.value).sort()).toEqual(['down', 'up']);
      const decided = await t.call('/api/v1/annotation/adjudications', {
        body: { interactionId: split.interactionId, kind: 'thumbs', value: 'up', annotator: 'lead' },
      });
      expect(decided.status).toBe(200);
      expect(decided.body).toMatchObject({ value: 'up', decidedBy: 'lead' });
      expect((await t.call('/api/v1/annotation/disagreements?open=true')).body.items).toEqual([]);
      const all = await t.call('/api/v1/annotation/disagreements');
      expect(all.body.items[0].adjudication).toMatchObject({ value: 'up', decidedBy: 'lead' });
      const audit = await t.store.audit.list(t.projectId, { action: 'annotation.adjudicated' });
      expect(audit).toEqual([expect.objectContaining({ actor: 'lead', subjectId: split.interactionId })]);
      // An item they agree on has nothing to adjudicate.
      const agreed = ['q1', 'q2', 'q3', 'q4'].find((id) => id !== split.interactionId);
      const refused = await t.call('/api/v1/annotation/adjudications', {
        body: { interactionId: agreed, kind: 'thumbs', value: 'down' },
      });
      expect(refused.status).toBe(409);
    });

    it('refuses a submit on an item the annotator does not hold, writing nothing', async () => {
      const before = await t.store.feedback.count(t.projectId);
      const res = await submit('cy', 'q4', 'up');
      expect(res.status).toBe(409);
      expect(res.body.error.path).toBe('interactionId');
      expect(await t.store.feedback.count(t.projectId)).toBe(before);
    });

    it('keeps the lock and writes nothing when a held item gets a rating off its scale', async () => {
      const held = await claim('cy');
      const id = held.body.item.interactionId as string;
      const before = await t.store.feedback.count(t.projectId);
      const res = await t.call('/api/v1/annotation/submit', {
        key: keys.cy.key,
        body: {
          interactionId: id,
          items: [
            { kind: 'thumbs', value: 'up' },
            { kind: 'stars', value: 99 },
          ],
        },
      });
      expect(res.status).toBe(400);
      expect(res.body.error.path).toBe('items.1.value');
      expect(await t.store.feedback.count(t.projectId)).toBe(before);
      const progress = await t.call('/api/v1/annotation/progress');
      expect(
        progress.body.annotators.find((p: { annotatorId: string }) => p.annotatorId === who('cy')),
      ).toMatchObject({ holding: id, submitted: 0 });
      expect((await submit('cy', id, 'up')).status).toBe(200);
    });

    it('lets an admin key name the annotator; a key without the queue scope is refused', async () => {
      const named = await t.call('/api/v1/annotation/claim', {
        body: { route: 'support', annotator: 'dana' },
      });
      expect(named.status).toBe(200);
      expect(named.body.annotator).toBe('dana');
      const skipped = await t.call('/api/v1/annotation/skip', {
        body: { interactionId: named.body.item.interactionId, annotator: 'dana' },
      });
      expect(skipped.status).toBe(200);
      const reader = await t.store.projects.createKey(t.projectId, ['read']);
      const refused = await t.call('/api/v1/annotation/claim', { key: reader.key, body: {} });
      expect(refused.status).toBe(403);
      const progress = await t.call('/api/v1/annotation/progress', { key: reader.key });
      expect(
        progress.body.annotators.find((p: { annotatorId: string }) => p.annotatorId === 'dana'),
      ).toMatchObject({ skipped: 1, submitted: 0 });
    });
  });
}

for (const target of testDatabases()) {
  describe(`signed-in annotators work the queue as themselves on ${target.name}`, () => {
    let t: TestServer;
    const people: Record<string, SignedPerson> = {};
    const as = (name: string, path: string, body?: unknown) =>
      t.call(path, {
        key: null,
        ...(body === undefined ? {} : { body }),
        headers: { cookie: `ratchet_session=${people[name]!.cookie}`, 'x-ratchet-csrf': people[name]!.csrf },
      });

    beforeAll(async () => {
      t = await startTestServer(await target.create(), {
        config: { cookieSecure: true },
        queueTerms: { support: { overlap: 2, lockMinutes: 10 } },
      });
      for (const [name, role] of [
        ['ann', 'annotator'],
        ['bob', 'annotator'],
        ['val', 'viewer'],
      ] as const) {
        people[name] = await t.addPerson(`${name}@example.com`, role);
      }
      const logged = await t.call('/api/v1/interactions', {
        body: {
          id: 'p1',
          model: 'tiny',
          route: 'support',
          messages: [{ role: 'user', content: 'q' }],
          output: 'a',
        },
      });
      expect(logged.status).toBe(201);
    });
    afterAll(async () => {
      await t?.close();
      await target.cleanup();
    });

    it('gives both annotators the item in turn; their ratings and agreement are per person; a viewer cannot claim', async () => {
      const first = await as('ann', '/api/v1/annotation/claim', { route: 'support' });
      expect(first.status).toBe(200);
      expect(first.body).toMatchObject({ annotator: people.ann!.raterId, item: { interactionId: 'p1' } });
      expect((await as('bob', '/api/v1/annotation/claim', { route: 'support' })).body.item).toBeNull();
      // A person cannot annotate as someone else.
      const posing = await as('bob', '/api/v1/annotation/claim', { route: 'support', annotator: 'ann' });
      expect(posing.status).toBe(403);
      expect(posing.body.error.path).toBe('annotator');
      const items = [{ kind: 'thumbs', value: 'up' }];
      expect((await as('ann', '/api/v1/annotation/submit', { interactionId: 'p1', items })).status).toBe(200);
      expect((await as('bob', '/api/v1/annotation/claim', { route: 'support' })).body.item).toMatchObject({
        interactionId: 'p1',
        submitted: 1,
      });
      expect((await as('bob', '/api/v1/annotation/submit', { interactionId: 'p1', items })).status).toBe(200);
      const raters = (await t.store.feedback.listForInteraction(t.projectId, 'p1'))
        .map((f) => f.raterId)
        .sort();
      expect(raters).toEqual([people.ann!.raterId, people.bob!.raterId].sort());
      const progress = await as('val', '/api/v1/annotation/progress');
      expect(progress.status).toBe(200);
      expect(progress.body.agreement.thumbs.pairs).toEqual([expect.objectContaining({ n: 1, agreement: 1 })]);
      expect(progress.body.annotators.map((a: { annotatorId: string }) => a.annotatorId).sort()).toEqual(
        [people.ann!.raterId, people.bob!.raterId].sort(),
      );
      expect((await as('val', '/api/v1/annotation/claim', { route: 'support' })).status).toBe(403);
    });
  });
}
