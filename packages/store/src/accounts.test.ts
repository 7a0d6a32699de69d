import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

for (const target of testDatabases()) {
  describe(`accounts, members and sessions on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('accounts')).id;
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('stores an argon2id hash, never the password, and verifies it', async () => {
      const user = await store.accounts.createUser({
        email: ' Ann@Example.COM ',
        password: 'correct horse battery',
      });
      expect(user.email).toBe('ann@example.com');
      const row = await store.db
        .selectFrom('users')
        .selectAll()
        .where('id', '=', user.id)
        .executeTakeFirstOrThrow();
      expect(row.password_hash).toMatch(/^\$argon2id\$/);
      expect(row.password_hash).not.toContain('correct horse');
      expect((await store.accounts.verifyPassword('ann@example.com', 'correct horse battery'))?.id).toBe(
        user.id,
      );
      expect(await store.accounts.verifyPassword('ann@example.com', 'wrong horse battery')).toBeUndefined();
      expect(
        await store.accounts.verifyPassword('nobody@example.com', 'correct horse battery'),
      ).toBeUndefined();
      await expect(
        store.accounts.createUser({ email: 'ann@example.com', password: 'another password' }),
      ).rejects.toMatchObject({
        code: 'conflict',
        path: 'email',
      });
      await expect(
        store.accounts.createUser({ email: 'not an email', password: 'long enough password' }),
      ).rejects.toMatchObject({
        path: 'email',
      });
      await expect(
        store.accounts.createUser({ email: 'short@example.com', password: 'short' }),
      ).rejects.toMatchObject({
        path: 'password',
      });
      expect(await store.accounts.getUserByEmail('short@example.com')).toBeUndefined();
    });

    it('opens sessions stored by hash, refuses them once expired, closed or the membership is gone', async () => {
      const user = await store.accounts.createUser({
        email: 'bo@example.com',
        password: 'a long enough password',
      });
      await store.accounts.setRole(projectId, user.id, 'annotator', 'cli');
      const opened = await store.accounts.openSession(user.id, projectId, 60_000);
      const rows = await store.db.selectFrom('sessions').selectAll().where('user_id', '=', user.id).execute();
      expect(rows).toHaveLength(1);
      expect(rows[0]!.id_hash).not.toBe(opened.sessionId);
      expect(await store.accounts.session(opened.sessionId)).toMatchObject({
        userId: user.id,
        projectId,
        role: 'annotator',
      });
      expect(await store.accounts.session(opened.sessionId, opened.expiresAt)).toBeUndefined();
      expect(await store.accounts.session('guessed')).toBeUndefined();
      // A role change ends the person's sessions there, so the new role applies at once.
      await store.accounts.setRole(projectId, user.id, 'viewer', 'cli');
      expect(await store.accounts.session(opened.sessionId)).toBeUndefined();
      const again = await store.accounts.openSession(user.id, projectId, 60_000);
      await store.accounts.closeSession(again.sessionId);
      expect(await store.accounts.session(again.sessionId)).toBeUndefined();
      const audit = await store.audit.list(projectId, { subjectId: user.id });
      expect(audit.map((a) => [a.action, a.actor])).toEqual([
        ['member.role_changed', 'cli'],
        ['member.added', 'cli'],
      ]);
    });

    it('keeps the last owner', async () => {
      const owner = await store.accounts.createUser({
        email: 'own@example.com',
        password: 'a long enough password',
      });
      await store.accounts.setRole(projectId, owner.id, 'owner', 'cli');
      await expect(store.accounts.setRole(projectId, owner.id, 'viewer', 'cli')).rejects.toMatchObject({
        code: 'conflict',
      });
      await expect(store.accounts.removeMember(projectId, owner.id, 'cli')).rejects.toMatchObject({
        code: 'conflict',
      });
      expect(await store.accounts.roleOf(projectId, owner.id)).toBe('owner');
    });

    it('matches an OpenID Connect sign-in by subject, then by verified email, else creates the account', async () => {
      const issuer = 'https://idp.example';
      const created = await store.accounts.userForOidc({
        issuer,
        subject: 's-1',
        email: 'Cy@Example.com',
        emailVerified: true,
      });
      expect(created).toMatchObject({ created: true, user: { email: 'cy@example.com', hasPassword: false } });
      const again = await store.accounts.userForOidc({ issuer, subject: 's-1', emailVerified: false });
      expect(again).toEqual({ created: false, user: created.user });
      const existing = await store.accounts.createUser({
        email: 'di@example.com',
        password: 'a long enough password',
      });
      const linked = await store.accounts.userForOidc({
        issuer,
        subject: 's-2',
        email: 'di@example.com',
        emailVerified: true,
      });
      expect(linked.user.id).toBe(existing.id);
      // An unverified email never takes over an account.
      await expect(
        store.accounts.userForOidc({ issuer, subject: 's-3', email: 'di@example.com', emailVerified: false }),
      ).rejects.toMatchObject({ path: 'email' });
    });
  });
}
