import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SeededRandom } from '@ratchet/core';
import { lookAtPromotionWatch, signatureHeader } from '@ratchet/loop';
import {
  type LocalUpstream,
  startLocalUpstream,
  startTestServer,
  type TestServer,
} from '@ratchet/server/testing';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** A real HTTP receiver for the guardrail's webhook: keeps each request's headers and raw body. */
async function startReceiver() {
  const received: { headers: Record<string, string | string[] | undefined>; body: string }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/ratchet`;
  return { url, received, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/**
 * Guardrails after promotion, end to end: a hand promotion through the API opens a watch whose
 * holdback stays on the replaced model; real users chat through the real gateway and rate the
 * answers (source user, with the gateway's feedback tokens); when the promoted model's users
 * thumb it down, one look rolls it back (route, registry, audit as `guardrail`) and a signed
 * webhook says why, and the next calls are answered by the restored model. A watch without harm
 * ends and takes the holdback off the route.
 */
for (const target of testDatabases()) {
  describe(`guardrails after promotion on ${target.name}`, () => {
    let upstream: LocalUpstream;
    let receiver: Awaited<ReturnType<typeof startReceiver>>;
    let t: TestServer;
    const secret = 'whsec-test-guardrail';

    beforeAll(async () => {
      // The upstream answers with the model it was asked for: the answer says who served it.
      upstream = await startLocalUpstream({
        answer: (b) => `${String(b.model)}: here is your answer`,
        record: false,
      });
      receiver = await startReceiver();
      const url = await target.create();
      t = await startTestServer(url, {
        gateway: { upstreams: { local: { baseURL: upstream.url } }, defaultUpstream: 'local' },
        project: 'guarded',
      });
      for (const name of ['good-v1', 'bad-v2', 'fine-v3'])
        expect(
          (await t.call('/api/v1/models', { body: { name, route: 'support', baseModel: 'tiny' } })).status,
        ).toBe(201);
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await receiver?.close();
      await target.cleanup();
    });

    async function chat(user: string) {
      const res = await t.call('/v1/chat/completions', {
        body: { model: 'support', messages: [{ role: 'user', content: 'Where is my parcel?' }] },
        headers: { 'x-ratchet-user-id': user },
      });
      expect(res.status).toBe(200);
      return {
        id: res.headers.get('x-ratchet-interaction-id')!,
        feedbackToken: res.headers.get('x-ratchet-feedback-token')!,
        variant: res.headers.get('x-ratchet-variant')!,
        model: (res.body.choices[0].message.content as string).split(':')[0]!,
      };
    }

    /** Users chat once each, then rate their answer (source user) with the model's thumbs-up rate. */
    async function usersRate(prefix: string, users: number, upRate: Record<string, number>, seed: number) {
      const rng = new SeededRandom(seed);
      const seen: Awaited<ReturnType<typeof chat>>[] = [];
      for (let start = 0; start < users; start += 25)
        seen.push(
          ...(await Promise.all(
            Array.from({ length: Math.min(25, users - start) }, (_, j) => chat(`${prefix}-${start + j}`)),
          )),
        );
      // The gateway logs calls in the background; people read before they rate.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const draws = seen.map(() => rng.uniform());
      for (let start = 0; start < seen.length; start += 25)
        await Promise.all(
          seen.slice(start, start + 25).map(async (call, j) => {
            const fb = await t.call('/api/v1/feedback', {
              key: t.publicKey,
              body: {
                kind: 'thumbs',
                interactionId: call.id,
                feedbackToken: call.feedbackToken,
                value: draws[start + j]! < upRate[call.model]! ? 'up' : 'down',
              },
            });
            expect(fb.status).toBe(201);
          }),
        );
      return seen;
    }

    it('a hand promotion through the API opens a watch: the replaced model keeps 5% of the users', async () => {
      const first = await t.call('/api/v1/models/good-v1/stage', {
        body: { stage: 'production', reason: 'v1' },
      });
      expect(first.status).toBe(200);
      // Nothing was replaced: nothing to hold back, no watch.
      expect(await t.store.watches.list(t.projectId)).toEqual([]);
      const promoted = await t.call('/api/v1/models/bad-v2/stage', {
        body: { stage: 'production', reason: 'looks fine to me' },
      });
      expect(promoted.status).toBe(200);
      const [watch] = await t.store.watches.list(t.projectId, { open: true });
      const [v1, v2] = await Promise.all(
        ['good-v1', 'bad-v2'].map((m) => t.store.models.get(t.projectId, m)),
      );
      expect(watch).toMatchObject({
        route: 'support',
        modelId: v2!.id,
        holdbackModelId: v1!.id,
        status: 'watching',
        openedBy: expect.stringMatching(/^api:/),
        policy: { holdbackShare: 0.05 },
      });
      expect((await t.store.routes.get(t.projectId, 'support'))?.variants).toEqual([
        { name: 'production', upstream: 'local', model: 'bad-v2', weight: 0.95, modelId: v2!.id },
        { name: 'holdback', upstream: 'local', model: 'good-v1', weight: 0.05, modelId: v1!.id },
      ]);
    });

    it('harm (the new model thumbed down by its users) rolls back: route, registry, audit, signed webhook', async () => {
      const seen = await usersRate('u', 600, { 'good-v1': 0.8, 'bad-v2': 0.3 }, 7);
      // The gateway's sticky split: the holdback users were answered by good-v1.
      const held = seen.filter((c) => c.variant === 'holdback');
      expect(held.length).toBeGreaterThanOrEqual(20);
      expect(held.every((c) => c.model === 'good-v1')).toBe(true);
      expect(seen.filter((c) => c.variant === 'production').every((c) => c.model === 'bad-v2')).toBe(true);

      const [watch] = await t.store.watches.list(t.projectId, { open: true });
      const out = await lookAtPromotionWatch(t.store, watch!, { webhook: { url: receiver.url, secret } });
      expect(out.decision).toBe('rollback');
      expect(out.reasons[0]).toMatch(/^thumbs_up_rate: new 0\.\d+ \(\d+ users\) vs holdback 0\.\d+/);
      expect(out.webhook).toMatchObject({ delivered: true, status: 204, attempts: [{ status: 204 }] });

      // Registry and audit.
      expect((await t.store.models.production(t.projectId, 'support'))?.name).toBe('good-v1');
      expect((await t.store.models.get(t.projectId, 'bad-v2'))?.stage).toBe('archived');
      const [rolled] = await t.store.audit.list(t.projectId, { action: 'model.rolled_back', limit: 1 });
      expect(rolled).toMatchObject({
        actor: 'guardrail',
        details: { reason: expect.stringMatching(/thumbs_up_rate/) },
      });
      expect(await t.store.watches.get(t.projectId, watch!.id)).toMatchObject({
        status: 'rolled_back',
        outcome: { actor: 'guardrail' },
      });
      const [look] = await t.store.watches.looks(watch!.id);
      expect(look).toMatchObject({ decision: 'rollback', actor: 'guardrail' });
      expect((look!.evidence as { holdback: { users: number } }).holdback.users).toBe(held.length);

      // Every user, the holdback's and the others, is answered by the restored model.
      for (let i = 0; i < 20; i++) expect((await chat(`u-${i}`)).model).toBe('good-v1');

      // The webhook: one POST whose signature is HMAC-SHA256 over "<t>.<body>" with the shared secret.
      expect(receiver.received).toHaveLength(1);
      const { headers, body } = receiver.received[0]!;
      const sig = String(headers[signatureHeader]);
      const [, ts, mac] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig)!;
      expect(createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex')).toBe(mac);
      expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(60);
      expect(JSON.parse(body)).toMatchObject({
        event: 'promotion.rolled_back',
        route: 'support',
        rolledBack: { name: 'bad-v2' },
        restored: { name: 'good-v1' },
        reasons: [expect.stringMatching(/thumbs_up_rate/)],
      });
      // What the dashboard reads: the watch, its decision and the evidence of its last look.
      const listed = await t.call('/api/v1/watches?looks=1');
      expect(listed.status).toBe(200);
      expect(listed.body.items[0]).toMatchObject({
        id: watch!.id,
        modelName: 'bad-v2',
        holdbackModelName: 'good-v1',
        status: 'rolled_back',
        webhook: { delivered: true, status: 204, url: receiver.url },
        looks: [
          {
            decision: 'rollback',
            evidence: {
              metrics: expect.arrayContaining([
                expect.objectContaining({
                  metric: 'thumbs_up_rate',
                  harmful: true,
                  holdbackUsers: held.length,
                }),
              ]),
            },
          },
        ],
      });
      expect((await t.call('/api/v1/watches?looks=500')).body.error.path).toBe('looks');
      // A look at a closed watch changes nothing.
      expect((await lookAtPromotionWatch(t.store, watch!)).decision).toBe('closed');
    }, 120_000);

    it('a watch without harm ends once its length passed and takes the holdback off the route', async () => {
      const v3 = await t.store.models.setStage(
        t.projectId,
        'fine-v3',
        'production',
        'test',
        'better',
        undefined,
        {
          watch: { users: 100, hours: 1, holdbackShare: 0.2, minUsersPerArm: 5 },
        },
      );
      expect(v3.watchId).not.toBeNull();
      await usersRate('w', 120, { 'good-v1': 0.7, 'fine-v3': 0.75 }, 11);
      let watch = (await t.store.watches.get(t.projectId, v3.watchId!))!;
      // Users enough, but the hour has not passed: keep watching.
      expect((await lookAtPromotionWatch(t.store, watch)).decision).toBe('continue');
      watch = (await t.store.watches.get(t.projectId, v3.watchId!))!;
      const out = await lookAtPromotionWatch(t.store, watch, { now: watch.openedAt + 3_600_001 });
      expect(out.decision).toBe('end');
      expect(await t.store.watches.get(t.projectId, v3.watchId!)).toMatchObject({ status: 'ended' });
      expect((await t.store.watches.looks(v3.watchId!)).map((l) => l.decision)).toEqual(['end', 'continue']);
      expect((await t.store.routes.get(t.projectId, 'support'))?.variants).toEqual([
        { name: 'production', upstream: 'local', model: 'fine-v3', weight: 1, modelId: v3.id },
      ]);
      expect((await t.store.models.production(t.projectId, 'support'))?.name).toBe('fine-v3');
      for (let i = 0; i < 30; i++) expect((await chat(`w-${i}`)).model).toBe('fine-v3');
    }, 120_000);

    it('an experiment started on a watched route ends the watch (its variants replace the holdback)', async () => {
      const v1 = await t.store.models.setStage(t.projectId, 'good-v1', 'production', 'test', 'back to v1');
      expect(v1.watchId).not.toBeNull();
      const started = await t.call('/api/v1/experiments', {
        body: {
          name: 'v1-vs-v3',
          route: 'support',
          control: 'a',
          variants: [
            { name: 'a', model: 'good-v1', upstream: 'local', weight: 1 },
            { name: 'b', model: 'fine-v3', upstream: 'local', weight: 1 },
          ],
        },
      });
      expect(started.status, JSON.stringify(started.body)).toBe(201);
      expect(await t.store.watches.get(t.projectId, v1.watchId!)).toMatchObject({
        status: 'superseded',
        outcome: { reason: 'experiment "v1-vs-v3" started on the route' },
      });
    });
  });
}
