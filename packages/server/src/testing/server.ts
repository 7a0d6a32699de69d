import type { ProjectRole } from '@ratchet/core';
import { Store } from '@ratchet/store';
import { buildServer, type RatchetServer, type ServerOptions } from '../app.js';
import { loadServerConfig, type ServerConfigInput } from '../config.js';
import type { GatewayConfigInput } from '../gateway/config.js';
import { parseGatewayConfig } from '../gateway/config.js';

export interface TestServer {
  url: string;
  store: Store;
  server: RatchetServer;
  projectId: string;
  secretKey: string;
  publicKey: string;
  /** fetch against the server with a key (the project's secret key by default). */
  call(
    path: string,
    init?: { method?: string; body?: unknown; key?: string | null; headers?: Record<string, string> },
  ): Promise<{
    status: number;
    // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
    body: any;
    headers: Headers;
  }>;
  /**
   * A gateway call's stored interaction: the log writer is flushed and the read retried for up
   * to a second (a call is logged after its answer is sent); throws when it never appears.
   */
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
  logged(id: string | null): Promise<any>;
  /**
   * A person with an account and `role` in the project, signed in with a password: their session
   * cookie's value and CSRF token, as a browser holds them, and their ids.
   */
  addPerson(email: string, role: ProjectRole): Promise<SignedPerson>;
  close(): Promise<void>;
}

export interface SignedPerson {
  cookie: string;
  csrf: string;
  userId: string;
  raterId: string;
}

/** The password test people sign in with (long enough for the accounts' rule). */
export const testPassword = 'a long enough password';

/** A real server on a free port over a real database, with a project and both kinds of key. */
export async function startTestServer(
  databaseUrl: string,
  options: {
    config?: ServerConfigInput;
    gateway?: GatewayConfigInput;
    project?: string;
    queueObjectives?: ServerOptions['queueObjectives'];
    queueTerms?: ServerOptions['queueTerms'];
  } = {},
): Promise<TestServer> {
  const store = await Store.open(databaseUrl);
  const project = await store.projects.create(options.project ?? 'test');
  const secret = await store.projects.createKey(project.id, 'secret');
  const pub = await store.projects.createKey(project.id, 'public');
  const server = await buildServer({
    store,
    config: loadServerConfig({ port: 0, logLevel: 'silent', ...options.config }, {}),
    gatewayConfig: options.gateway ? parseGatewayConfig(options.gateway) : undefined,
    ...(options.queueObjectives ? { queueObjectives: options.queueObjectives } : {}),
    ...(options.queueTerms ? { queueTerms: options.queueTerms } : {}),
  });
  const url = await server.listen();
  const test: TestServer = {
    url,
    store,
    server,
    projectId: project.id,
    secretKey: secret.key,
    publicKey: pub.key,
    async call(path, init = {}) {
      const key = init.key === undefined ? secret.key : init.key;
      const headers: Record<string, string> = { ...init.headers };
      if (key) headers.authorization = `Bearer ${key}`;
      let body: string | undefined;
      if (init.body !== undefined) {
        headers['content-type'] ??= 'application/json';
        body = typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
      }
      const res = await fetch(url + path, { method: init.method ?? (body ? 'POST' : 'GET'), headers, body });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON (metrics); keep the text
      }
      return { status: res.status, body: parsed, headers: res.headers };
    },
    async logged(id) {
      for (let i = 0; ; i++) {
        await server.logWriter.flush();
        const got = await test.call(`/api/v1/interactions/${id}`);
        if (got.status === 200) return got.body;
        if (i >= 50) throw new Error(`interaction ${id} was not logged (last status ${got.status})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async addPerson(email, role) {
      const user = await store.accounts.createUser({ email, password: testPassword });
      await store.accounts.setRole(project.id, user.id, role, 'test');
      const res = await test.call('/api/v1/session', { body: { email, password: testPassword }, key: null });
      if (res.status !== 201) throw new Error(`sign-in of ${email} answered ${res.status}`);
      const cookie = /ratchet_session=([^;]+)/.exec(res.headers.get('set-cookie') ?? '')?.[1];
      if (!cookie) throw new Error(`sign-in of ${email} set no session cookie`);
      return { cookie, csrf: res.body.csrfToken, userId: user.id, raterId: res.body.raterId };
    },
    async close() {
      await server.close();
      await store.close();
    },
  };
  return test;
}
