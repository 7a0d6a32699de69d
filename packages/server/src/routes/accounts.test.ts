import type { ProjectRole } from '@ratchet/core';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SignedPerson, startTestServer, type TestServer, testPassword } from '../testing/server.js';

type Signed = SignedPerson;

for (const target of testDatabases()) {
  describe(`people, sessions and roles on ${target.name}`, () => {
    let t: TestServer;
    const people: Partial<Record<ProjectRole, Signed>> = {};

    /** Calls the API as a browser would with the session cookie (no key), CSRF token if given. */
    const asPerson = (
      who: Signed,
      path: string,
      init: { method?: string; body?: unknown; csrf?: string | null } = {},
    ) =>
      t.call(path, {
        method: init.method,
        body: init.body,
        key: null,
        headers: {
          cookie: `ratchet_session=${who.cookie}`,
          ...(init.csrf === null ? {} : { 'x-ratchet-csrf': init.csrf ?? who.csrf }),
        },
      });

    const signIn = async (email: string, password = testPassword) => {
      const res = await t.call('/api/v1/session', { body: { email, password }, key: null });
      return res;
    };

    const addPerson = (role: ProjectRole): Promise<Signed> => t.addPerson(`${role}@example.com`, role);

    beforeAll(async () => {
      t = await startTestServer(await target.create(), { config: { cookieSecure: true } });
      for (const role of ['owner', 'admin', 'annotator', 'viewer'] as const)
        people[role] = await addPerson(role);
      const capture = await t.call('/api/v1/interactions', {
        body: {
          id: 'i-1',
          route: 'bot',
          model: 'm',
          messages: [{ role: 'user', content: 'q' }],
          output: 'a',
        },
      });
      expect(capture.status).toBe(201);
    });
    afterAll(async () => {
      await t?.close();
      await target.cleanup();
    });

    it('signs in with a secure, HTTP-only, same-site cookie whose id is stored only hashed', async () => {
      const res = await signIn('viewer@example.com');
      const setCookie = res.headers.get('set-cookie')!;
      expect(setCookie).toMatch(/HttpOnly/);
      expect(setCookie).toMatch(/SameSite=Lax/);
      expect(setCookie).toMatch(/Secure/);
      expect(res.body).toMatchObject({
        role: 'viewer',
        project: { id: t.projectId },
        user: { email: 'viewer@example.com' },
      });
      const id = /ratchet_session=([^;]+)/.exec(setCookie)![1]!;
      const stored = await t.store.db.selectFrom('sessions').select('id_hash').execute();
      expect(stored.map((s) => s.id_hash)).not.toContain(id);
      const wrong = await signIn('viewer@example.com', 'not the password at all');
      expect(wrong.status).toBe(401);
      expect(wrong.body.error.path).toBe('password');
      expect(wrong.headers.get('set-cookie')).toBeNull();
      const unknown = await signIn('nobody@example.com');
      expect(unknown.status).toBe(401);
      expect(unknown.body.error.message).toBe(wrong.body.error.message);
    });

    it('a cookie-authenticated write without the CSRF token is refused and writes nothing', async () => {
      const annotator = people.annotator!;
      const before = await t.store.db.selectFrom('feedback').select('id').execute();
      const forged = await asPerson(annotator, '/api/v1/feedback', {
        body: { interactionId: 'i-1', kind: 'thumbs', value: 'up' },
        csrf: null,
      });
      expect(forged.status).toBe(403);
      expect(forged.body.error.path).toBe('x-ratchet-csrf');
      const wrongToken = await asPerson(annotator, '/api/v1/feedback', {
        body: { interactionId: 'i-1', kind: 'thumbs', value: 'up' },
        csrf: people.viewer!.csrf,
      });
      expect(wrongToken.status).toBe(403);
      expect(await t.store.db.selectFrom('feedback').select('id').execute()).toHaveLength(before.length);
      // Reads need no token.
      expect((await asPerson(annotator, '/api/v1/interactions', { csrf: null })).status).toBe(200);
    });

    it('an annotator rates as themselves and cannot promote (403 naming the role)', async () => {
      const annotator = people.annotator!;
      const rated = await asPerson(annotator, '/api/v1/feedback', {
        body: { interactionId: 'i-1', kind: 'thumbs', value: 'up', source: 'annotator' },
      });
      expect(rated.status).toBe(201);
      const stored = await t.store.feedback.listForInteraction(t.projectId, 'i-1');
      expect(stored.map((f) => f.raterId)).toContain(annotator.raterId);
      const asOther = await asPerson(annotator, '/api/v1/feedback', {
        body: { interactionId: 'i-1', kind: 'thumbs', value: 'down', raterId: 'someone-else' },
      });
      expect(asOther.status).toBe(403);
      expect(asOther.body.error.path).toBe('raterId');
      const promote = await asPerson(annotator, '/api/v1/models/any/stage', {
        body: { stage: 'production', reason: 'try' },
      });
      expect(promote.status).toBe(403);
      expect(promote.body.error.path).toBe('role');
      expect(promote.body.error.message).toMatch(/you are annotator/);
      const key = await asPerson(annotator, '/api/v1/keys', { body: { scopes: ['admin'] } });
      expect(key.status).toBe(403);
    });

    it('annotators work the team queue as themselves; viewers may not claim', async () => {
      const annotator = people.annotator!;
      const fresh = await t.call('/api/v1/interactions', {
        body: {
          id: 'i-2',
          route: 'bot',
          model: 'm',
          messages: [{ role: 'user', content: 'q2' }],
          output: 'a2',
        },
      });
      expect(fresh.status).toBe(201);
      const claimed = await asPerson(annotator, '/api/v1/annotation/claim', { body: {} });
      expect(claimed.status).toBe(200);
      expect(claimed.body.annotator).toBe(annotator.raterId);
      const locks = await t.store.db.selectFrom('annotation_locks').select('annotator_id').execute();
      expect(locks.map((l) => l.annotator_id)).toEqual([annotator.raterId]);
      const viewer = await asPerson(people.viewer!, '/api/v1/annotation/claim', { body: {} });
      expect(viewer.status).toBe(403);
      expect(viewer.body.error.path).toBe('role');
    });

    it('a viewer reads and cannot write anything', async () => {
      const viewer = people.viewer!;
      expect((await asPerson(viewer, '/api/v1/interactions')).status).toBe(200);
      const writes: [string, unknown][] = [
        ['/api/v1/feedback', { interactionId: 'i-1', kind: 'thumbs', value: 'up' }],
        ['/api/v1/interactions', { id: 'v-1', model: 'm', messages: [], output: 'x' }],
        ['/api/v1/keys', { scopes: ['read'] }],
        ['/api/v1/members', { email: 'new@example.com', role: 'owner' }],
      ];
      for (const [path, body] of writes) {
        const res = await asPerson(viewer, path, { body });
        expect(res.status, path).toBe(403);
        expect(res.body.error.path, path).toBe('role');
      }
      expect(await t.store.interactions.get(t.projectId, 'v-1')).toBeUndefined();
      expect(await t.store.accounts.getUserByEmail('new@example.com')).toBeUndefined();
    });

    it('an admin changes models and keys but not members; the audit log names the person', async () => {
      const admin = people.admin!;
      const key = await asPerson(admin, '/api/v1/keys', { body: { scopes: ['read'], name: 'from-admin' } });
      expect(key.status).toBe(201);
      const audit = await t.store.audit.list(t.projectId, { action: 'key.created' });
      expect(audit[0]?.actor).toBe(`user:${admin.userId}`);
      const member = await asPerson(admin, '/api/v1/members', {
        body: { email: 'x@example.com', role: 'owner' },
      });
      expect(member.status).toBe(403);
      // Nor with a key it minted: members are an owner's (a person's) act.
      const adminKey = await asPerson(admin, '/api/v1/keys', { body: { scopes: ['admin'] } });
      const viaKey = await t.call('/api/v1/members', {
        body: { email: 'x@example.com', role: 'owner' },
        key: adminKey.body.key,
      });
      expect(viaKey.status).toBe(403);
      expect(await t.store.accounts.getUserByEmail('x@example.com')).toBeUndefined();
    });

    it('an owner adds, re-roles and removes members; the new member signs in with their role', async () => {
      const owner = people.owner!;
      const added = await asPerson(owner, '/api/v1/members', {
        body: { email: 'New.Person@example.com', role: 'annotator', password: testPassword },
      });
      expect(added.status).toBe(201);
      expect(added.body).toMatchObject({ email: 'new.person@example.com', role: 'annotator' });
      const list = await asPerson(owner, '/api/v1/members');
      expect(list.body.items.map((m: { email: string; role: string }) => [m.email, m.role])).toContainEqual([
        'new.person@example.com',
        'annotator',
      ]);
      const session = await signIn('new.person@example.com');
      expect(session.body.role).toBe('annotator');
      const changed = await asPerson(owner, `/api/v1/members/${added.body.id}`, {
        method: 'PUT',
        body: { role: 'viewer' },
      });
      expect(changed.status).toBe(200);
      // The role change ended the session opened under the old role.
      const oldCookie = /ratchet_session=([^;]+)/.exec(session.headers.get('set-cookie')!)![1]!;
      const stale = await t.call('/api/v1/session', {
        key: null,
        headers: { cookie: `ratchet_session=${oldCookie}` },
      });
      expect(stale.status).toBe(401);
      const removed = await asPerson(owner, `/api/v1/members/${added.body.id}`, { method: 'DELETE' });
      expect(removed.status).toBe(200);
      expect(await t.store.accounts.roleOf(t.projectId, added.body.id)).toBeUndefined();
      const audit = await t.store.audit.list(t.projectId, { subjectId: added.body.id });
      expect(audit.map((a) => [a.action, a.actor])).toEqual([
        ['member.removed', `user:${owner.userId}`],
        ['member.role_changed', `user:${owner.userId}`],
        ['member.added', `user:${owner.userId}`],
      ]);
      const self = await asPerson(owner, `/api/v1/members/${owner.userId}`, {
        method: 'PUT',
        body: { role: 'viewer' },
      });
      expect(self.status).toBe(409);
    });

    it('sign-out ends the session on the server, not just in the browser', async () => {
      const res = await signIn('admin@example.com');
      const cookie = /ratchet_session=([^;]+)/.exec(res.headers.get('set-cookie')!)![1]!;
      const who = { cookie, csrf: res.body.csrfToken, userId: '', raterId: '' };
      expect((await asPerson(who, '/api/v1/session')).status).toBe(200);
      const out = await asPerson(who, '/api/v1/session', { method: 'DELETE' });
      expect(out.status).toBe(200);
      expect(out.headers.get('set-cookie')).toMatch(/Max-Age=0/);
      expect((await asPerson(who, '/api/v1/interactions')).status).toBe(401);
    });

    it('password guessing on one account is slowed: the 11th quick try is a 429, even with the right password', async () => {
      const email = 'guessed@example.com';
      await t.store.accounts.createUser({ email, password: testPassword });
      for (let i = 0; i < 10; i++) expect((await signIn(email, `wrong password ${i}`)).status).toBe(401);
      const limited = await signIn(email);
      expect(limited.status).toBe(429);
      expect(limited.headers.get('set-cookie')).toBeNull();
    });

    it('a bearer key still works as before next to sessions', async () => {
      expect((await t.call('/api/v1/interactions')).status).toBe(200);
      const project = await t.call('/api/v1/project');
      expect(project.body.user).toBeUndefined();
    });
  });
}
