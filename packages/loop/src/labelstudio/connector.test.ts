import { InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { LabelStudioClient, type LabelStudioResultInput } from './client.js';
import { createLabelStudioProject, pullFromLabelStudio, pushToLabelStudio } from './connector.js';
import {
  type LabelStudioServer,
  labelStudioInstalled,
  labelStudioVenv,
  startLabelStudio,
} from './test-utils/server.js';

/**
 * The connector against a real Label Studio server (from PyPI, installed by
 * scripts/labelstudio-venv.sh), started for this file: create a project, push interactions,
 * annotate as annotators would through the API, pull, and check the feedback in the store.
 */
const required = process.env.RATCHET_REQUIRE_LABEL_STUDIO === '1';
const available = labelStudioInstalled();
if (!available && !required) {
  console.warn(
    `\n*** SKIPPING the Label Studio connector test: no Label Studio in ${labelStudioVenv}.\n` +
      '*** Run scripts/labelstudio-venv.sh to install it (set RATCHET_REQUIRE_LABEL_STUDIO=1 to fail instead).\n',
  );
}

const chat = (id: string, prompt: string, answer: string, model = 'm1') =>
  parseInput(InteractionInput, { id, model, messages: [{ role: 'user', content: prompt }], output: answer });

const rating = (from_name: string, stars: number): LabelStudioResultInput => ({
  from_name,
  to_name: 'answer',
  type: 'rating',
  value: { rating: stars },
});
const textarea = (from_name: string, text: string): LabelStudioResultInput => ({
  from_name,
  to_name: 'answer',
  type: 'textarea',
  value: { text: [text] },
});
const thumbs = (value: 'up' | 'down'): LabelStudioResultInput => ({
  from_name: 'thumbs',
  to_name: 'answer',
  type: 'choices',
  value: { choices: [value] },
});

describe.skipIf(!available && !required)('Label Studio connector against a real server', () => {
  const db = sqliteTestDatabase();
  let server: LabelStudioServer;
  let client: LabelStudioClient;
  let store: Store;
  let projectId: string;
  let annotators: { ann: number; bob: number };
  /** Label Studio task id by interaction id. */
  let taskOf: Map<string, number>;
  let singleProject: number;

  beforeAll(async () => {
    if (!available)
      throw new Error(
        `RATCHET_REQUIRE_LABEL_STUDIO=1 but ${labelStudioVenv} has no Label Studio: run scripts/labelstudio-venv.sh`,
      );
    const started = performance.now();
    server = await startLabelStudio();
    console.info(`Label Studio answered after ${((performance.now() - started) / 1000).toFixed(1)} s`);
    client = new LabelStudioClient({ url: server.url, apiKey: server.apiKey });
    store = await Store.open(await db.create());
    projectId = (await store.projects.create('support')).id;
    await store.interactions.insert(projectId, [
      chat('q1', 'How do I reset my password?', 'Click "Forgot password" on the sign-in page.'),
      chat('q2', 'What are your opening hours?', '9 to 5, Monday to Friday.'),
      chat('q3', 'Can I pay by card?', 'Yes.'),
      chat('p-a', 'Summarize: the cat sat on the mat.', 'A cat sat on a mat.', 'm1'),
      chat('p-b', 'Summarize: the cat sat on the mat.', 'Cats like mats.', 'm2'),
    ]);
    const ann = await client.createUser({ email: 'ann@ratchet.test', username: 'ann' });
    const bob = await client.createUser({ email: 'bob@ratchet.test', username: 'bob' });
    annotators = { ann: ann.id, bob: bob.id };
  }, 480_000);

  afterAll(async () => {
    await server?.stop();
    await store?.close();
    await db.cleanup();
  });

  it('creates a project whose labeling config Label Studio accepts', async () => {
    const project = await createLabelStudioProject(client, store, projectId, {
      title: 'Ratchet support ratings',
    });
    singleProject = project.id;
    const stored = await client.request(
      z.looseObject({ label_config: z.string() }),
      'GET',
      `/api/projects/${singleProject}/`,
    );
    expect(stored.label_config).toContain('<Rating name="criterion_helpfulness"');
  });

  it('pushes interactions as tasks once, with their ids for the way back', async () => {
    const push = () =>
      pushToLabelStudio(client, store, projectId, singleProject, { interactionIds: ['q1', 'q2', 'q3'] });
    expect(await push()).toEqual({ selected: 3, pushed: 3, alreadyThere: 0 });
    expect(await push()).toEqual({ selected: 3, pushed: 0, alreadyThere: 3 });
    const tasks = await client.listTasks(singleProject);
    taskOf = new Map(tasks.map((t) => [t.data.ratchet_interaction_id as string, t.id]));
    expect([...taskOf.keys()].sort()).toEqual(['q1', 'q2', 'q3']);
    expect(tasks.find((t) => t.data.ratchet_interaction_id === 'q2')?.data).toMatchObject({
      prompt: 'What are your opening hours?',
      answer: '9 to 5, Monday to Friday.',
    });
  });

  it('pulls finished annotations as annotator feedback, once', async () => {
    const annotate = (interaction: string, completedBy: number, result: LabelStudioResultInput[]) =>
      client.createAnnotation(taskOf.get(interaction)!, { result, completedBy });
    const annQ1 = await annotate('q1', annotators.ann, [
      thumbs('up'),
      rating('stars', 4),
      rating('criterion_relevance', 5),
      rating('criterion_accuracy', 4),
      textarea('comment', 'Clear and short.'),
    ]);
    await annotate('q1', annotators.bob, [
      thumbs('down'),
      rating('stars', 2),
      textarea('correction', 'Use the link in the app.'),
    ]);
    await annotate('q2', annotators.ann, [rating('stars', 5)]);

    const first = await pullFromLabelStudio(client, store, projectId, singleProject);
    // q1: Ann 4 events (criteria are one), Bob 3; q2: Ann 1.
    expect(first).toMatchObject({ annotatedTasks: 2, feedbackCreated: 8, interactionsCreated: 0 });
    expect((await pullFromLabelStudio(client, store, projectId, singleProject)).feedbackCreated).toBe(0);

    const ann = `labelstudio:${annotators.ann}`;
    const bob = `labelstudio:${annotators.bob}`;
    const q1 = await store.feedback.listForInteraction(projectId, 'q1');
    expect(q1.every((f) => f.source === 'annotator' && f.current)).toBe(true);
    expect(q1.map((f) => [f.raterId, f.kind, f.value ?? f.text ?? f.data])).toEqual(
      expect.arrayContaining([
        [ann, 'thumbs', 1],
        [ann, 'stars', 4],
        [ann, 'criteria', { scores: { accuracy: 4, relevance: 5 } }],
        [ann, 'comment', 'Clear and short.'],
        [bob, 'thumbs', -1],
        [bob, 'stars', 2],
        [bob, 'correction', 'Use the link in the app.'],
      ]),
    );
    expect(q1).toHaveLength(7);
    expect(await store.feedback.listForInteraction(projectId, 'q2')).toEqual([
      expect.objectContaining({ raterId: ann, kind: 'stars', value: 5, source: 'annotator' }),
    ]);

    // Ann changes her mind about the stars: the next pull adds that one rating, now current.
    await client.request(z.looseObject({ id: z.number() }), 'PATCH', `/api/annotations/${annQ1.id}/`, {
      result: [
        thumbs('up'),
        rating('stars', 3),
        rating('criterion_relevance', 5),
        rating('criterion_accuracy', 4),
        textarea('comment', 'Clear and short.'),
      ],
    });
    expect((await pullFromLabelStudio(client, store, projectId, singleProject)).feedbackCreated).toBe(1);
    const stars = (await store.feedback.listForInteraction(projectId, 'q1')).filter(
      (f) => f.raterId === ann && f.kind === 'stars',
    );
    expect(stars.map((f) => [f.value, f.current])).toEqual([
      [4, false],
      [3, true],
    ]);
  });

  it('compares two answers in a pairwise project and pulls the preference', async () => {
    const project = await createLabelStudioProject(client, store, projectId, {
      title: 'Ratchet comparisons',
      mode: 'pairwise',
    });
    const pushed = await pushToLabelStudio(client, store, projectId, project.id, {
      interactionIds: ['p-a', 'p-b', 'q1'],
      mode: 'pairwise',
    });
    expect(pushed).toEqual({ selected: 3, pushed: 1, alreadyThere: 0 });
    const [task] = await client.listTasks(project.id);
    const left = task!.data.ratchet_interaction_id as string;
    const right = task!.data.ratchet_interaction_id_b as string;
    expect([left, right].sort()).toEqual(['p-a', 'p-b']);
    await client.createAnnotation(task!.id, {
      completedBy: annotators.bob,
      result: [
        {
          from_name: 'preference',
          to_name: 'answer,answer_b',
          type: 'pairwise',
          value: { selected: 'right' },
        },
      ],
    });
    expect(await pullFromLabelStudio(client, store, projectId, project.id)).toMatchObject({
      feedbackCreated: 1,
    });
    expect(await store.feedback.currentOfKinds(projectId, ['preference'])).toEqual([
      expect.objectContaining({
        interactionId: left,
        raterId: `labelstudio:${annotators.bob}`,
        source: 'annotator',
        label: 'other',
        data: { other: right },
      }),
    ]);
  });

  it('works with a personal access token as well as a legacy token', async () => {
    const token = await client.createPersonalAccessToken();
    const withPat = new LabelStudioClient({ url: server.url, apiKey: token });
    expect(await withPat.whoami()).toMatchObject({ email: server.adminEmail });
    expect((await withPat.listTasks(singleProject)).length).toBe(3);
  });
});
