import { describe, expect, it } from 'vitest';
import { LabelStudioClient } from './client.js';

type Call = { url: string; method: string; authorization: string | undefined; body: unknown };

/** A stand-in for Label Studio that records requests and answers from a script. */
function fakeServer(answer: (call: Call) => { status: number; body: unknown }) {
  const calls: Call[] = [];
  const fetchFn = (async (url: string, init: RequestInit) => {
    const headers = init.headers as Record<string, string>;
    const call = {
      url,
      method: init.method ?? 'GET',
      authorization: headers.Authorization,
      body: init.body ? JSON.parse(init.body as string) : undefined,
    };
    calls.push(call);
    const { status, body } = answer(call);
    return new Response(JSON.stringify(body), { status });
  }) as unknown as typeof fetch;
  return { calls, fetchFn };
}

const jwt = (n: number) => `eyJhbGciOiJIUzI1NiJ9.eyJuIjo${n}fQ.c2lnbmF0dXJl`;

describe('Label Studio client', () => {
  it('sends a legacy token as "Token <key>"', async () => {
    const { calls, fetchFn } = fakeServer(() => ({ status: 200, body: { id: 1, email: 'a@b.c' } }));
    const client = new LabelStudioClient({ url: 'http://ls.test/', apiKey: 'abc123', fetch: fetchFn });
    expect(await client.whoami()).toMatchObject({ id: 1 });
    expect(calls).toEqual([
      {
        url: 'http://ls.test/api/current-user/whoami',
        method: 'GET',
        authorization: 'Token abc123',
        body: undefined,
      },
    ]);
  });

  it('exchanges a personal access token for an access token, and renews it after a 401', async () => {
    let issued = 0;
    /** Access tokens the server still accepts; the first one "expires" after one use. */
    const uses = new Map<string, number>();
    const { calls, fetchFn } = fakeServer((call) => {
      if (call.url.endsWith('/api/token/refresh/')) {
        const access = `access-${++issued}`;
        uses.set(access, issued === 1 ? 1 : 100);
        return { status: 200, body: { access } };
      }
      const token = call.authorization?.replace('Bearer ', '') ?? '';
      const left = uses.get(token) ?? 0;
      if (left === 0) return { status: 401, body: { detail: 'Token is expired' } };
      uses.set(token, left - 1);
      return { status: 200, body: { id: 4, title: 'p' } };
    });
    const client = new LabelStudioClient({ url: 'http://ls.test', apiKey: jwt(1), fetch: fetchFn });
    await client.getProject(4);
    await client.getProject(4);
    expect(calls.map((c) => [c.url.replace('http://ls.test', ''), c.authorization])).toEqual([
      ['/api/token/refresh/', undefined],
      ['/api/projects/4/', 'Bearer access-1'],
      ['/api/projects/4/', 'Bearer access-1'],
      ['/api/token/refresh/', undefined],
      ['/api/projects/4/', 'Bearer access-2'],
    ]);
    expect(calls[0]!.body).toEqual({ refresh: jwt(1) });
  });

  it('reads every page of tasks', async () => {
    const { calls, fetchFn } = fakeServer((call) => {
      const page = Number(new URL(call.url).searchParams.get('page'));
      const ids = page === 1 ? Array.from({ length: 100 }, (_, i) => i + 1) : [101, 102];
      return { status: 200, body: { total: 102, tasks: ids.map((id) => ({ id, data: { n: id } })) } };
    });
    const client = new LabelStudioClient({ url: 'http://ls.test', apiKey: 'k', fetch: fetchFn });
    expect((await client.listTasks(3)).map((t) => t.id)).toHaveLength(102);
    expect(calls.map((c) => new URL(c.url).search)).toEqual([
      '?project=3&page=1&page_size=100',
      '?project=3&page=2&page_size=100',
    ]);
  });

  it('says what Label Studio refused, with its validation errors', async () => {
    const { fetchFn } = fakeServer(() => ({
      status: 400,
      body: {
        detail: 'Validation error',
        validation_errors: { title: ['Ensure this field has at least 3 characters.'] },
      },
    }));
    const client = new LabelStudioClient({ url: 'http://ls.test', apiKey: 'k', fetch: fetchFn });
    await expect(client.createProject({ title: 'x', labelConfig: '<View/>' })).rejects.toThrow(
      'Label Studio POST /api/projects/: HTTP 400: Validation error {"title":["Ensure this field has at least 3 characters."]}',
    );
  });

  it('says when the server cannot be reached or answers something unexpected', async () => {
    const down = (async () => {
      throw new TypeError('fetch failed');
    }) as unknown as typeof fetch;
    await expect(
      new LabelStudioClient({ url: 'http://ls.test', apiKey: 'k', fetch: down }).whoami(),
    ).rejects.toThrow(
      'Label Studio GET /api/current-user/whoami: cannot reach http://ls.test (fetch failed)',
    );
    const { fetchFn } = fakeServer(() => ({ status: 200, body: { task_count: 'many' } }));
    await expect(
      new LabelStudioClient({ url: 'http://ls.test', apiKey: 'k', fetch: fetchFn }).importTasks(1, []),
    ).rejects.toThrow('Label Studio POST /api/projects/1/import: unexpected answer');
  });
});
