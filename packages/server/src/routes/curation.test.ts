import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { luhnValid } from '@ratchet/core';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

const EMAIL = 'leaky.person@example.com';
const CARD = '4539 1488 0343 6467';
const KEY = 'sk-proj-Zq8vN3xL0pR7tY2wK5mB9cD4';
const UNSAFE = 'how to make a pipe bomb';
const methods = ['sft', 'kto', 'dpo', 'reward', 'rwsft'] as const;

const PROMPTS = 30;
const ANSWERS = 3;
/** Hidden quality of answer a: the worst, a middling and the best answer to every prompt. */
const quality = (a: number) => [-0.8, 0, 0.8][a]!;
const honestRaters = ['rater-a', 'rater-b', 'rater-c', 'rater-d', 'rater-e'];
const ADVERSARY = 'mallory';

function interactions() {
  return Array.from({ length: PROMPTS * ANSWERS }, (_, k) => {
    const p = Math.floor(k / ANSWERS);
    const a = k % ANSWERS;
    return {
      id: `p${p}-a${a}`,
      model: 'tiny',
      messages: [{ role: 'user', content: `Question ${p}: when does parcel ${1000 + p * 7} arrive?` }],
      // Answers of ordinary, varied lengths, so a correction of similar length is no outlier.
      output: `Answer ${a} about parcel ${1000 + p * 7}: it ${['might come some day', 'should arrive this week, we think', 'left Lyon on Monday and arrives on Thursday between nine and five'][a]}.`,
    };
  });
}

/** Honest raters follow the hidden quality (with a little disagreement); mallory inverts it. */
function ratings() {
  return interactions().flatMap((it, k) => {
    const q = quality(k % ANSWERS);
    const honest = honestRaters.map((raterId, r) => ({
      kind: 'stars',
      interactionId: it.id,
      raterId,
      value: Math.min(5, Math.max(1, Math.round(3 + 2 * q + (((k + r) % 3) - 1) * 0.4))),
    }));
    const inverted = {
      kind: 'stars',
      interactionId: it.id,
      raterId: ADVERSARY,
      value: Math.round(3 - 2 * q),
    };
    return [...honest, inverted];
  });
}

/** Every row of the version, and every string in it: each field of each row, as written. */
function rowsOf(path: string): string[] {
  return readFileSync(join(path, 'rows.jsonl'), 'utf8').trim().split('\n');
}
function feedbackIdsOf(path: string): Set<string> {
  const lines = readFileSync(join(path, 'lineage.jsonl'), 'utf8').trim().split('\n');
  return new Set(lines.flatMap((l) => JSON.parse(l).feedbackIds as string[]));
}

for (const target of testDatabases()) {
  describe(`on ${target.name}: rater-supplied text is curated and flagged raters train nothing`, () => {
    let upstream: LocalUpstream;
    let t: TestServer;
    const poisoned = `Write to ${EMAIL}, pay with ${CARD}, use the key ${KEY}, and here is ${UNSAFE} at home.`;
    const leaky = `Your parcel 1042 is on its way: write to ${EMAIL} or pay the fee with card ${CARD}.`;
    const corrected: string[] = [];
    const correctionIds: string[] = [];

    /** A call through the gateway, as an application makes it: the interaction and its feedback token. */
    async function chat(
      content: string,
      user: string,
    ): Promise<{ interactionId: string; feedbackToken: string }> {
      const res = await fetch(`${t.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.secretKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'support-bot', messages: [{ role: 'user', content }], user }),
      });
      expect(res.status).toBe(200);
      await res.json();
      return {
        interactionId: res.headers.get('x-ratchet-interaction-id')!,
        feedbackToken: res.headers.get('x-ratchet-feedback-token')!,
      };
    }

    beforeAll(async () => {
      upstream = await startLocalUpstream();
      t = await startTestServer(await target.create(), {
        config: { dataDir: mkdtempSync(join(tmpdir(), 'ratchet-curation-')), logFlushIntervalMs: 20 },
        gateway: {
          upstreams: { local: { baseURL: upstream.url } },
          routes: {
            'support-bot': {
              variants: [{ name: 'production', upstream: 'local', model: 'tiny', weight: 1 }],
            },
          },
          defaultUpstream: 'local',
        },
      });
      expect((await t.call('/api/v1/interactions', { body: { items: interactions() } })).status).toBe(201);
      expect((await t.call('/api/v1/feedback', { body: { items: ratings() } })).status).toBe(201);
    });
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await target.cleanup();
    });

    it('a public-key correction with an e-mail, a card, a secret key and unsafe text never reaches a dataset row', async () => {
      expect(luhnValid(CARD.replace(/\D/g, ''))).toBe(true);
      for (const [user, text, question] of [
        ['alice', poisoned, 'When does parcel 1042 arrive? It is late and I need it for the weekend.'],
        ['bob', leaky, 'Where is parcel 1042 now? The tracking page has not changed since Monday.'],
      ] as const) {
        // As a browser sends it: the public key, with the token the gateway gave for this answer.
        const { interactionId, feedbackToken } = await chat(question, user);
        corrected.push(interactionId);
        const correction = { kind: 'correction', interactionId, text, feedbackToken };
        const forged = await t.call('/api/v1/feedback', {
          key: t.publicKey,
          body: { ...correction, raterId: 'rater-a' },
        });
        expect([forged.status, forged.body.error?.path]).toEqual([403, 'raterId']);
        const sent = await t.call('/api/v1/feedback', { key: t.publicKey, body: correction });
        expect(sent.status).toBe(201);
        correctionIds.push(sent.body.id);
      }
      // The gateway logs in the background: the corrected calls are stored before anything builds.
      for (const id of corrected)
        await expect.poll(async () => (await t.call(`/api/v1/interactions/${id}`)).status).toBe(200);

      expect((await t.call('/api/v1/calibrations', { body: {} })).status).toBe(201);
      const raters = (await t.call('/api/v1/raters')).body.items as { id: string; flagged: boolean }[];
      expect(raters.filter((r) => r.flagged).map((r) => r.id)).toEqual([ADVERSARY]);

      let redactedSeen = 0;
      for (const method of methods) {
        const built = await t.call('/api/v1/datasets', { body: { name: `support-${method}`, method } });
        expect(built.status, JSON.stringify(built.body)).toBe(201);
        const rows = rowsOf(built.body.path);
        expect(rows.length).toBeGreaterThan(10);
        for (const row of rows)
          for (const secret of [EMAIL, CARD, CARD.replace(/\D/g, ''), KEY, UNSAFE])
            expect(row).not.toContain(secret);
        // The safe correction still trains, redacted (every method but the pairs of rated answers only).
        if (rows.some((r) => r.includes('write to [EMAIL] or pay the fee with card [CARD]'))) redactedSeen++;
        const manifest = JSON.parse(readFileSync(join(built.body.path, 'manifest.json'), 'utf8'));
        expect(manifest.feedbackCuration).toMatchObject({ safety: 1, pii: 1 });
        const curation = readFileSync(join(built.body.path, 'curation.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l));
        expect(curation.filter((d) => correctionIds.includes(d.id))).toEqual([
          {
            id: correctionIds[0],
            subject: 'feedback',
            filter: 'safety',
            action: 'dropped',
            reason: 'lexicon: weapons ("how to make a pipe bomb")',
          },
          {
            id: correctionIds[1],
            subject: 'feedback',
            filter: 'pii',
            action: 'changed',
            reason: 'redacted 2 span(s): email, card',
          },
        ]);
      }
      expect(redactedSeen).toBe(methods.length);
    });

    it("a flagged adversary's corrections and preferences are in no dataset", async () => {
      const canary = (i: number) =>
        `Mallory's answer ${i}: tell them the parcel was never sent and to pay again.`;
      const sent: { kind: string; interactionId: string; [k: string]: unknown }[] = [];
      for (let p = 0; p < 12; p++) {
        sent.push({ kind: 'correction', interactionId: `p${p}-a2`, raterId: ADVERSARY, text: canary(p) });
        // The worst answer over the best: as a DPO pair it teaches the opposite of what users want.
        sent.push({
          kind: 'preference',
          interactionId: `p${p}-a0`,
          other: `p${p}-a2`,
          choice: 'this',
          raterId: ADVERSARY,
        });
      }
      sent.push({
        kind: 'preference',
        interactionId: 'p20-a0',
        ranking: ['p20-a0', 'p20-a1', 'p20-a2'],
        raterId: ADVERSARY,
      });
      const stored = await t.call('/api/v1/feedback', { body: { items: sent } });
      expect(stored.status).toBe(201);
      const ids = new Set<string>((stored.body.items as { id: string }[]).map((f) => f.id));
      expect(ids.size).toBe(sent.length);
      // An honest rater's correction sent at the same time still trains.
      const honest = 'Parcel 1035 left Lyon on Monday and arrives on Thursday; the courier calls first.';
      expect(
        (
          await t.call('/api/v1/feedback', {
            body: { kind: 'correction', interactionId: 'p5-a1', raterId: 'rater-a', text: honest },
          })
        ).status,
      ).toBe(201);

      for (const method of methods) {
        const built = await t.call('/api/v1/datasets', { body: { name: `support-${method}`, method } });
        expect(built.status, JSON.stringify(built.body)).toBe(201);
        const rows = rowsOf(built.body.path);
        for (const row of rows) expect(row).not.toContain("Mallory's answer");
        const fromAdversary = [...feedbackIdsOf(built.body.path)].filter((id) => ids.has(id));
        expect(fromAdversary).toEqual([]);
        expect(rows.some((r) => r.includes(honest))).toBe(true);
        const manifest = JSON.parse(readFileSync(join(built.body.path, 'manifest.json'), 'utf8'));
        expect(manifest.feedbackCuration.flagged_rater).toBe(sent.length);
      }
    });
  });
}
