import { connect, createServer, type Server, type Socket } from 'node:net';
import { REPLACEMENT_CHARACTER, TRUNCATED_MARKER } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { testDatabases } from '@ratchet/store/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../testing/server.js';
import { type LocalUpstream, startLocalUpstream } from '../testing/upstream.js';

const DEPTH = 20_000;

/** A chat body with a parameter nested `DEPTH` levels deep, as raw JSON text (JSON.stringify cannot write it). */
function deepBody(model: string): string {
  const deep = `${'{"a":'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}`;
  return `{"model":${JSON.stringify(model)},"messages":[{"role":"user","content":"deep one"}],"deep_param":${deep}}`;
}

interface Caller {
  name: string;
  key: string;
}

async function chat(
  t: TestServer,
  caller: Caller,
  body: string | Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<{ status: number; id: string | null; json: unknown }> {
  const res = await fetch(`${t.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${caller.key}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, id: res.headers.get('x-ratchet-interaction-id'), json: JSON.parse(text) };
}

function normalCall(i: number, user?: string) {
  return {
    model: 'gpt-local',
    messages: [{ role: 'user', content: `normal call ${i}` }],
    ...(user ? { user } : {}),
  };
}

async function metricValue(t: TestServer, line: string): Promise<number> {
  const text = (await t.call('/metrics', { key: null })).body as string;
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found ? Number(found.split(' ')[1]) : 0;
}

/** A second project with its own secret key, calling through the same gateway. */
async function secondProject(t: TestServer, name: string): Promise<Caller> {
  const project = await t.store.projects.create(name);
  const { key } = await t.store.projects.createKey(project.id, 'secret');
  return { name, key };
}

for (const target of testDatabases()) {
  describe(`gateway log on ${target.name}: poison calls cannot stop logging`, () => {
    let upstream: LocalUpstream;
    let t: TestServer;
    let a: Caller;
    let b: Caller;

    beforeAll(async () => {
      upstream = await startLocalUpstream({ record: false });
      t = await startTestServer(await target.create(), {
        // Everything stays buffered until something flushes it: the poison shares a batch with the rest.
        config: { logFlushIntervalMs: 60_000, logFlushBatchSize: 10_000 },
        gateway: { upstreams: { local: { baseURL: upstream.url } }, routes: {}, defaultUpstream: 'local' },
      });
      a = { name: 'project a', key: t.secretKey };
      b = await secondProject(t, 'project-b');
    });
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await target.cleanup();
    });

    it('answers and logs a deep call and a NUL call, and every normal call from two projects after them is stored and rateable', async () => {
      const deep = await chat(t, a, deepBody('gpt-local'));
      expect(deep.status).toBe(200);
      expect(deep.json).toMatchObject({ choices: [{ message: { content: 'You said: deep one' } }] });
      const nul = await chat(t, b, {
        model: 'gpt-local',
        messages: [{ role: 'user', content: 'hello\u0000world' }],
      });
      expect(nul.status).toBe(200);
      const normal: { caller: Caller; id: string }[] = [];
      for (let i = 0; i < 12; i++) {
        const caller = i % 2 ? b : a;
        const res = await chat(t, caller, normalCall(i, `user-${i}`));
        expect(res.status).toBe(200);
        normal.push({ caller, id: res.id! });
      }
      // All of them are in one buffered batch with the two poison calls; the first feedback flushes it.
      expect(t.server.logWriter.depth).toBe(14);

      for (const { caller, id } of normal) {
        const fb = await t.call('/api/v1/feedback', {
          key: caller.key,
          body: { kind: 'thumbs', interactionId: id, value: 'up' },
        });
        expect(fb.status, `feedback on ${id}`).toBe(201);
        const got = await t.call(`/api/v1/interactions/${id}`, { key: caller.key });
        expect(got.status).toBe(200);
        expect(got.body.metadata.ratchet_repaired).toBeUndefined();
      }
      expect(t.server.logWriter.depth).toBe(0);

      // The poison calls: each a dead letter with its reason, and a repaired copy that is stored and rateable.
      const lettersA = await t.call('/api/v1/dead-letters', { key: a.key });
      expect(lettersA.status).toBe(200);
      expect(lettersA.body.countsByReason).toEqual({ too_deep: 1 });
      const deepLetter = lettersA.body.items[0];
      expect(deepLetter).toMatchObject({
        interactionId: deep.id,
        source: 'gateway',
        reason: 'too_deep',
        repaired: true,
        // A page shows a preview of each payload ...
        payloadTruncated: true,
      });
      expect(deepLetter.payload).toHaveLength(2000);
      expect(deepLetter.error).toContain('parameters.deep_param.a.a');
      // ... and the letter itself has the original whole: 20,000 levels of it.
      const whole = await t.call(`/api/v1/dead-letters/${deepLetter.id}`, { key: a.key });
      expect(whole.body).toMatchObject({ interactionId: deep.id, payloadTruncated: false });
      expect(whole.body.payload).toContain('{"a":'.repeat(DEPTH));
      expect((await t.call(`/api/v1/dead-letters/${deepLetter.id}`, { key: b.key })).status).toBe(404);

      const lettersB = await t.call('/api/v1/dead-letters', { key: b.key });
      expect(lettersB.body.countsByReason).toEqual({ nul_character: 1 });
      expect(lettersB.body.items[0]).toMatchObject({
        interactionId: nul.id,
        reason: 'nul_character',
        repaired: true,
      });
      expect(lettersB.body.items[0].error).toMatch(/^messages\.0\.content: contains a NUL/);
      expect(JSON.parse(lettersB.body.items[0].payload).messages[0].content).toBe('hello\u0000world');

      const deepCopy = await t.call(`/api/v1/interactions/${deep.id}`, { key: a.key });
      expect(deepCopy.status).toBe(200);
      const repairedPath: string = deepCopy.body.metadata.ratchet_repaired[0];
      expect(repairedPath.startsWith('parameters.deep_param.a.a.a')).toBe(true);
      let p: unknown = deepCopy.body.parameters.deep_param;
      let levels = 0;
      while (typeof p === 'object' && p !== null) {
        p = (p as { a: unknown }).a;
        levels++;
      }
      // The parameters column nests at most 64 levels; what was below is replaced by a marker.
      expect(p).toBe(TRUNCATED_MARKER);
      expect(levels).toBe(63);

      const nulCopy = await t.call(`/api/v1/interactions/${nul.id}`, { key: b.key });
      expect(nulCopy.body.messages[0].content).toBe(`hello${REPLACEMENT_CHARACTER}world`);
      expect(nulCopy.body.output.content).toBe(`You said: hello${REPLACEMENT_CHARACTER}world`);
      expect(nulCopy.body.metadata.ratchet_repaired).toEqual(['messages.0.content', 'output.content']);
      for (const [caller, id] of [
        [a, deep.id],
        [b, nul.id],
      ] as const) {
        const fb = await t.call('/api/v1/feedback', {
          key: caller.key,
          body: { kind: 'thumbs', interactionId: id, value: 'down' },
        });
        expect(fb.status).toBe(201);
      }

      expect(await metricValue(t, 'ratchet_gateway_dead_letters_total{reason="too_deep"}')).toBe(1);
      expect(await metricValue(t, 'ratchet_gateway_dead_letters_total{reason="nul_character"}')).toBe(1);
    });

    it('answers deep bodies wherever the depth is (a streamed call, a content part, a message field) and stores each repaired', async () => {
      const deep = `${'['.repeat(DEPTH)}1${']'.repeat(DEPTH)}`;
      const bodies = [
        `{"model":"gpt-local","stream":true,"messages":[{"role":"user","content":"streamed deep"}],"deep_param":${deep}}`,
        `{"model":"gpt-local","messages":[{"role":"user","content":[{"type":"text","text":"part","extra":${deep}}]}]}`,
        `{"model":"gpt-local","messages":[{"role":"user","content":"field","extra":${deep}}]}`,
      ];
      const ids: string[] = [];
      for (const body of bodies) {
        const res = await fetch(`${t.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json' },
          body,
        });
        expect(res.status, body.slice(0, 60)).toBe(200);
        await res.text();
        ids.push(res.headers.get('x-ratchet-interaction-id')!);
      }
      await t.server.logWriter.flush();
      const [streamed, part, field] = await Promise.all(
        ids.map(async (id) => (await t.call(`/api/v1/interactions/${id}`, { key: a.key })).body),
      );
      expect(streamed.output.content).toBe('You said: streamed deep');
      expect(streamed.metadata.ratchet_repaired[0]).toMatch(/^parameters\.deep_param\.0\.0/);
      expect(part.metadata.ratchet_repaired[0]).toMatch(/^messages\.0\.content\.0\.extra\.0/);
      expect(field.metadata.ratchet_repaired[0]).toMatch(/^messages\.0\.extra\.0/);
      const letters = await t.call('/api/v1/dead-letters?limit=3', { key: a.key });
      expect(letters.body.items.map((d: { interactionId: string }) => d.interactionId).sort()).toEqual(
        [...ids].sort(),
      );
    });

    it('isolates the one item a database constraint refuses: it is dead-lettered with the error, all others stored', async () => {
      // A real refusal the storable rule cannot foresee: the database itself says no to one row.
      if (target.name === 'postgres')
        await sql`alter table interactions add constraint refuse_one check (user_id is null or user_id <> 'refused-by-db')`.execute(
          t.store.db,
        );
      else
        await sql`create trigger refuse_one before insert on interactions when new.user_id = 'refused-by-db'
                  begin select raise(abort, 'refused by the test trigger refuse_one'); end`.execute(
          t.store.db,
        );
      try {
        const ids: { caller: Caller; id: string }[] = [];
        let refused = '';
        for (let i = 0; i < 16; i++) {
          const caller = i % 2 ? b : a;
          const user = i === 9 ? 'refused-by-db' : `other-${i}`;
          const res = await chat(t, caller, normalCall(100 + i, user));
          expect(res.status).toBe(200);
          if (i === 9) refused = res.id!;
          else ids.push({ caller, id: res.id! });
        }
        const failuresBefore = await metricValue(t, 'ratchet_gateway_log_write_failures_total');
        await t.server.logWriter.flush();
        expect(t.server.logWriter.depth).toBe(0);
        for (const { caller, id } of ids) {
          const got = await t.call(`/api/v1/interactions/${id}`, { key: caller.key });
          expect(got.status, id).toBe(200);
        }
        expect((await t.call(`/api/v1/interactions/${refused}`, { key: b.key })).status).toBe(404);
        const letters = await t.call('/api/v1/dead-letters?limit=1', { key: b.key });
        expect(letters.body.items[0]).toMatchObject({
          interactionId: refused,
          reason: 'write_failed',
          repaired: false,
        });
        expect(letters.body.items[0].error).toContain('refuse_one');
        expect(JSON.parse(letters.body.items[0].payload)).toMatchObject({
          id: refused,
          userId: 'refused-by-db',
        });
        expect(letters.body.nextCursor).not.toBeNull();
        // A refused item is not a database failure: nothing was put back for a retry.
        expect(await metricValue(t, 'ratchet_gateway_log_write_failures_total')).toBe(failuresBefore);
        expect(await metricValue(t, 'ratchet_gateway_dead_letters_total{reason="write_failed"}')).toBe(1);
      } finally {
        if (target.name === 'postgres')
          await sql`alter table interactions drop constraint refuse_one`.execute(t.store.db);
        else await sql`drop trigger refuse_one`.execute(t.store.db);
      }
    });

    it('lists dead letters in the OpenAPI document, and refuses a bad page request with a 400 naming the field', async () => {
      const spec = await t.call('/openapi.json', { key: null });
      expect(spec.body.paths['/api/v1/dead-letters'].get.responses['200']).toBeDefined();
      const forged = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
      for (const [query, field] of [
        ['limit=0', 'limit'],
        ['limit=abc', 'limit'],
        ['cursor=nonsense', 'cursor'],
        [`cursor=${forged([1e300, 'x'])}`, 'cursor'],
        [`cursor=${forged([1, 'a\u0000'])}`, 'cursor'],
        ['unknown=1', 'unknown'],
        ['limit=101', 'limit'],
      ]) {
        const res = await t.call(`/api/v1/dead-letters?${query}`, { key: a.key });
        expect(res.status, query).toBe(400);
        expect(res.body.error.path ?? '', query).toBe(field);
      }
      expect((await t.call('/api/v1/dead-letters', { key: t.publicKey })).status).toBe(403);
      const badId = await t.call('/api/v1/dead-letters/a%00b', { key: a.key });
      expect(badId).toMatchObject({ status: 400, body: { error: { path: 'id' } } });
    });

    it('refuses bad x-ratchet-* headers with a 400 naming the header, before the upstream is called', async () => {
      const cases: [Record<string, string>, string][] = [
        [{ 'x-ratchet-user-id': 'u'.repeat(201) }, 'x-ratchet-user-id'],
        [{ 'x-ratchet-session-id': 's'.repeat(201) }, 'x-ratchet-session-id'],
        [{ 'x-ratchet-tags': Array.from({ length: 51 }, (_, i) => `t${i}`).join(',') }, 'x-ratchet-tags'],
        [{ 'x-ratchet-tags': 'x'.repeat(101) }, 'x-ratchet-tags.0'],
        [{ 'x-ratchet-metadata': '{"note":"a\\u0000b"}' }, 'x-ratchet-metadata.note'],
        [{ 'x-ratchet-metadata': '{"note":"a\\ud800b"}' }, 'x-ratchet-metadata.note'],
        [{ 'x-ratchet-metadata': `${'{"a":'.repeat(100)}1${'}'.repeat(100)}` }, 'x-ratchet-metadata.a'],
        [{ 'x-ratchet-metadata': `{"${'k'.repeat(201)}":1}` }, 'x-ratchet-metadata'],
        [{ 'x-ratchet-metadata': '[1]' }, 'x-ratchet-metadata'],
        [{ 'x-ratchet-segment': 'x'.repeat(200) }, 'x-ratchet-segment'],
      ];
      const upstreamCalls = await metricValue(t, 'ratchet_interactions_written_total{source="gateway"}');
      const depth = t.server.logWriter.depth;
      for (const [headers, path] of cases) {
        const res = await chat(t, a, normalCall(0), headers);
        expect(res.status, JSON.stringify(headers).slice(0, 80)).toBe(400);
        expect((res.json as { error: { path: string } }).error.path.startsWith(path), path).toBe(true);
        expect(res.id).toBeNull();
      }
      expect(t.server.logWriter.depth).toBe(depth);
      await t.server.logWriter.flush();
      expect(await metricValue(t, 'ratchet_interactions_written_total{source="gateway"}')).toBe(
        upstreamCalls + depth,
      );
    });
  });

  describe(`gateway log on ${target.name}: bounded buffer and shutdown`, () => {
    let upstream: LocalUpstream;
    let t: TestServer;

    beforeAll(async () => {
      upstream = await startLocalUpstream({ record: false });
      t = await startTestServer(await target.create(), {
        config: { logFlushIntervalMs: 60_000, logFlushBatchSize: 10_000, logBufferLimit: 5 },
        gateway: { upstreams: { local: { baseURL: upstream.url } }, routes: {}, defaultUpstream: 'local' },
      });
    });
    afterAll(async () => {
      await t?.close();
      await upstream?.close();
      await target.cleanup();
    });

    it('when the buffer is full drops the oldest entries, counts them, and still answers every call', async () => {
      const me = { name: 'a', key: t.secretKey };
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) {
        const res = await chat(t, me, normalCall(i));
        expect(res.status).toBe(200);
        ids.push(res.id!);
      }
      expect(t.server.logWriter.depth).toBe(5);
      expect(await metricValue(t, 'ratchet_gateway_log_dropped_total{reason="buffer_full"}')).toBe(3);
      expect(ids.slice(0, 3).some((id) => t.server.logWriter.has(t.projectId, id))).toBe(false);
      await t.server.logWriter.flush();
      for (const [i, id] of ids.entries())
        expect((await t.call(`/api/v1/interactions/${id}`)).status, `call ${i}`).toBe(i < 3 ? 404 : 200);
    });

    it('close() leaves nothing unwritten: normal calls stored, poison calls dead-lettered with repaired copies', async () => {
      const me = { name: 'a', key: t.secretKey };
      const ids = [
        (await chat(t, me, normalCall(1))).id!,
        (await chat(t, me, deepBody('gpt-local'))).id!,
        (await chat(t, me, { model: 'gpt-local', messages: [{ role: 'user', content: 'x\u0000' }] })).id!,
        (await chat(t, me, normalCall(2))).id!,
      ];
      expect(t.server.logWriter.depth).toBe(4);
      await t.server.logWriter.close();
      expect(t.server.logWriter.depth).toBe(0);
      const stored = await t.store.interactions.getMany(t.projectId, ids);
      expect(stored.map((s) => s.id).sort()).toEqual([...ids].sort());
      const letters = await t.store.deadLetters.list(t.projectId);
      expect(letters.items.map((d) => [d.interactionId, d.reason, d.repaired])).toEqual([
        [ids[2], 'nul_character', true],
        [ids[1], 'too_deep', true],
      ]);
      expect(await metricValue(t, 'ratchet_gateway_log_dropped_total{reason="shutdown"}')).toBe(0);
      // A stream that ends after shutdown logs into a closed writer: counted, not a crash.
      const late = {
        id: 'late',
        model: 'm',
        messages: [],
        output: { role: 'assistant' as const, content: '' },
      };
      expect(() =>
        t.server.logWriter.enqueue(t.projectId, { ...late, status: 'ok', source: 'gateway' }),
      ).not.toThrow();
      expect(await metricValue(t, 'ratchet_gateway_log_dropped_total{reason="shutdown"}')).toBe(1);
    });
  });
}

/** A TCP proxy to PostgreSQL that the test can cut and restore: the database really becomes unreachable. */
async function startProxy(target: { host: string; port: number }) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve) => {
      server = createServer((client) => {
        const up = connect(target.port, target.host);
        for (const s of [client, up]) {
          sockets.add(s);
          s.on('error', () => {
            client.destroy();
            up.destroy();
          });
          s.on('close', () => sockets.delete(s));
        }
        client.pipe(up);
        up.pipe(client);
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  await listen();
  return {
    get port() {
      return port;
    },
    async cut() {
      await new Promise<void>((resolve) => {
        server!.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    },
    restore: listen,
    close() {
      server?.close();
      for (const s of sockets) s.destroy();
    },
  };
}

const postgres = testDatabases().find((d) => d.name === 'postgres');
// SQLite is embedded: it has no connection to lose, so only PostgreSQL can really become unreachable.
describe.skipIf(!postgres)(
  'gateway log on postgres: a database outage is retried, never dead-lettered',
  () => {
    let upstream: LocalUpstream;
    let t: TestServer;
    let proxy: Awaited<ReturnType<typeof startProxy>>;

    beforeAll(async () => {
      const url = new URL(await postgres!.create());
      proxy = await startProxy({ host: url.hostname, port: Number(url.port || 5432) });
      url.host = `127.0.0.1:${proxy.port}`;
      upstream = await startLocalUpstream({ record: false });
      t = await startTestServer(url.toString(), {
        config: { logFlushIntervalMs: 60_000, logFlushBatchSize: 10_000 },
        gateway: { upstreams: { local: { baseURL: upstream.url } }, routes: {}, defaultUpstream: 'local' },
      });
    });
    afterAll(async () => {
      await t?.close();
      proxy?.close();
      await upstream?.close();
      await postgres!.cleanup();
    });

    it('keeps the batch through the outage and writes all of it, with no dead letters, once the database is back', async () => {
      const me = { name: 'a', key: t.secretKey };
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) ids.push((await chat(t, me, normalCall(i))).id!);
      await proxy.cut();
      await t.server.logWriter.flush();
      expect(t.server.logWriter.depth).toBe(6);
      await t.server.logWriter.flush();
      expect(t.server.logWriter.depth).toBe(6);
      expect(await metricValue(t, 'ratchet_gateway_log_write_failures_total')).toBeGreaterThanOrEqual(2);
      expect(ids.every((id) => t.server.logWriter.has(t.projectId, id))).toBe(true);

      await proxy.restore();
      await t.server.logWriter.flush();
      expect(t.server.logWriter.depth).toBe(0);
      expect((await t.store.interactions.getMany(t.projectId, ids)).length).toBe(6);
      expect((await t.store.deadLetters.list(t.projectId)).items).toEqual([]);
      expect(await metricValue(t, 'ratchet_gateway_dead_letters_total{reason="write_failed"}')).toBe(0);
    });
  },
);

describe('gateway log on sqlite: a locked database is retried, never dead-lettered', () => {
  const sqlite = testDatabases().find((d) => d.name === 'sqlite')!;
  let upstream: LocalUpstream;
  let t: TestServer;
  let url: string;

  beforeAll(async () => {
    url = await sqlite.create();
    upstream = await startLocalUpstream({ record: false });
    t = await startTestServer(url, {
      config: { logFlushIntervalMs: 60_000, logFlushBatchSize: 10_000 },
      gateway: { upstreams: { local: { baseURL: upstream.url } }, routes: {}, defaultUpstream: 'local' },
    });
    // Give up on the lock after 200 ms rather than 10 s (better-sqlite3 waits synchronously).
    await sql`pragma busy_timeout = 200`.execute(t.store.db);
  });
  afterAll(async () => {
    await t?.close();
    await upstream?.close();
    await sqlite.cleanup();
  });

  it('keeps the batch while another process holds the write lock (SQLITE_BUSY), and writes all of it after', async () => {
    const me = { name: 'a', key: t.secretKey };
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await chat(t, me, normalCall(i))).id!);
    // A second connection to the same file, as another process would hold it: an exclusive lock.
    const other = await Store.open(url);
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => {
      locked = resolve;
    });
    const holder = other.db.connection().execute(async (conn) => {
      await sql`begin exclusive`.execute(conn);
      locked();
      await released;
      await sql`commit`.execute(conn);
    });
    await isLocked;
    try {
      await t.server.logWriter.flush();
      expect(t.server.logWriter.depth).toBe(6);
      expect(await metricValue(t, 'ratchet_gateway_log_write_failures_total')).toBe(1);
      expect(ids.every((id) => t.server.logWriter.has(t.projectId, id))).toBe(true);
    } finally {
      release();
      await holder;
      await other.close();
    }
    await t.server.logWriter.flush();
    expect(t.server.logWriter.depth).toBe(0);
    expect((await t.store.interactions.getMany(t.projectId, ids)).length).toBe(6);
    expect((await t.store.deadLetters.list(t.projectId)).items).toEqual([]);
  });
});
