import { mkdtempSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_JSON_DEPTH } from '@ratchet/core';
import type { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './testing/server.js';

/**
 * Every bad input, through the real HTTP API on both databases: a 4xx in the one error shape
 * whose path (and message) names what was wrong, and not one row written anywhere.
 */

/** JSON nested `depth` levels deep, written as text (JSON.stringify itself would overflow). */
function deepJson(depth: number, key = 'a'): string {
  return `${`{"${key}":`.repeat(depth)}1${'}'.repeat(depth)}`;
}

const interaction = (extra: Record<string, unknown> = {}) => ({
  model: 'm',
  messages: [{ role: 'user', content: 'hello' }],
  output: 'hi',
  ...extra,
});

interface BadInput {
  name: string;
  path: string;
  method?: string;
  /** An object is sent as JSON; a string is sent as it is. */
  body?: unknown;
  headers?: Record<string, string>;
  key?: 'public';
  status: number;
  code: string;
  /** The error's path; a RegExp when only its start is fixed (deep paths). */
  field: string | RegExp;
}

const nul = 'a\u0000b';

const cases: BadInput[] = [
  // Capture: NUL and lone surrogates anywhere in a body.
  {
    name: 'NUL in interaction text',
    path: '/api/v1/interactions',
    body: interaction({ messages: [{ role: 'user', content: nul }] }),
    status: 400,
    code: 'invalid_request',
    field: 'messages.0.content',
  },
  {
    name: 'lone surrogate in interaction output',
    path: '/api/v1/interactions',
    body: interaction({ output: 'x\uD800y' }),
    status: 400,
    code: 'invalid_request',
    field: 'output',
  },
  {
    name: 'NUL in interaction metadata',
    path: '/api/v1/interactions',
    body: interaction({ metadata: { note: nul } }),
    status: 400,
    code: 'invalid_request',
    field: 'metadata.note',
  },
  {
    name: 'a batch with one bad interaction writes none',
    path: '/api/v1/interactions',
    body: {
      items: [interaction({ id: 'b1' }), interaction({ id: 'b2' }), interaction({ id: 'b3', error: nul })],
    },
    status: 400,
    code: 'invalid_request',
    field: 'items.2.error',
  },
  {
    name: 'JSON nested 20,000 levels in parameters',
    path: '/api/v1/interactions',
    body: `{"model":"m","messages":[{"role":"user","content":"x"}],"output":"y","parameters":${deepJson(20_000)}}`,
    status: 400,
    code: 'invalid_request',
    field: /^parameters\.a\.a/,
  },
  {
    name: 'a body that is 20,000 nested arrays',
    path: '/api/v1/feedback',
    body: `${'['.repeat(20_000)}${']'.repeat(20_000)}`,
    status: 400,
    code: 'invalid_request',
    field: /^0\.0\.0/,
  },
  {
    name: 'token count of 2^31',
    path: '/api/v1/interactions',
    body: interaction({ usage: { inputTokens: 2 ** 31 } }),
    status: 400,
    code: 'invalid_request',
    field: 'usage.inputTokens',
  },
  {
    name: 'latency of 1e300 ms',
    path: '/api/v1/interactions',
    body: interaction({ latencyMs: 1e300 }),
    status: 400,
    code: 'invalid_request',
    field: 'latencyMs',
  },
  {
    name: 'a number that parses to Infinity',
    path: '/api/v1/interactions',
    body: '{"model":"m","messages":[{"role":"user","content":"x"}],"output":"y","latencyMs":1e999}',
    status: 400,
    code: 'invalid_request',
    field: 'latencyMs',
  },
  {
    name: 'createdAt past the last instant a date can hold',
    path: '/api/v1/interactions',
    body: interaction({ createdAt: 2 ** 53 - 1 }),
    status: 400,
    code: 'invalid_request',
    field: 'createdAt',
  },
  {
    name: 'NUL in a feedback comment',
    path: '/api/v1/feedback',
    body: { kind: 'comment', interactionId: 'i0', text: nul },
    status: 400,
    code: 'invalid_request',
    field: 'text',
  },
  {
    name: 'NUL in a rater id (public key)',
    path: '/api/v1/feedback',
    key: 'public',
    body: { kind: 'thumbs', interactionId: 'i0', value: 'up', raterId: nul },
    status: 400,
    code: 'invalid_request',
    field: 'raterId',
  },
  {
    name: 'NUL in feedback metadata',
    path: '/api/v1/feedback',
    body: { kind: 'thumbs', interactionId: 'i0', value: 'up', metadata: { page: nul } },
    status: 400,
    code: 'invalid_request',
    field: 'metadata.page',
  },
  {
    name: 'a feedback batch with one bad item writes none',
    path: '/api/v1/feedback',
    body: {
      items: [
        { kind: 'thumbs', interactionId: 'i0', value: 'up', raterId: 'fresh' },
        { kind: 'comment', interactionId: 'i1', text: `bad ${nul}` },
      ],
    },
    status: 400,
    code: 'invalid_request',
    field: 'items.1.text',
  },
  {
    name: 'NUL in an OTLP span attribute',
    path: '/v1/traces',
    body: {
      resourceSpans: [
        {
          scopeSpans: [
            {
              spans: [
                {
                  traceId: 't',
                  spanId: 's',
                  name: 'chat',
                  attributes: [{ key: 'gen_ai.request.model', value: { stringValue: nul } }],
                },
              ],
            },
          ],
        },
      ],
    },
    status: 400,
    code: 'invalid_request',
    field: 'resourceSpans.0.scopeSpans.0.spans.0.attributes.0.value.stringValue',
  },
  // Query strings and path parameters.
  {
    name: 'NUL in a query parameter',
    path: '/api/v1/interactions?model=a%00b',
    status: 400,
    code: 'invalid_request',
    field: 'model',
  },
  {
    name: 'NUL in a dataset ref',
    path: '/api/v1/datasets/a%00b',
    status: 400,
    code: 'invalid_request',
    field: 'ref',
  },
  {
    name: 'NUL in a model ref',
    path: '/api/v1/models/a%00b',
    status: 400,
    code: 'invalid_request',
    field: 'ref',
  },
  {
    name: 'offset of 1e20',
    path: '/api/v1/datasets/base/rows?offset=100000000000000000000',
    status: 400,
    code: 'invalid_request',
    field: 'offset',
  },
  // Dataset refs.
  ...['base@abc', 'base@1e99', 'base@-1', 'base@0x10', 'base@0', 'base@99999999999', 'base@1@2'].map(
    (ref): BadInput => ({
      name: `dataset ref ${ref}`,
      path: `/api/v1/datasets/${encodeURIComponent(ref)}`,
      status: 400,
      code: 'invalid_request',
      field: 'ref',
    }),
  ),
  {
    name: 'dataset ref name@abc for rows',
    path: '/api/v1/datasets/base@abc/rows',
    status: 400,
    code: 'invalid_request',
    field: 'ref',
  },
  {
    name: 'dataset ref name@1e99 for an export',
    path: '/api/v1/dashboard/datasets/base@1e99/export',
    status: 400,
    code: 'invalid_request',
    field: 'ref',
  },
  {
    name: 'dataset ref name@abc for a training run',
    path: '/api/v1/runs',
    body: { method: 'sft', baseModel: 'tiny', dataset: 'base@abc' },
    status: 400,
    code: 'invalid_request',
    field: 'dataset',
  },
  {
    name: 'a training warm-up of 1e308 steps',
    path: '/api/v1/runs',
    body: { method: 'sft', baseModel: 'tiny', dataset: 'base', hyperparameters: { warmupSteps: 1e308 } },
    status: 400,
    code: 'invalid_request',
    field: 'hyperparameters.warmupSteps',
  },
  // Calibration settings.
  ...(
    [
      ['priors.itemSd', { priors: { itemSd: 1e308 } }],
      ['priors.itemMean', { priors: { itemMean: -1e308 } }],
      ['priors.biasSd', { priors: { biasSd: 1e-320 } }],
      ['priors.scaleSd', { priors: { scaleSd: 1e300 } }],
      ['maxIterations', { maxIterations: 1e9 }],
      ['tolerance', { tolerance: 5e-324 }],
      ['minNoiseSd', { minNoiseSd: 1e300 }],
      ['noisePriorStrength', { noisePriorStrength: 1e300 }],
    ] as const
  ).map(
    ([field, calibration]): BadInput => ({
      name: `calibration ${field} ${JSON.stringify(calibration)}`,
      path: '/api/v1/calibrations',
      body: { calibration },
      status: 400,
      code: 'invalid_request',
      field: `calibration.${field}`,
    }),
  ),
  {
    name: 'reward mapping weight of 1e308',
    path: '/api/v1/calibrations',
    body: { mapping: { sourceWeight: { user: 1e308 } } },
    status: 400,
    code: 'invalid_request',
    field: 'mapping.sourceWeight.user',
  },
  // The calibration's reference names one of calibrationReferences; nothing else is read or run.
  ...(
    [
      ['an unknown name', 'vibes'],
      ['a NUL byte in the name', 'words\u0000'],
      ['an object', { words: true }],
    ] as const
  ).map(
    ([what, reference]): BadInput => ({
      name: `calibration reference: ${what}`,
      path: '/api/v1/calibrations',
      body: { reference },
      status: 400,
      code: 'invalid_request',
      field: 'reference',
    }),
  ),
  {
    name: 'a rating scale from -1e308 to 1e308',
    path: '/api/v1/score-configs',
    body: { name: 'huge', usage: 'stars', min: -1e308, max: 1e308 },
    status: 400,
    code: 'invalid_request',
    field: 'min',
  },
  // Admin, registry, experiments.
  {
    name: 'NUL in a score config description',
    path: '/api/v1/score-configs',
    body: { name: 'clarity', usage: 'criterion', min: 1, max: 5, description: nul },
    status: 400,
    code: 'invalid_request',
    field: 'description',
  },
  {
    name: 'NUL in a model base',
    path: '/api/v1/models',
    body: { name: 'm1', baseModel: nul },
    status: 400,
    code: 'invalid_request',
    field: 'baseModel',
  },
  {
    name: 'model metrics nested 5,000 levels',
    path: '/api/v1/models',
    body: `{"name":"m2","baseModel":"b","metrics":${deepJson(5000, 'm')}}`,
    status: 400,
    code: 'invalid_request',
    field: /^metrics\.m\.m/,
  },
  {
    name: 'NUL in a route variant',
    path: '/api/v1/routes/r1',
    method: 'PUT',
    body: { variants: [{ name: nul, upstream: 'u', model: 'm', weight: 1 }] },
    status: 400,
    code: 'invalid_request',
    field: 'variants.0.name',
  },
  {
    name: 'route variant weights of 1e308 (their sum is Infinity)',
    path: '/api/v1/routes/r1',
    method: 'PUT',
    body: { variants: [{ name: 'a', upstream: 'u', model: 'm', weight: 1e308 }] },
    status: 400,
    code: 'invalid_request',
    field: 'variants.0.weight',
  },
  {
    name: 'experiment variant weight of 1e308',
    path: '/api/v1/experiments',
    body: {
      name: 'e1',
      route: 'r2',
      control: 'a',
      variants: [
        { name: 'a', weight: 1, upstreamModel: 'x' },
        { name: 'b', weight: 1e308, upstreamModel: 'y' },
      ],
    },
    status: 400,
    code: 'invalid_request',
    field: 'variants.1.weight',
  },
  // Dataset build specs: custom PII patterns are checked before they run.
  ...(
    [
      ['a backreference', '(a)\\1'],
      ['a lookbehind', '(?<=a)b'],
      ['a lookahead', 'a(?=b)'],
      ['a syntax error', '(unclosed'],
    ] as const
  ).map(
    ([what, pattern]): BadInput => ({
      name: `a custom PII pattern with ${what}`,
      path: '/api/v1/datasets',
      body: { name: 'pii-x', method: 'sft', curation: { pii: { config: { custom: { acct: pattern } } } } },
      status: 400,
      code: 'invalid_request',
      field: 'curation.pii.config.custom.acct',
    }),
  ),
  {
    name: 'NUL in a dataset build option',
    path: '/api/v1/datasets',
    body: { name: 'opt', method: 'sft', options: { note: nul } },
    status: 400,
    code: 'invalid_request',
    field: 'options.note',
  },
  // The annotation queue: the queue sets who rated and what; decisions name a kind and a label.
  {
    name: 'an annotation claim under an unknown policy',
    path: '/api/v1/annotation/claim',
    body: { policy: 'no-such-policy' },
    status: 400,
    code: 'invalid_request',
    field: 'policy',
  },
  {
    name: "an annotator named like a key (someone else's identity)",
    path: '/api/v1/annotation/claim',
    body: { annotator: 'api:abc' },
    status: 400,
    code: 'invalid_request',
    field: 'annotator',
  },
  {
    name: 'an annotation submit that sets its own rater',
    path: '/api/v1/annotation/submit',
    body: { interactionId: 'i1', items: [{ kind: 'thumbs', value: 'up', raterId: 'someone-else' }] },
    status: 400,
    code: 'invalid_request',
    field: 'items.0.raterId',
  },
  {
    name: 'an annotation submit with a bad label',
    path: '/api/v1/annotation/submit',
    body: { interactionId: 'i1', items: [{ kind: 'thumbs', value: 'sideways' }] },
    status: 400,
    code: 'invalid_request',
    field: 'items.0.value',
  },
  {
    name: 'an annotation submit with no items',
    path: '/api/v1/annotation/submit',
    body: { interactionId: 'i1', items: [] },
    status: 400,
    code: 'invalid_request',
    field: 'items',
  },
  {
    name: 'an annotation submit on an unknown interaction',
    path: '/api/v1/annotation/submit',
    body: { interactionId: 'nope', items: [{ kind: 'thumbs', value: 'up' }] },
    status: 404,
    code: 'not_found',
    field: 'interactionId',
  },
  {
    name: 'an annotation submit on an item nobody claimed',
    path: '/api/v1/annotation/submit',
    body: { interactionId: 'i1', items: [{ kind: 'thumbs', value: 'up' }] },
    status: 409,
    code: 'conflict',
    field: 'interactionId',
  },
  {
    name: 'NUL in an annotation skip',
    path: '/api/v1/annotation/skip',
    body: { interactionId: nul },
    status: 400,
    code: 'invalid_request',
    field: 'interactionId',
  },
  {
    name: 'an adjudication of a kind the queue does not compare',
    path: '/api/v1/annotation/adjudications',
    body: { interactionId: 'i1', kind: 'comment', value: 'x' },
    status: 400,
    code: 'invalid_request',
    field: 'kind',
  },
  {
    name: 'an adjudication with stars that are not a number',
    path: '/api/v1/annotation/adjudications',
    body: { interactionId: 'i1', kind: 'stars', value: 'five' },
    status: 400,
    code: 'invalid_request',
    field: 'value',
  },
  {
    name: 'an adjudication of an item nobody disagrees on',
    path: '/api/v1/annotation/adjudications',
    body: { interactionId: 'i1', kind: 'stars', value: 5 },
    status: 409,
    code: 'conflict',
    field: 'interactionId',
  },
  {
    name: 'a disagreements filter that is not true or false',
    path: '/api/v1/annotation/disagreements?open=maybe',
    status: 400,
    code: 'invalid_request',
    field: 'open',
  },
  // The gateway's Responses API (native to an upstream that speaks it): the fields it reads.
  ...(
    [
      ['a number as previous_response_id', { previous_response_id: 42 }, 'previous_response_id'],
      ['a NUL in previous_response_id', { previous_response_id: nul }, 'previous_response_id'],
      [
        'a previous_response_id of 201 characters',
        { previous_response_id: 'r'.repeat(201) },
        'previous_response_id',
      ],
      ['store that is not a boolean', { store: 'yes' }, 'store'],
      ['a function tool without a name', { tools: [{ type: 'function' }] }, 'tools.0.type'],
      ['a tool type of 101 characters', { tools: [{ type: 't'.repeat(101) }] }, 'tools.0.type'],
      ['an input item of an unknown role', { input: [{ role: 'robot', content: 'hi' }] }, 'input'],
      [
        'a function call item without a call id',
        { input: [{ type: 'function_call', name: 'f', arguments: '{}' }] },
        'input',
      ],
    ] as const
  ).map(
    ([name, fields, field]): BadInput => ({
      name: `Responses: ${name}`,
      path: '/v1/responses',
      body: { model: 'gpt-test', input: 'hi', ...fields },
      status: 400,
      code: 'invalid_request',
      field,
    }),
  ),
  // The framework's own errors and limits.
  {
    name: 'a URL of 9,000 characters',
    path: `/api/v1/interactions?model=${'a'.repeat(9000)}`,
    status: 414,
    code: 'uri_too_long',
    field: 'url',
  },
  {
    name: 'a path parameter longer than the router takes',
    path: `/api/v1/datasets/${'a'.repeat(1500)}`,
    status: 414,
    code: 'uri_too_long',
    field: 'url',
  },
  {
    name: 'a path parameter longer than its schema',
    path: `/api/v1/datasets/${'a'.repeat(500)}`,
    status: 400,
    code: 'invalid_request',
    field: 'ref',
  },
  {
    name: 'a body over the limit',
    path: '/api/v1/interactions',
    body: interaction({ output: 'x'.repeat(300_000) }),
    status: 413,
    code: 'payload_too_large',
    field: 'body',
  },
  {
    name: 'a body that is not JSON',
    path: '/api/v1/interactions',
    body: '{"model":',
    status: 400,
    code: 'invalid_request',
    field: 'body',
  },
  {
    name: 'an empty JSON body',
    path: '/api/v1/interactions',
    body: '',
    headers: { 'content-type': 'application/json' },
    status: 400,
    code: 'invalid_request',
    field: 'body',
  },
  {
    name: 'a body that is not JSON by content type',
    path: '/api/v1/interactions',
    body: 'model=m',
    headers: { 'content-type': 'text/plain' },
    status: 415,
    code: 'unsupported_media_type',
    field: 'body',
  },
  // People: sign-in and members.
  {
    name: 'sign-in without an email',
    path: '/api/v1/session',
    body: { password: 'whatever password' },
    status: 400,
    code: 'invalid_request',
    field: 'email',
  },
  {
    name: 'sign-in with NUL in the email',
    path: '/api/v1/session',
    body: { email: `a${nul}@example.com`, password: 'whatever password' },
    status: 400,
    code: 'invalid_request',
    field: 'email',
  },
  {
    name: 'sign-in with an over-long password',
    path: '/api/v1/session',
    body: { email: 'a@example.com', password: 'x'.repeat(1025) },
    status: 400,
    code: 'invalid_request',
    field: 'password',
  },
  {
    name: 'sign-in with a wrong password',
    path: '/api/v1/session',
    body: { email: 'nobody@example.com', password: 'whatever password' },
    status: 401,
    code: 'unauthorized',
    field: 'password',
  },
  {
    name: 'a member with an unknown role',
    path: '/api/v1/members',
    body: { email: 'new@example.com', role: 'superuser' },
    status: 400,
    code: 'invalid_request',
    field: 'role',
  },
  {
    name: 'a member with a malformed email',
    path: '/api/v1/members',
    body: { email: 'not-an-email', role: 'viewer' },
    status: 400,
    code: 'invalid_request',
    field: 'email',
  },
  {
    name: 'a member with a short password',
    path: '/api/v1/members',
    body: { email: 'new@example.com', role: 'viewer', password: 'short' },
    status: 400,
    code: 'invalid_request',
    field: 'password',
  },
  {
    name: 'a member added with a key, not by a signed-in owner',
    path: '/api/v1/members',
    body: { email: 'new@example.com', role: 'owner' },
    status: 403,
    code: 'forbidden',
    field: 'authorization',
  },
  {
    name: 'a role change to an unknown role',
    path: '/api/v1/members/someone',
    method: 'PUT',
    body: { role: 'root' },
    status: 400,
    code: 'invalid_request',
    field: 'role',
  },
  {
    name: 'an over-long member id',
    path: `/api/v1/members/${'u'.repeat(101)}`,
    method: 'DELETE',
    status: 400,
    code: 'invalid_request',
    field: 'userId',
  },
  {
    name: 'an SSO callback where SSO is not configured',
    path: '/api/v1/auth/oidc/callback?code=x&state=y',
    status: 404,
    code: 'not_found',
    field: 'sso',
  },
  {
    name: 'a prototype-poisoning body',
    path: '/api/v1/interactions',
    body: '{"model":"m","__proto__":{"admin":true}}',
    status: 400,
    code: 'invalid_request',
    field: 'body',
  },
  {
    name: 'a method the path does not take',
    path: '/api/v1/feedback',
    method: 'DELETE',
    status: 405,
    code: 'method_not_allowed',
    field: 'method',
  },
  {
    name: 'GET on a POST-only path',
    path: '/api/v1/feedback',
    method: 'GET',
    status: 405,
    code: 'method_not_allowed',
    field: 'method',
  },
  {
    name: 'a malformed percent escape in the path',
    path: '/api/v1/datasets/%E0%A4%A',
    status: 400,
    code: 'invalid_request',
    field: 'url',
  },
];

/** Rows in every table of the store: what "nothing was written" is checked against. */
async function rowCounts(store: Store): Promise<Record<string, number>> {
  // The shared rate limiter's windows (PostgreSQL) count every authenticated call, good or bad,
  // and gain a row whenever a new window starts: bookkeeping of the clock, not data an input wrote.
  const tables = (await store.db.introspection.getTables())
    .map((t) => t.name)
    .filter((name) => name !== 'rate_limit_windows')
    .sort();
  const counts: Record<string, number> = {};
  for (const table of tables) {
    const row = await sql<{ n: number | string }>`select count(*) as n from ${sql.table(table)}`.execute(
      store.db,
    );
    counts[table] = Number(row.rows[0]!.n);
  }
  return counts;
}

function expectOneErrorShape(body: unknown): void {
  expect(Object.keys(body as object)).toEqual(['error']);
  const error = (body as { error: Record<string, unknown> }).error;
  for (const key of Object.keys(error)) expect(['code', 'message', 'path']).toContain(key);
  expect(typeof error.code).toBe('string');
  expect(typeof error.message).toBe('string');
}

for (const target of testDatabases()) {
  describe(`every bad input is a 4xx that names it (${target.name})`, () => {
    let t: TestServer;

    beforeAll(async () => {
      t = await startTestServer(await target.create(), {
        config: { dataDir: mkdtempSync(join(tmpdir(), 'ratchet-bad-input-')), bodyLimit: 256 * 1024 },
        // An upstream that speaks the Responses API, never reached: every bad input stops before it.
        gateway: {
          upstreams: { openai: { provider: 'openai', baseURL: 'http://127.0.0.1:9/v1' } },
          routes: {},
          defaultUpstream: 'openai',
        },
      });
      const items = Array.from({ length: 12 }, (_, i) => ({
        id: `i${i}`,
        model: 'm',
        messages: [{ role: 'user', content: `question ${i % 4}` }],
        output: `answer ${i}`,
      }));
      expect((await t.call('/api/v1/interactions', { body: { items } })).status).toBe(201);
      const feedback = items.flatMap((it, i) =>
        ['a', 'b', 'c'].map((r) => ({
          kind: 'stars',
          interactionId: it.id,
          raterId: r,
          value: i % 2 ? 5 : 1,
        })),
      );
      expect((await t.call('/api/v1/feedback', { body: { items: feedback } })).status).toBe(201);
      expect((await t.call('/api/v1/calibrations', { body: {} })).status).toBe(201);
      const built = await t.call('/api/v1/datasets', {
        body: {
          name: 'base',
          method: 'kto',
          curation: false,
          options: { split: { by: 'prompt', testFraction: 0 } },
        },
      });
      expect(built.status).toBe(201);
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await target.cleanup();
    });

    it.each(cases)('$name', async (c) => {
      const before = await rowCounts(t.store);
      const res = await t.call(c.path, {
        method: c.method ?? (c.body === undefined ? 'GET' : 'POST'),
        ...(c.body === undefined ? {} : { body: c.body }),
        ...(c.headers ? { headers: c.headers } : {}),
        ...(c.key === 'public' ? { key: t.publicKey } : {}),
      });
      expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status: c.status, code: c.code });
      expectOneErrorShape(res.body);
      expect(res.body.error.path).toMatch(
        typeof c.field === 'string' ? new RegExp(`^${escapeRegExp(c.field)}$`) : c.field,
      );
      // The message names the field too, for people reading a log line.
      expect(res.body.error.message).toContain(String(res.body.error.path).slice(0, 40));
      expect(await rowCounts(t.store)).toEqual(before);
    });

    it('deep JSON is refused at MAX_JSON_DEPTH, not before', async () => {
      const ok = await t.call('/api/v1/interactions', {
        body: `{"model":"m","messages":[{"role":"user","content":"x"}],"output":"y","parameters":${deepJson(MAX_JSON_DEPTH - 1)}}`,
      });
      expect(ok.status).toBe(201);
      const tooDeep = await t.call('/api/v1/interactions', {
        body: `{"model":"m","messages":[{"role":"user","content":"x"}],"output":"y","parameters":${deepJson(MAX_JSON_DEPTH)}}`,
      });
      expect(tooDeep.status).toBe(400);
    });

    it('a 405 says which methods the path takes', async () => {
      const res = await t.call('/api/v1/feedback', { method: 'PUT', body: {} });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('POST');
    });

    it('headers larger than Node accepts are a 431 in the one error shape', async () => {
      // fetch cannot send this much header; a raw request shows exactly what a client receives.
      const { status, body } = await rawRequest(t.url, { 'x-big': 'a'.repeat(20_000) });
      expect(status).toBe(431);
      expect(JSON.parse(body)).toEqual({
        error: { code: 'headers_too_large', message: expect.stringContaining('headers'), path: 'headers' },
      });
    });

    it('a request Node cannot parse is a 400 in the one error shape', async () => {
      const answer = await rawSocket(
        t.url,
        'POST /api/v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
      );
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual({
        error: { code: 'invalid_request', message: expect.stringContaining('not valid HTTP') },
      });
    });

    it('calibration priors at the edge of what is accepted give finite results, not a 500', async () => {
      for (const calibration of [
        { priors: { itemSd: 1e6, biasSd: 1e6, scaleSd: 1e6, itemMean: 1e6 } },
        { priors: { itemSd: 1e-6, biasSd: 1e-6, scaleSd: 1e-6, itemMean: -1e6 } },
        { minNoiseSd: 1e3, noisePriorStrength: 1e6, tolerance: 1e-12, maxIterations: 10_000 },
      ]) {
        const res = await t.call('/api/v1/calibrations', { body: { calibration } });
        expect({ calibration, status: res.status }).toEqual({ calibration, status: 201 });
        const rated = await t.call('/api/v1/interactions/i1');
        expect(Number.isFinite(rated.body.reward.reward)).toBe(true);
      }
    }, 60_000);
  });
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function rawSocket(url: string, request: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = connect(Number(port), hostname, () => socket.write(request));
    socket.on('data', (c: Buffer) => {
      answer += c.toString('utf8');
    });
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
  });
}

function rawRequest(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/api/v1/project`, { headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c.toString('utf8');
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
