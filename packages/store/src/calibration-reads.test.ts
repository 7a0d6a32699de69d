import { FeedbackInput, InteractionInput, newId, parseInput } from '@ratchet/core';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idFloor } from './calibration.js';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

// More rows than one page of every bulk path (SQLite reads 2,000 ratings and 1,000 rated
// interactions per page, PostgreSQL fetches 1,000 rated interactions from its cursor, and both
// write rewards and members in multi-row statements), so that every row must cross page and
// statement boundaries exactly once.
const INTERACTIONS = 1_234;
const id = (i: number) => `i${String(i).padStart(5, '0')}`;
/** A save's reward columns: every item the same reward. */
const rewardColumns = (ids: string[], reward: number) => ({
  interactionIds: ids,
  n: Int32Array.from(ids, () => 2),
  rawMean: Float64Array.from(ids, () => 0),
  reward: Float64Array.from(ids, () => reward),
  sd: Float64Array.from(ids, () => 0.1),
  lower: Float64Array.from(ids, () => -0.2),
  upper: Float64Array.from(ids, () => 0.2),
});

for (const target of testDatabases()) {
  describe(`bulk calibration and dataset paths on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    /** This project's rows in a table. */
    const rowCount = async (table: 'interaction_rewards' | 'calibration_runs') =>
      Number(
        (
          await store.db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .where('project_id', '=', projectId)
            .executeTakeFirstOrThrow()
        ).n,
      );

    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('bulk')).id;
      const interactions = Array.from({ length: INTERACTIONS }, (_, i) =>
        parseInput(InteractionInput, {
          id: id(i),
          model: `m${i % 3}`,
          route: 'r',
          // Three answers per prompt, side by side: they share one parsed prompt when read.
          messages: [{ role: 'user', content: `question ${Math.floor(i / 3)}` }],
          output: `answer ${i}`,
          tags: i % 2 ? ['odd'] : [],
        }),
      );
      await store.interactions.insert(projectId, interactions);
      const events = interactions.flatMap((_, i) => [
        { kind: 'thumbs', interactionId: id(i), raterId: `r${i % 7}`, value: i % 3 ? 'up' : 'down' },
        { kind: 'stars', interactionId: id(i), raterId: `r${(i + 1) % 7}`, value: 1 + (i % 5) },
        ...(i % 10 === 0
          ? [{ kind: 'criteria', interactionId: id(i), raterId: 'r9', scores: { relevance: 4 } }]
          : []),
      ]);
      for (let k = 0; k < events.length; k += 500)
        await store.feedback.insert(
          projectId,
          events.slice(k, k + 500).map((e) => parseInput(FeedbackInput, e)),
        );
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('reads every current scalar rating once, across pages, with criteria data', async () => {
      const seen = new Map<string, { value: number | null; data: unknown }>();
      for await (const page of store.calibration.currentScalarRatings(projectId))
        for (const r of page) {
          const key = `${r.interactionId}/${r.raterId}/${r.kind}`;
          expect(seen.has(key)).toBe(false);
          seen.set(key, { value: r.value, data: r.data });
          expect(r.feedbackId === null).toBe(r.kind !== 'criteria');
        }
      const criteria = Math.ceil(INTERACTIONS / 10);
      expect(seen.size).toBe(2 * INTERACTIONS + criteria);
      expect(seen.get(`${id(7)}/r1/stars`)?.value).toBe(3);
      expect(seen.get(`${id(10)}/r9/criteria`)?.data).toEqual({ scores: { relevance: 4 } });
    });

    it('saves every reward and reads every rated interaction once with its prompt and feedback', async () => {
      const items = Array.from({ length: INTERACTIONS }, (_, i) => ({
        interactionId: id(i),
        n: 2,
        rawMean: 0,
        reward: i / INTERACTIONS,
        sd: 0.1,
        lower: -0.2,
        upper: 0.2,
      }));
      const run = await store.calibration.save(projectId, {}, {}, [], items);
      const read: string[] = [];
      for await (const page of store.datasets.ratedInteractions(projectId))
        for (const r of page) {
          const i = Number(r.interactionId.slice(1));
          read.push(r.interactionId);
          expect(r.reward).toBeCloseTo(i / INTERACTIONS, 12);
          expect(r.messages).toEqual([{ role: 'user', content: `question ${Math.floor(i / 3)}` }]);
          expect(r.output).toMatchObject({ role: 'assistant', content: `answer ${i}` });
          expect(r.tags).toEqual(i % 2 ? ['odd'] : []);
          // The model that answered: a round may imitate only production's own answers.
          expect(r.model).toBe(`m${i % 3}`);
          expect(r.feedbackIds).toHaveLength(i % 10 === 0 ? 3 : 2);
        }
      expect(read).toEqual(items.map((x) => x.interactionId));

      const version = await store.datasets.insertVersion(
        {
          projectId,
          name: 'bulk',
          version: 1,
          method: 'kto',
          spec: {},
          contentHash: 'x',
          rowCount: INTERACTIONS,
          manifest: {},
          path: '/nowhere',
          calibrationId: run.id,
        },
        items.map((x, k) => ({ interactionId: x.interactionId, split: k % 10 ? 'train' : 'test' })),
      );
      const members = await store.db
        .selectFrom('dataset_interactions')
        .select(['interaction_id', 'split'])
        .where('dataset_id', '=', version.id)
        .orderBy('interaction_id')
        .execute();
      expect(members).toHaveLength(INTERACTIONS);
      expect(members[10]).toEqual({ interaction_id: id(10), split: 'test' });
      expect(members[11]).toEqual({ interaction_id: id(11), split: 'train' });
    });

    it('reads the same rows with the texts as JSON text: JSON.stringify of the parsed messages, whatever the database stored', async () => {
      // Across pages (the bulk project, rated by the test before), and messages whose stored
      // text is not JSON.stringify's: jsonb writes spaces, reorders keys and prints numbers its way.
      const texts = (await (async () => {
        const out = [];
        for await (const page of store.datasets.ratedInteractionTexts(projectId)) out.push(...page);
        return out;
      })()) as Record<string, unknown>[];
      const odd = (await store.projects.create('texts')).id;
      const messages = [
        { role: 'system', content: 'Tabs\tand "quotes", é, 😀, \u2028, </script>\u0001' },
        // An escaped quote, then ': ' and ', ', all inside a string.
        { role: 'assistant', content: 'a quote " : then , spaces  and a backslash \\' },
        { role: 'user', content: [{ type: 'text', text: 'no number here' }], flag: true, none: null },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'part one' },
            { type: 'image_url', image_url: { url: 'data:,x' }, detail: 'low' },
          ],
          zeta: 1e21,
          alpha: [0.1, -2.5e-7, 1.2345678901234567e19, null, true],
          b: { nested: { deeper: 'ünïcödé' } },
        },
      ];
      const plain = [messages[2]!, { role: 'user', content: 'x" : , ' }];
      await store.interactions.insert(odd, [
        parseInput(InteractionInput, {
          id: 'odd-1',
          model: 'm',
          messages,
          output: { role: 'assistant', content: null, tool_calls: [{ id: 't', arguments: '{"a": 1.0}' }] },
        }),
        // No number in it: PostgreSQL's text is read without parsing it (the fast path), up to a
        // last string whose escaped quote, taken for its end, would leave ' : , ' outside it.
        parseInput(InteractionInput, {
          id: 'odd-2',
          model: 'm',
          messages: plain,
          output: 'plain',
        }),
      ]);
      await store.calibration.save(odd, {}, {}, [], rewardColumns(['odd-1', 'odd-2'], 0.5));
      for await (const page of store.datasets.ratedInteractionTexts(odd)) texts.push(...page);
      const parsed: Record<string, unknown>[] = [];
      for (const p of [projectId, odd])
        for await (const page of store.datasets.ratedInteractions(p)) parsed.push(...page);
      expect(texts).toHaveLength(INTERACTIONS + 2);
      expect(texts.map((t) => t.messagesJson)).toEqual(parsed.map((p) => JSON.stringify(p.messages)));
      expect(texts.map((t) => t.outputJson)).toEqual(parsed.map((p) => JSON.stringify(p.output)));
      const rest = ({ messages, output, messagesJson, outputJson, ...r }: Record<string, unknown>) => r;
      expect(texts.map(rest)).toEqual(parsed.map(rest));
      expect(JSON.parse(texts.at(-2)!.messagesJson as string)).toEqual(messages);
      expect(JSON.parse(texts.at(-1)!.messagesJson as string)).toEqual(plain);
    });

    it('a reader that stops early ends its read: more early stops than the pool has connections, then a full read', async () => {
      // PostgreSQL reads through a cursor in a transaction of its own: one left open would hold
      // its pooled connection, and the twelfth stop would wait forever for one.
      for (let k = 0; k < 12; k++)
        for await (const page of store.datasets.ratedInteractions(projectId)) {
          expect(page.length).toBeGreaterThan(0);
          break;
        }
      let read = 0;
      for await (const page of store.datasets.ratedInteractions(projectId)) read += page.length;
      expect(read).toBe(INTERACTIONS);
    });

    it("lists a dataset version's members, of one split or all, across statements", async () => {
      const membership = Array.from({ length: INTERACTIONS }, (_, i) => ({
        interactionId: id(i),
        split: (i % 4 === 0 ? 'test' : 'train') as 'train' | 'test',
      }));
      const version = await store.datasets.insertVersion(
        {
          projectId,
          name: 'members',
          version: 1,
          method: 'reward',
          spec: {},
          contentHash: 'h',
          rowCount: INTERACTIONS,
          manifest: {},
          path: '/nowhere',
          calibrationId: null,
        },
        membership,
      );
      const test = await store.datasets.members(projectId, version.id, 'test');
      expect(test).toEqual(membership.filter((m) => m.split === 'test').map((m) => m.interactionId));
      expect((await store.datasets.members(projectId, version.id, 'train')).length).toBe(
        INTERACTIONS - test.length,
      );
      expect((await store.datasets.members(projectId, version.id)).length).toBe(INTERACTIONS);
      // Another project sees none of them.
      const other = (await store.projects.create('other')).id;
      expect(await store.datasets.members(other, version.id)).toEqual([]);
    });

    it('saves rewards given as columns the same as rows, replacing the last calibration', async () => {
      const ids = Array.from({ length: INTERACTIONS }, (_, i) => id(i));
      const fill = (f: (i: number) => number) => Float64Array.from(ids, (_, i) => f(i));
      await store.calibration.save(projectId, {}, {}, [], {
        interactionIds: ids,
        n: Int32Array.from(ids, () => 3),
        rawMean: fill((i) => -i / INTERACTIONS),
        reward: fill((i) => 1 - i / INTERACTIONS),
        sd: fill(() => 0.2),
        lower: fill(() => -0.5),
        upper: fill(() => 0.5),
      });
      expect(await rowCount('interaction_rewards')).toBe(INTERACTIONS);
      for (const i of [0, 999, 1000, INTERACTIONS - 1]) {
        const r = await store.calibration.rewardOf(projectId, id(i));
        expect(r).toMatchObject({ n: 3, sd: 0.2, lower: -0.5, upper: 0.5 });
        expect(r?.reward).toBeCloseTo(1 - i / INTERACTIONS, 12);
        expect(r?.rawMean).toBeCloseTo(-i / INTERACTIONS, 12);
      }
    });

    it('a full save drops the rewards of items it no longer calibrates; an incremental one keeps the rest', async () => {
      const count = () => rowCount('interaction_rewards');
      const all = Array.from({ length: INTERACTIONS }, (_, i) => id(i));
      const first = await store.calibration.save(projectId, {}, {}, [], rewardColumns(all, 0.1));
      // Every item again but the last 34: their rows go (their ratings would have been deleted).
      const second = await store.calibration.save(
        projectId,
        {},
        {},
        [],
        rewardColumns(all.slice(0, 1200), 0.3),
      );
      expect(await count()).toBe(1200);
      expect(await store.calibration.rewardOf(projectId, id(1200))).toBeUndefined();
      expect((await store.calibration.rewardOf(projectId, id(1199)))?.reward).toBeCloseTo(0.3, 12);
      // Incremental: item 5 is rewritten, the other 1,199 keep the second run's rows.
      await store.calibration.save(projectId, {}, {}, [], rewardColumns(all.slice(0, 1200), 0.7), [5]);
      expect(await count()).toBe(1200);
      expect((await store.calibration.rewardOf(projectId, id(5)))?.reward).toBeCloseTo(0.7, 12);
      expect((await store.calibration.rewardOf(projectId, id(6)))?.reward).toBeCloseTo(0.3, 12);
      expect(first.id).not.toBe(second.id);
    });

    it('an incremental save stores its rewards as changes, read first; a full save folds them in', async () => {
      const rows = async () =>
        Object.fromEntries(
          (
            await store.db
              .selectFrom('interaction_rewards')
              .select(['interaction_id', 'reward'])
              .where('project_id', '=', projectId)
              .execute()
          ).map((r) => [r.interaction_id, r.reward]),
        );
      const changes = async () =>
        (
          await store.db
            .selectFrom('interaction_reward_changes')
            .select(['interaction_id', 'reward'])
            .where('project_id', '=', projectId)
            .orderBy('interaction_id')
            .execute()
        ).map((r) => [r.interaction_id, r.reward]);
      const rewardOf = async (i: number) => (await store.calibration.rewardOf(projectId, id(i)))?.reward;
      const all = Array.from({ length: INTERACTIONS }, (_, i) => id(i));
      await store.calibration.save(projectId, {}, {}, [], rewardColumns(all.slice(0, 1100), 0.1));
      const save = (reward: number, written: number[], hasChange?: (k: number) => boolean) =>
        store.calibration.save(
          projectId,
          {},
          {},
          [],
          rewardColumns(all.slice(0, 1150), reward),
          written,
          undefined,
          hasChange,
        );

      // Items 5 and 1000 moved; 1100 and 1101 are newly rated (no row).
      const one = await save(0.6, [5, 1000, 1100, 1101], () => false);
      // The rows stay as they were, and no row is added: every value is a change.
      const table = await rows();
      expect(Object.keys(table)).toHaveLength(1100);
      expect(table[id(5)]).toBeCloseTo(0.1, 12);
      expect(await changes()).toEqual([
        [id(5), 0.6],
        [id(1000), 0.6],
        [id(1100), 0.6],
        [id(1101), 0.6],
      ]);
      expect(await rewardOf(5)).toBeCloseTo(0.6, 12);
      expect(await rewardOf(6)).toBeCloseTo(0.1, 12);
      expect(await rewardOf(1100)).toBeCloseTo(0.6, 12);
      expect(await store.calibration.rewardOf(projectId, id(1102))).toBeUndefined();
      const read = new Map<string, number>();
      for await (const page of store.calibration.storedRewards(projectId))
        for (const r of page) read.set(r.interactionId, r.reward);
      expect(read.size).toBe(1102);
      expect(read.get(id(1000))).toBeCloseTo(0.6, 12);
      expect(read.get(id(1101))).toBeCloseTo(0.6, 12);
      expect(read.get(id(6))).toBeCloseTo(0.1, 12);
      expect(
        await store.db
          .selectFrom('current_rewards')
          .select('calibration_id')
          .where('project_id', '=', projectId)
          .where('interaction_id', '=', id(5))
          .executeTakeFirstOrThrow(),
      ).toEqual({ calibration_id: one.id });

      // The next incremental run moves items 5 and 1100 again: their changes are replaced.
      await save(0.8, [5, 1100], () => true);
      expect(await changes()).toEqual([
        [id(5), 0.8],
        [id(1000), 0.6],
        [id(1100), 0.8],
        [id(1101), 0.6],
      ]);
      // A record that says there is no change where there is one fails the whole save on the
      // duplicate key: nothing of it is written.
      const runsBefore = await rowCount('calibration_runs');
      await expect(save(0.2, [6, 5], () => false)).rejects.toThrow(/unique|duplicate/i);
      expect(await rowCount('calibration_runs')).toBe(runsBefore);
      expect((await changes()).length).toBe(4);
      // Without the caller's record of what is stored, the items are rewritten in place.
      await save(0.9, [1000, 1101]);
      expect(await changes()).toEqual([
        [id(5), 0.8],
        [id(1100), 0.8],
      ]);
      expect((await rows())[id(1101)]).toBeCloseTo(0.9, 12);
      expect(await rewardOf(1000)).toBeCloseTo(0.9, 12);

      // Deleting an interaction takes its change, with or without a row (interactions of their
      // own: the tests after this one count this project's ratings).
      const extra = ['gone-row', 'gone-new'];
      await store.interactions.insert(
        projectId,
        extra.map((x) =>
          parseInput(InteractionInput, {
            id: x,
            model: 'm',
            messages: [{ role: 'user', content: x }],
            output: x,
          }),
        ),
      );
      const withExtra = rewardColumns([...all.slice(0, 1150), ...extra], 0.5);
      // gone-row gets a row (in place), then a change; gone-new only a change.
      await store.calibration.save(projectId, {}, {}, [], withExtra, [1150]);
      await store.calibration.save(projectId, {}, {}, [], withExtra, [1150, 1151], undefined, () => false);
      expect((await changes()).map(([x]) => x)).toEqual(['gone-new', 'gone-row', id(5), id(1100)]);
      await store.deletion.delete(projectId, { kind: 'interactions', ids: extra }, 'test');
      expect(await changes()).toEqual([
        [id(5), 0.8],
        [id(1100), 0.8],
      ]);
      for (const x of extra) expect(await store.calibration.rewardOf(projectId, x)).toBeUndefined();

      // A full save rewrites every row and leaves no change behind.
      await store.calibration.save(projectId, {}, {}, [], rewardColumns(all.slice(0, 1100), 0.3));
      expect(await changes()).toEqual([]);
      expect(await rewardOf(5)).toBeCloseTo(0.3, 12);
      expect(await store.calibration.rewardOf(projectId, id(1100))).toBeUndefined();
      expect(Object.keys(await rows())).toHaveLength(1100);
    });

    it.runIf(target.name === 'postgres')(
      'rewrites rewards in place with room on each page: an incremental save updates HOT (PostgreSQL)',
      async () => {
        const ids = Array.from({ length: INTERACTIONS }, (_, i) => id(i));
        await store.calibration.save(projectId, {}, {}, [], rewardColumns(ids, 0.2));
        // Pages as a long-lived table has them: compacted, each filled to the table's fillfactor.
        await sql`vacuum full interaction_rewards`.execute(store.db);
        const updates = async () => {
          await sql`select pg_stat_force_next_flush()`.execute(store.db);
          const { rows } = await sql<{
            upd: string;
            hot: string;
          }>`select n_tup_upd as upd, n_tup_hot_upd as hot
            from pg_stat_user_tables where relname = 'interaction_rewards'`.execute(store.db);
          return { all: Number(rows[0]!.upd), hot: Number(rows[0]!.hot) };
        };
        const before = await updates();
        // An incremental run's save: every tenth reward moved.
        const moved = ids.map((_, k) => k).filter((k) => k % 10 === 0);
        await store.calibration.save(projectId, {}, {}, [], rewardColumns(ids, 0.4), moved);
        const after = await updates();
        expect(after.all - before.all).toBe(moved.length);
        // On full pages (fillfactor 100) nearly none is HOT: each update also writes the index.
        expect(after.hot - before.hot).toBeGreaterThanOrEqual(0.9 * moved.length);
        expect((await store.calibration.rewardOf(projectId, id(10)))?.reward).toBeCloseTo(0.4, 12);
        expect((await store.calibration.rewardOf(projectId, id(11)))?.reward).toBeCloseTo(0.2, 12);
      },
    );

    // Last: the ratings it adds would change what the tests above read.
    it('counts the current scalar ratings and reads whole those received since a time, replacements included', async () => {
      const before = await store.calibration.currentScalarRatingCount(projectId);
      expect(before).toBe(2 * INTERACTIONS + Math.ceil(INTERACTIONS / 10));
      const since = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 5));
      await store.feedback.insert(projectId, [
        // A new rating, a replacement of a current one (same interaction, rater and kind) and criteria.
        parseInput(FeedbackInput, { kind: 'stars', interactionId: id(3), raterId: 'r-new', value: 5 }),
        parseInput(FeedbackInput, { kind: 'stars', interactionId: id(7), raterId: 'r1', value: 1 }),
        parseInput(FeedbackInput, {
          kind: 'criteria',
          interactionId: id(5),
          raterId: 'r9',
          scores: { relevance: 2 },
        }),
      ]);
      const received = await store.calibration.ratedSince(projectId, since);
      const byKey = new Map(received.map((r) => [`${r.interactionId}/${r.raterId}/${r.kind}`, r]));
      expect(byKey.size).toBe(3);
      expect(byKey.get(`${id(3)}/r-new/stars`)).toMatchObject({ value: 5, feedbackId: null, data: null });
      expect(byKey.get(`${id(7)}/r1/stars`)?.value).toBe(1);
      expect(byKey.get(`${id(5)}/r9/criteria`)?.data).toEqual({ scores: { relevance: 2 } });
      // The replacement is received but not an extra current rating: counts tell the two apart.
      expect(await store.calibration.currentScalarRatingCount(projectId)).toBe(before + 2);
      const other = (await store.projects.create('count-other')).id;
      expect(await store.calibration.currentScalarRatingCount(other)).toBe(0);
      expect(await store.calibration.ratedSince(other, 0)).toEqual([]);
      // ratedSince bounds its scan by the id floor of `since`: every event's id is at or above
      // the floor of its own receipt, in the database's text order as in JS's.
      const { rows } = await sql<{ id: string; received_at: number | string }>`
        select id, received_at from feedback where project_id = ${projectId}`.execute(store.db);
      expect(rows.length).toBeGreaterThan(2 * INTERACTIONS);
      for (const r of rows) expect(r.id >= idFloor(Number(r.received_at))).toBe(true);
      const floor = idFloor(since);
      const above = rows.filter((r) => r.id >= floor).length;
      const counted = await sql<{ n: number | string }>`
        select count(*) as n from feedback where project_id = ${projectId} and id >= ${floor}`.execute(
        store.db,
      );
      expect(Number(counted.rows[0]!.n)).toBe(above);
      expect(above).toBeGreaterThanOrEqual(3);
      expect(above).toBeLessThan(rows.length);
    });

    it('the id floor of a time sorts below every id made at or after it and above every id made before', () => {
      // Times away from now and each other, in increasing order: newId never makes an id earlier
      // than one it made less than a second before (its counter carries on), so each "before" id is
      // made first.
      for (const t of [1, 1_700_000_000_000, 2 ** 40 + 12_345, Date.now() + 10 * 86_400_000]) {
        const before = newId(t - 1);
        const at = newId(t);
        const after = newId(t + 1);
        const floor = idFloor(t);
        expect(before < floor && floor < at && at < after).toBe(true);
      }
    });
  });
}
