import { FeedbackInput, InteractionInput, parseInput, RatchetError } from '@ratchet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

const interaction = (over: Record<string, unknown> = {}) =>
  parseInput(InteractionInput, {
    model: 'tiny-llama',
    route: 'support-bot',
    messages: [{ role: 'user', content: 'How do I reset my password?' }],
    output: 'Click "Forgot password" on the sign-in page.',
    userId: 'user-1',
    tags: ['billing'],
    ...over,
  });
const feedback = (over: Record<string, unknown>) => parseInput(FeedbackInput, over);

for (const target of testDatabases()) {
  describe(`store on ${target.name}`, () => {
    let store: Store;
    let projectId: string;

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('acme')).id;
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('migrates idempotently', async () => {
      await store.migrate();
      expect(await store.projects.getByName('acme')).toMatchObject({ id: projectId });
    });

    it('stores keys hashed and authenticates them by kind; revoked keys stop working', async () => {
      const secret = await store.projects.createKey(projectId, 'secret');
      const pub = await store.projects.createKey(projectId, 'public');
      expect(secret.key).toMatch(/^rk_sec_/);
      const raw = await store.db.selectFrom('api_keys').select('key_hash').execute();
      expect(raw.map((r) => r.key_hash)).not.toContain(secret.key);
      expect(await store.projects.authenticate(secret.key)).toMatchObject({ projectId, kind: 'secret' });
      expect(await store.projects.authenticate(pub.key)).toMatchObject({ projectId, kind: 'public' });
      expect(await store.projects.authenticate(`${secret.key}x`)).toBeUndefined();
      await store.projects.revokeKey(projectId, pub.id);
      expect(await store.projects.authenticate(pub.key)).toBeUndefined();
    });

    it('writes interactions idempotently by client id and reads them back intact', async () => {
      const [first] = await store.interactions.insert(projectId, [
        interaction({
          id: 'i-1',
          parameters: { temperature: 0.2 },
          usage: { inputTokens: 12, outputTokens: 9 },
        }),
      ]);
      expect(first).toEqual({ id: 'i-1', created: true });
      const [again] = await store.interactions.insert(projectId, [
        interaction({ id: 'i-1', model: 'other' }),
      ]);
      expect(again).toEqual({ id: 'i-1', created: false });
      const got = await store.interactions.get(projectId, 'i-1');
      expect(got).toMatchObject({
        model: 'tiny-llama',
        route: 'support-bot',
        output: { role: 'assistant', content: 'Click "Forgot password" on the sign-in page.' },
        parameters: { temperature: 0.2 },
        usage: { inputTokens: 12, outputTokens: 9 },
        tags: ['billing'],
      });
      expect(got?.promptHash).toHaveLength(32);
    });

    it('isolates projects: the same client id lives separately in each', async () => {
      const other = await store.projects.create('globex');
      await store.interactions.insert(other.id, [interaction({ id: 'i-1', model: 'globex-model' })]);
      expect((await store.interactions.get(other.id, 'i-1'))?.model).toBe('globex-model');
      expect((await store.interactions.get(projectId, 'i-1'))?.model).toBe('tiny-llama');
    });

    it('pages through interactions newest first with filters', async () => {
      const base = Date.parse('2026-01-01T00:00:00Z');
      await store.interactions.insert(
        projectId,
        Array.from({ length: 25 }, (_, i) =>
          interaction({
            id: `p-${i}`,
            createdAt: base + i * 1000,
            route: i % 2 ? 'odd' : 'even',
            tags: i % 5 === 0 ? ['five'] : [],
          }),
        ),
      );
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await store.interactions.list(projectId, { route: 'even' }, { limit: 4, cursor });
        seen.push(...page.items.map((i) => i.id));
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      expect(seen).toEqual(Array.from({ length: 13 }, (_, k) => `p-${24 - 2 * k}`));
      const tagged = await store.interactions.list(projectId, { tag: 'five' }, { limit: 100 });
      expect(tagged.items.map((i) => i.id).sort()).toEqual(['p-0', 'p-10', 'p-15', 'p-20', 'p-5']);
      await expect(store.interactions.list(projectId, {}, { cursor: 'garbage' })).rejects.toThrow(
        RatchetError,
      );
    });

    it('keeps feedback history; the latest per (interaction, rater, kind) is current', async () => {
      await store.feedback.insert(projectId, [
        feedback({ kind: 'thumbs', interactionId: 'i-1', raterId: 'r1', value: 'down', createdAt: 1000 }),
        feedback({ kind: 'thumbs', interactionId: 'i-1', raterId: 'r1', value: 'up', createdAt: 2000 }),
        feedback({ kind: 'thumbs', interactionId: 'i-1', raterId: 'r2', value: 'down', createdAt: 1500 }),
      ]);
      // A late-arriving event that happened earlier joins the history without becoming current.
      await store.feedback.insert(projectId, [
        feedback({ kind: 'thumbs', interactionId: 'i-1', raterId: 'r1', value: 'down', createdAt: 500 }),
      ]);
      const history = await store.feedback.listForInteraction(projectId, 'i-1');
      expect(history).toHaveLength(4);
      const current = history.filter((f) => f.current);
      expect(current.map((f) => [f.raterId, f.label]).sort()).toEqual([
        ['r1', 'up'],
        ['r2', 'down'],
      ]);
      const raters = await store.raters.list(projectId);
      expect(raters.find((r) => r.id === 'r1')).toMatchObject({
        feedbackCount: 3,
        firstSeenAt: 500,
        lastSeenAt: 2000,
      });
    });

    it('stores every kind of feedback in one row shape', async () => {
      await store.interactions.insert(projectId, [interaction({ id: 'i-2' }), interaction({ id: 'i-3' })]);
      await store.feedback.insert(projectId, [
        feedback({ kind: 'stars', interactionId: 'i-2', raterId: 'a', value: 4 }),
        feedback({
          kind: 'criteria',
          interactionId: 'i-2',
          raterId: 'a',
          scores: { relevance: 5, accuracy: 2 },
        }),
        feedback({ kind: 'comment', interactionId: 'i-2', raterId: 'a', text: 'too curt' }),
        feedback({ kind: 'correction', interactionId: 'i-2', raterId: 'a', text: 'Better answer.' }),
        feedback({ kind: 'preference', interactionId: 'i-2', raterId: 'a', other: 'i-3', choice: 'other' }),
        feedback({ kind: 'preference', interactionId: 'i-3', raterId: 'b', ranking: ['i-3', 'i-2'] }),
        feedback({ kind: 'implicit', interactionId: 'i-2', signal: 'copied', source: 'implicit' }),
      ]);
      const rows = await store.feedback.listForInteraction(projectId, 'i-2');
      const byKind = Object.fromEntries(rows.map((r) => [r.kind, r]));
      expect(byKind.stars).toMatchObject({ value: 4, label: 'stars' });
      expect(byKind.criteria?.data).toEqual({ scores: { relevance: 5, accuracy: 2 } });
      expect(byKind.comment?.text).toBe('too curt');
      expect(byKind.correction?.text).toBe('Better answer.');
      expect(byKind.preference).toMatchObject({ label: 'other', data: { other: 'i-3' } });
      expect(byKind.implicit).toMatchObject({ label: 'copied', raterId: 'anonymous:implicit' });
      // The end user of the interaction is the default rater for user feedback.
      await store.feedback.insert(projectId, [
        feedback({ kind: 'thumbs', interactionId: 'i-3', value: 'up' }),
      ]);
      expect(
        (await store.feedback.listForInteraction(projectId, 'i-3')).find((f) => f.kind === 'thumbs')?.raterId,
      ).toBe('user-1');
    });

    it('makes idempotency keys return the first event, inside a batch and across batches', async () => {
      const [a, b] = await store.feedback.insert(projectId, [
        feedback({ kind: 'thumbs', interactionId: 'i-2', raterId: 'k', value: 'up', idempotencyKey: 'k-1' }),
        feedback({
          kind: 'thumbs',
          interactionId: 'i-2',
          raterId: 'k',
          value: 'down',
          idempotencyKey: 'k-1',
        }),
      ]);
      expect(a?.created).toBe(true);
      expect(b).toEqual({ id: a?.id, created: false });
      const [c] = await store.feedback.insert(projectId, [
        feedback({
          kind: 'thumbs',
          interactionId: 'i-2',
          raterId: 'k',
          value: 'down',
          idempotencyKey: 'k-1',
        }),
      ]);
      expect(c).toEqual({ id: a?.id, created: false });
      const thumbs = (await store.feedback.listForInteraction(projectId, 'i-2')).filter(
        (f) => f.raterId === 'k',
      );
      expect(thumbs.map((f) => f.label)).toEqual(['up']);
    });

    it('rejects a batch whole when one item is wrong, naming the item', async () => {
      const before = await store.feedback.count(projectId);
      const cases: [Record<string, unknown>[], string, string][] = [
        [
          [
            { kind: 'thumbs', interactionId: 'i-2', value: 'up' },
            { kind: 'thumbs', interactionId: 'nope', value: 'up' },
          ],
          'not_found',
          'items.1.interactionId',
        ],
        [[{ kind: 'stars', interactionId: 'i-2', value: 6 }], 'invalid_request', 'items.0.value'],
        [
          [{ kind: 'stars', interactionId: 'i-2', value: 3, scale: 'nps' }],
          'invalid_request',
          'items.0.scale',
        ],
        [
          [{ kind: 'criteria', interactionId: 'i-2', scores: { charm: 3 } }],
          'invalid_request',
          'items.0.scores.charm',
        ],
        [
          [{ kind: 'preference', interactionId: 'i-2', other: 'missing', choice: 'this' }],
          'not_found',
          'items.0.other',
        ],
      ];
      for (const [items, code, path] of cases) {
        const err = await store.feedback.insert(projectId, items.map(feedback)).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(RatchetError);
        expect(err).toMatchObject({ code, path });
      }
      expect(await store.feedback.count(projectId)).toBe(before);
    });

    it('accepts configured scales: a 0..10 star scale and a categorical criterion', async () => {
      await store.scoreConfigs.upsert(projectId, { name: 'nps', usage: 'stars', min: 0, max: 10 });
      await store.scoreConfigs.upsert(projectId, {
        name: 'tone',
        usage: 'criterion',
        dataType: 'categorical',
        categories: ['rude', 'neutral', 'kind'],
      });
      await store.feedback.insert(projectId, [
        feedback({ kind: 'stars', interactionId: 'i-3', raterId: 'n', value: 9, scale: 'nps' }),
        feedback({ kind: 'criteria', interactionId: 'i-3', raterId: 'n', scores: { tone: 'kind' } }),
      ]);
      const err = await store.feedback
        .insert(projectId, [feedback({ kind: 'criteria', interactionId: 'i-3', scores: { tone: 'meh' } })])
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ path: 'items.0.scores.tone' });
      const configs = await store.scoreConfigs.list(projectId);
      expect(configs.find((c) => c.name === 'tone')?.categories).toEqual(['rude', 'neutral', 'kind']);
    });

    it('filters interactions by whether they have feedback', async () => {
      const rated = await store.interactions.list(projectId, { hasFeedback: true }, { limit: 1000 });
      const unrated = await store.interactions.list(projectId, { hasFeedback: false }, { limit: 1000 });
      expect(rated.items.map((i) => i.id).sort()).toEqual(['i-1', 'i-2', 'i-3']);
      expect(unrated.items.length + rated.items.length).toBe(await store.interactions.count(projectId));
    });
  });
}
