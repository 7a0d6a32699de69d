import { sqliteTestDatabase } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './testing/server.js';

/** Every `$ref` string in a JSON value. */
function refs(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(refs);
  if (!value || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => (k === '$ref' && typeof v === 'string' ? [v] : refs(v)));
}

/** Follows a local JSON pointer (`#/a/b`) through the document. */
function resolvePointer(document: unknown, ref: string): unknown {
  return ref
    .slice(2)
    .split('/')
    .reduce<unknown>((node, part) => (node as Record<string, unknown> | undefined)?.[part], document);
}

// The document is built from the route table alone; the database does not change it.
describe('the OpenAPI document generated from the route table', () => {
  const database = sqliteTestDatabase();
  let t: TestServer;
  // biome-ignore lint/suspicious/noExplicitAny: the document is arbitrary JSON
  let spec: any;

  beforeAll(async () => {
    t = await startTestServer(await database.create());
    spec = (await t.call('/openapi.json', { key: null })).body;
  });
  afterAll(async () => {
    await t?.close();
    await database.cleanup();
  });

  it('resolves every reference inside the document (recursive schemas such as OTLP values included)', () => {
    const all = refs(spec.paths);
    // The OTLP attribute value is recursive: zod emits it as a definition the body refers to.
    expect(refs(spec.paths['/v1/traces'].post.requestBody).length).toBeGreaterThan(0);
    for (const ref of all) {
      expect(ref, ref).toMatch(/^#\/components\/schemas\//);
      expect(resolvePointer(spec, ref), ref).toBeTypeOf('object');
    }
    // References inside the moved definitions resolve too.
    for (const ref of refs(spec.components.schemas))
      expect(resolvePointer(spec, ref), ref).toBeTypeOf('object');
  });

  it('lists every success status a handler answers with: 200 for an idempotent repeat beside 201', () => {
    for (const path of ['/api/v1/interactions', '/api/v1/feedback']) {
      const responses = spec.paths[path].post.responses;
      expect(Object.keys(responses).sort(), path).toEqual(['200', '201', '4XX']);
      expect(responses['200'].content, path).toEqual(responses['201'].content);
    }
    expect(Object.keys(spec.paths['/api/v1/evaluations'].post.responses).sort()).toEqual([
      '200',
      '202',
      '4XX',
    ]);
  });

  it('answers an idempotent repeat with the 200 the document lists', async () => {
    const interaction = {
      id: 'repeat-1',
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      output: 'hello',
    };
    expect((await t.call('/api/v1/interactions', { body: interaction })).status).toBe(201);
    const repeat = await t.call('/api/v1/interactions', { body: interaction });
    expect(repeat).toMatchObject({ status: 200, body: { id: 'repeat-1', created: false } });
  });

  it('documents the score-config body it enforces, and names the body when it is missing', async () => {
    const body = spec.paths['/api/v1/score-configs'].post.requestBody.content['application/json'].schema;
    expect(body.required).toEqual(expect.arrayContaining(['name', 'usage']));
    const missing = await t.call('/api/v1/score-configs', { method: 'POST' });
    expect(missing).toMatchObject({
      status: 400,
      body: { error: { code: 'invalid_request', path: 'body' } },
    });
    const bad = await t.call('/api/v1/score-configs', {
      body: { name: 'Bad Name', usage: 'stars', min: 1, max: 5 },
    });
    expect(bad).toMatchObject({ status: 400, body: { error: { path: 'name' } } });
    const ok = await t.call('/api/v1/score-configs', {
      body: { name: 'nps', usage: 'stars', min: 0, max: 10 },
    });
    expect(ok).toMatchObject({ status: 201, body: { name: 'nps', min: 0, max: 10 } });
  });

  it('says which key scopes each operation takes: public ones take a public key, none need no key', () => {
    const access = (path: string, method: string) => spec.paths[path][method]['x-ratchet-access'];
    expect(access('/api/v1/feedback', 'post')).toEqual(['ingest', 'public']);
    expect(access('/api/v1/interactions', 'post')).toEqual(['ingest']);
    expect(access('/api/v1/interactions', 'get')).toEqual(['read']);
    expect(access('/api/v1/models/{ref}/stage', 'post')).toEqual(['admin']);
    expect(access('/healthz', 'get')).toBe('none');
    expect(spec.paths['/healthz'].get.security).toEqual([]);
  });
});
