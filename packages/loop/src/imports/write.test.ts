import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importFile } from './files.js';

const dir = mkdtempSync(join(tmpdir(), 'ratchet-imports-'));
const write = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

const trl = write(
  'prefs.jsonl',
  [
    { prompt: 'Capital of France?', chosen: 'Paris.', rejected: 'Lyon.' },
    {
      prompt: [{ role: 'user', content: 'Hi' }],
      completion: [{ role: 'assistant', content: 'Hello!' }],
      label: true,
    },
    {
      messages: [
        { role: 'user', content: 'Bye' },
        { role: 'assistant', content: 'Bye!' },
      ],
    },
  ]
    .map((r) => JSON.stringify(r))
    .join('\n'),
);

const ratings = write(
  'ratings.csv',
  'prompt,response,model,rater_id,thumbs,stars,relevance,comment\n' +
    'q1,a1,m,r1,up,5,4,"good, ""very"""\n' +
    'q1,a1,m,r2,down,2,,\n' +
    'q2,"two\nlines",m,r1,,3,,\n',
);

for (const target of testDatabases()) {
  describe(`imports into the store on ${target.name}`, () => {
    let store: Store;

    beforeAll(async () => {
      store = await Store.open(await target.create());
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    const counts = async (projectId: string) => ({
      interactions: await store.interactions.count(projectId),
      feedback: await store.feedback.count(projectId),
    });

    it('imports TRL JSONL once: a second import writes nothing', async () => {
      const project = (await store.projects.create('trl')).id;
      const first = await importFile(store, project, trl, { format: 'trl', model: 'base' });
      expect(first).toMatchObject({
        interactions: 4,
        interactionsCreated: 4,
        feedback: 2,
        feedbackCreated: 2,
      });
      const again = await importFile(store, project, trl, { format: 'trl', model: 'base' });
      expect(again).toMatchObject({ interactionsCreated: 0, feedbackCreated: 0 });
      expect(await counts(project)).toEqual({ interactions: 4, feedback: 2 });
      const prefs = await store.feedback.currentOfKinds(project, ['preference']);
      expect(prefs).toEqual([
        expect.objectContaining({ source: 'annotator', raterId: 'import:trl', label: 'this' }),
      ]);
    });

    it('imports CSV ratings idempotently, with criteria on the project scales', async () => {
      const project = (await store.projects.create('csv')).id;
      const first = await importFile(store, project, ratings, { format: 'csv' });
      expect(first).toMatchObject({ interactionsCreated: 2, feedbackCreated: 7 });
      expect((await importFile(store, project, ratings, { format: 'csv' })).feedbackCreated).toBe(0);
      const [q1] = (await store.interactions.list(project, {}, { limit: 10 })).items.filter(
        (i) => i.messages[0]?.content === 'q1',
      );
      const events = await store.feedback.listForInteraction(project, q1!.id);
      expect(events.map((e) => [e.raterId, e.kind, e.value ?? e.text ?? e.data])).toEqual(
        expect.arrayContaining([
          ['r1', 'thumbs', 1],
          ['r1', 'stars', 5],
          ['r1', 'criteria', { scores: { relevance: 4 } }],
          ['r1', 'comment', 'good, "very"'],
          ['r2', 'thumbs', -1],
          ['r2', 'stars', 2],
        ]),
      );
    });

    it('writes nothing when a rating is off the project scale, naming the line and column', async () => {
      const project = (await store.projects.create('bad-scale')).id;
      const path = write('bad.csv', 'prompt,response,stars\nq,a,4\nq,b,7\n');
      await expect(importFile(store, project, path, { format: 'csv' })).rejects.toThrow(
        'bad.csv:3: column "stars".value: 7 is outside the "stars" scale 1..5',
      );
      expect(await counts(project)).toEqual({ interactions: 0, feedback: 0 });
    });

    it('writes nothing when a row rates an interaction that is neither in the file nor in the project', async () => {
      const project = (await store.projects.create('missing')).id;
      const path = write('ids.csv', 'prompt,response,thumbs,interaction_id\nq,a,up,x1\n,,down,x2\n');
      await expect(importFile(store, project, path, { format: 'csv' })).rejects.toThrow(
        'ids.csv:3: column "thumbs": interaction "x2" is neither in the file nor in the project',
      );
      expect(await counts(project)).toEqual({ interactions: 0, feedback: 0 });
    });

    it('writes nothing when an annotation scores a criterion the project does not have', async () => {
      const project = (await store.projects.create('ls-unknown')).id;
      await importFile(store, project, trl, { format: 'trl', model: 'base' });
      const [interaction] = (await store.interactions.list(project, {}, { limit: 1 })).items;
      const path = write(
        'vibes.json',
        JSON.stringify([
          {
            id: 1,
            data: { ratchet_interaction_id: interaction!.id },
            annotations: [
              {
                id: 9,
                completed_by: 2,
                result: [
                  { from_name: 'stars', to_name: 'answer', type: 'rating', value: { rating: 2 } },
                  { from_name: 'criterion_vibes', to_name: 'answer', type: 'rating', value: { rating: 1 } },
                ],
              },
            ],
          },
        ]),
      );
      await expect(importFile(store, project, path, { format: 'labelstudio' })).rejects.toThrow(
        'vibes.json:1: tasks.0: annotations.0: criteria.scores.vibes: unknown criterion "vibes"',
      );
      expect((await counts(project)).feedback).toBe(2);
    });

    it('imports a Label Studio export onto the interactions it names', async () => {
      const project = (await store.projects.create('ls')).id;
      await importFile(store, project, trl, { format: 'trl', model: 'base' });
      const [interaction] = (await store.interactions.list(project, {}, { limit: 1 })).items;
      const path = write(
        'export.json',
        JSON.stringify([
          {
            id: 1,
            data: { ratchet_interaction_id: interaction!.id },
            annotations: [
              {
                id: 9,
                completed_by: 2,
                result: [
                  { from_name: 'stars', to_name: 'answer', type: 'rating', value: { rating: 2 } },
                  {
                    from_name: 'criterion_helpfulness',
                    to_name: 'answer',
                    type: 'rating',
                    value: { rating: 1 },
                  },
                ],
              },
            ],
          },
        ]),
      );
      expect(await importFile(store, project, path, { format: 'labelstudio' })).toMatchObject({
        feedbackCreated: 2,
      });
      expect(await importFile(store, project, path, { format: 'labelstudio' })).toMatchObject({
        feedbackCreated: 0,
      });
      const events = await store.feedback.listForInteraction(project, interaction!.id);
      expect(events.filter((e) => e.raterId === 'labelstudio:2').map((e) => [e.kind, e.source])).toEqual([
        ['stars', 'annotator'],
        ['criteria', 'annotator'],
      ]);
    });
  });
}
