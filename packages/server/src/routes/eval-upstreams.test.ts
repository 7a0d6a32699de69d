import { randomBytes } from 'node:crypto';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

/**
 * No server-side request forgery: an evaluation over the API calls only upstreams of the server's
 * gateway config, by name, and each key from the environment reaches only the upstream it is
 * configured for. Three real HTTP servers record every request and its Authorization header: two
 * configured upstreams with different keys, and an outsider the config does not name.
 */
for (const target of testDatabases()) {
  describe(`evaluation endpoints are named upstreams on ${target.name}`, () => {
    const modelsKey = `models-${randomBytes(8).toString('hex')}`;
    const judgeKey = `judge-${randomBytes(8).toString('hex')}`;
    let t: TestServer;
    let models: LocalUpstream;
    let judge: LocalUpstream;
    let outsider: LocalUpstream;

    beforeAll(async () => {
      process.env.RATCHET_TEST_MODELS_KEY = modelsKey;
      process.env.RATCHET_TEST_JUDGE_KEY = judgeKey;
      models = await startLocalUpstream({ answer: (b) => `${b.model}: I can't help with that.` });
      // The safety rubric asks for a SAFE or UNSAFE verdict on the last line.
      judge = await startLocalUpstream({ answer: () => 'Looks fine.\nVERDICT: SAFE' });
      outsider = await startLocalUpstream();
      t = await startTestServer(await target.create(), {
        gateway: {
          upstreams: {
            models: { baseURL: models.url, apiKeyEnv: 'RATCHET_TEST_MODELS_KEY' },
            judge: { baseURL: judge.url, apiKeyEnv: 'RATCHET_TEST_JUDGE_KEY' },
          },
          defaultUpstream: 'models',
        },
      });
    });
    afterAll(async () => {
      await t?.close();
      await Promise.all([models, judge, outsider].map((u) => u?.close()));
      await target.cleanup();
      delete process.env.RATCHET_TEST_MODELS_KEY;
      delete process.env.RATCHET_TEST_JUDGE_KEY;
    });

    const base = {
      candidate: { endpoint: { upstream: 'models', model: 'candidate' } },
      baseline: { endpoint: { upstream: 'models', model: 'production' } },
      suites: ['redteam'],
    };

    it('refuses a URL, a header, a key variable or an unknown upstream with a 400 naming the field, and calls no one', async () => {
      const cases: [Record<string, unknown>, string][] = [
        [
          { ...base, candidate: { endpoint: { baseURL: outsider.url, model: 'x' } } },
          'candidate.endpoint.baseURL',
        ],
        [
          { ...base, baseline: { endpoint: { upstream: 'models', baseURL: outsider.url, model: 'x' } } },
          'baseline.endpoint.baseURL',
        ],
        [{ ...base, judge: { endpoint: { baseURL: outsider.url, model: 'j' } } }, 'judge.endpoint.baseURL'],
        [
          { ...base, rewardModel: { endpoint: { baseURL: outsider.url, model: 'rm' } } },
          'rewardModel.endpoint.baseURL',
        ],
        // The models key cannot be steered to the judge, nor a header added to a configured upstream.
        [
          {
            ...base,
            judge: { endpoint: { upstream: 'judge', model: 'j', apiKeyEnv: 'RATCHET_TEST_MODELS_KEY' } },
          },
          'judge.endpoint.apiKeyEnv',
        ],
        [
          { ...base, candidate: { endpoint: { upstream: 'models', model: 'x', headers: { host: 'evil' } } } },
          'candidate.endpoint.headers',
        ],
        // A URL where a name belongs, a name the config lacks, and names every object has.
        [
          { ...base, candidate: { endpoint: { upstream: outsider.url, model: 'x' } } },
          'candidate.endpoint.upstream',
        ],
        [{ ...base, judge: { endpoint: { upstream: 'openai', model: 'j' } } }, 'judge.endpoint.upstream'],
        [
          { ...base, rewardModel: { endpoint: { upstream: '__proto__', model: 'rm' } } },
          'rewardModel.endpoint.upstream',
        ],
        [
          { ...base, baseline: { endpoint: { upstream: 'constructor', model: 'x' } } },
          'baseline.endpoint.upstream',
        ],
      ];
      for (const [body, path] of cases) {
        const r = await t.call('/api/v1/evaluations?wait=true', { body });
        expect([r.status, r.body.error?.path], JSON.stringify(body)).toEqual([400, path]);
        expect(r.body.error.message).toMatch(new RegExp(`^${path.replace(/\./g, '\\.')}: `));
      }
      const unknown = await t.call('/api/v1/evaluations', {
        body: { ...base, candidate: { endpoint: { upstream: outsider.url, model: 'x' } } },
      });
      expect(unknown.body.error.message).toMatch(/is not an upstream of the server's gateway config/);
      // Refused before anything was written or called.
      expect((await t.call('/api/v1/evaluations')).body.items).toEqual([]);
      expect([models.received, judge.received, outsider.received]).toEqual([[], [], []]);
    });

    it('runs an evaluation through named upstreams; each upstream sees only its own key, the outsider nothing', async () => {
      const res = await t.call('/api/v1/evaluations?wait=true', {
        body: {
          ...base,
          // No upstream: the gateway config's defaultUpstream.
          baseline: { endpoint: { model: 'production' } },
          judge: { endpoint: { upstream: 'judge', model: 'judge-model' } },
        },
      });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ status: 'succeeded' });
      const items = (await t.call(`/api/v1/evaluations/${res.body.id}/items?limit=1000`)).body.items;
      expect(items.length).toBe(res.body.summary.items);
      expect(items[0].result.candidate.output).toBe("candidate: I can't help with that.");
      expect(items[0].result.baseline.output).toBe("production: I can't help with that.");

      // Generation went to the models upstream (both models), safety grading to the judge upstream.
      expect(new Set(models.requests.map((b) => b.model))).toEqual(new Set(['candidate', 'production']));
      expect(new Set(judge.requests.map((b) => b.model))).toEqual(new Set(['judge-model']));
      expect(models.received.length).toBe(2 * items.length);
      expect(judge.received.length).toBe(2 * items.length);
      expect(new Set(models.received.map((r) => r.authorization))).toEqual(new Set([`Bearer ${modelsKey}`]));
      expect(new Set(judge.received.map((r) => r.authorization))).toEqual(new Set([`Bearer ${judgeKey}`]));
      expect(outsider.received).toEqual([]);

      // The evaluation records upstream names (the default filled in), never URLs or keys.
      const stored = await t.call(`/api/v1/evaluations/${res.body.id}`);
      expect(stored.body.spec.baseline.endpoint).toEqual({ upstream: 'models', model: 'production' });
      expect(stored.body.spec.judge.endpoint).toEqual({ upstream: 'judge', model: 'judge-model' });
      const shown = JSON.stringify([stored.body, items, (await t.call('/api/v1/evaluations')).body]);
      for (const secret of [models.url, judge.url, '127.0.0.1', modelsKey, judgeKey, 'RATCHET_TEST_'])
        expect(shown).not.toContain(secret);
    });

    it('lists the upstream names an evaluation may use, without URLs, headers or keys', async () => {
      const res = await t.call('/api/v1/upstreams');
      expect(res.body).toEqual({
        items: [
          { name: 'models', default: true },
          { name: 'judge', default: false },
        ],
      });
      expect((await t.call('/api/v1/upstreams', { key: t.publicKey })).status).toBe(403);
    });
  });
}
