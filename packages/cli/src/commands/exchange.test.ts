import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportExchange, importExchange } from './exchange.js';

const dir = mkdtempSync(join(tmpdir(), 'ratchet-exchange-'));

for (const target of testDatabases()) {
  describe(`import and export on ${target.name}`, () => {
    let store: Store;
    let source: string;

    beforeAll(async () => {
      store = await Store.open(await target.create());
      source = (await store.projects.create('source')).id;
      await store.interactions.insert(source, [
        parseInput(InteractionInput, {
          id: 'a',
          model: 'm',
          route: 'r',
          messages: [{ role: 'user', content: 'q1' }],
          output: 'a1',
          tags: ['x'],
          userId: 'u',
          createdAt: 1000,
        }),
        parseInput(InteractionInput, {
          id: 'b',
          model: 'm',
          messages: [{ role: 'user', content: 'q2' }],
          output: 'a2',
          createdAt: 2000,
        }),
      ]);
      await store.feedback.insert(source, [
        parseInput(FeedbackInput, {
          kind: 'thumbs',
          interactionId: 'a',
          raterId: 'r1',
          value: 'down',
          createdAt: 1,
        }),
        parseInput(FeedbackInput, {
          kind: 'thumbs',
          interactionId: 'a',
          raterId: 'r1',
          value: 'up',
          createdAt: 2,
        }),
        parseInput(FeedbackInput, {
          kind: 'criteria',
          interactionId: 'a',
          raterId: 'r2',
          scores: { accuracy: 4 },
        }),
        parseInput(FeedbackInput, {
          kind: 'preference',
          interactionId: 'a',
          raterId: 'r2',
          other: 'b',
          choice: 'this',
        }),
        parseInput(FeedbackInput, { kind: 'correction', interactionId: 'b', raterId: 'r2', text: 'better' }),
      ]);
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('round-trips interactions and their feedback history into another project, idempotently', async () => {
      const file = join(dir, `${target.name}-export.jsonl`);
      expect(await exportExchange(store, source, file)).toBe(2);
      const dest = (await store.projects.create('dest')).id;
      const first = await importExchange(store, dest, file);
      expect(first).toEqual({ lines: 2, interactionsCreated: 2, feedbackCreated: 5 });
      const again = await importExchange(store, dest, file);
      expect(again).toEqual({ lines: 2, interactionsCreated: 0, feedbackCreated: 0 });

      const strip = (f: {
        id?: string;
        projectId?: string;
        receivedAt?: number;
        idempotencyKey?: string | null;
      }) => {
        const { id: _i, projectId: _p, receivedAt: _r, idempotencyKey: _k, ...rest } = f;
        return rest;
      };
      for (const id of ['a', 'b']) {
        const [orig, copy] = await Promise.all([
          store.interactions.get(source, id),
          store.interactions.get(dest, id),
        ]);
        expect({ ...copy, projectId: 0, receivedAt: 0, source: 0 }).toEqual({
          ...orig,
          projectId: 0,
          receivedAt: 0,
          source: 0,
        });
        const [fo, fc] = await Promise.all([
          store.feedback.listForInteraction(source, id),
          store.feedback.listForInteraction(dest, id),
        ]);
        expect(fc.map(strip)).toEqual(fo.map(strip));
      }
    });

    it('writes nothing from a file with a bad line, naming the line and field', async () => {
      const file = join(dir, `${target.name}-bad.jsonl`);
      const good = {
        id: 'c',
        model: 'm',
        messages: [{ role: 'user', content: 'q' }],
        output: 'x',
        feedback: [{ kind: 'thumbs', value: 'up' }],
      };
      const cases: [string, RegExp][] = [
        [JSON.stringify({ ...good, feedback: [{ kind: 'stars', value: 9 }] }), /:2: .*value/],
        [JSON.stringify({ ...good, model: 7 }), /:2: model/],
        ['{not json', /:2: not valid JSON/],
        [
          JSON.stringify({ ...good, feedback: [{ kind: 'preference', other: 'nowhere', choice: 'this' }] }),
          /nowhere/,
        ],
      ];
      const dest = (await store.projects.create(`bad-${target.name}`)).id;
      for (const [line, message] of cases) {
        writeFileSync(file, `${JSON.stringify(good)}\n${line}\n`);
        await expect(importExchange(store, dest, file)).rejects.toThrow(message);
        expect(await store.interactions.count(dest)).toBe(0);
      }
      // A stars value outside the scale is caught before anything is written, too.
      writeFileSync(
        file,
        `${JSON.stringify({
          ...good,
          feedback: [
            { kind: 'stars', value: 5 },
            { kind: 'stars', value: 6, raterId: 'z' },
          ],
        })}\n`,
      );
      await expect(importExchange(store, dest, file)).rejects.toThrow(/6 is outside/);
      expect(await store.interactions.count(dest)).toBe(0);
      expect(readFileSync(file, 'utf8')).toContain('"value":6');
    });
  });
}
