import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  AccountEmail,
  AccountPassword,
  newId,
  type ProjectRole,
  parseInput,
  projectRoles,
  RatchetError,
} from '@ratchet/core';
import type { Kysely } from 'kysely';
import type { AuditLog } from './audit.js';
import type { Database } from './schema.js';

export interface User {
  id: string;
  email: string;
  name: string | null;
  /** Whether the account has a password (else it signs in with OpenID Connect only). */
  hasPassword: boolean;
  createdAt: number;
}

export interface Member extends User {
  role: ProjectRole;
}

/** What a live session grants: the person, the project and their role in it. */
export interface SessionGrant {
  userId: string;
  email: string;
  projectId: string;
  role: ProjectRole;
  csrfHash: string;
  expiresAt: number;
}

export interface NewSession {
  /** The cookie's value: 256 random bits, shown once (stored as its SHA-256). */
  sessionId: string;
  /** Echoed in `x-ratchet-csrf` by a cookie-authenticated write. */
  csrfToken: string;
  expiresAt: number;
}

/**
 * argon2id from @node-rs/argon2, loaded on first use: the store's other tables work in an
 * install that has not fetched the native package yet (it arrived with accounts).
 */
async function argon2() {
  return import('@node-rs/argon2');
}

async function argon2Hash(password: string): Promise<string> {
  return (await argon2()).hash(password);
}

async function argon2Verify(hash: string, password: string): Promise<boolean> {
  return (await argon2()).verify(hash, password);
}

/** A verifier for high-entropy secrets (session ids, CSRF tokens): nothing to brute-force. */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/**
 * A session's CSRF token, derived from its id: the server can hand it to the page again after a
 * reload (GET /api/v1/session), and knowing it reveals nothing of the id (a one-way hash).
 */
export function csrfTokenOf(sessionId: string): string {
  return createHash('sha256').update(`ratchet-csrf\0${sessionId}`).digest('base64url');
}

/** Compares a presented secret with a stored hash in constant time. */
export function secretMatches(presented: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(presented), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

function asRole(text: string): ProjectRole {
  if (!(projectRoles as readonly string[]).includes(text)) throw new Error(`unknown role "${text}" stored`);
  return text as ProjectRole;
}

type UserRow = Pick<Database['users'], 'id' | 'email' | 'name' | 'password_hash' | 'created_at'>;

function toUser(row: UserRow): User {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    hasPassword: row.password_hash !== null,
    createdAt: Number(row.created_at),
  };
}

/**
 * People: accounts (argon2id password hashes via @node-rs/argon2, OpenID Connect subjects), their
 * role per project, and sessions. Membership changes are audited with the actor who made them.
 */
export class AccountRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly audit: AuditLog,
  ) {}

  /** Creates an account; the email is unique (409 naming `email`). */
  async createUser(given: { email: string; name?: string; password?: string }): Promise<User> {
    const email = parseInput(AccountEmail, given.email, 'email');
    const password =
      given.password === undefined ? null : parseInput(AccountPassword, given.password, 'password');
    const passwordHash = password === null ? null : await argon2Hash(password);
    const row = {
      id: newId(),
      email,
      name: given.name ?? null,
      password_hash: passwordHash,
      oidc_issuer: null,
      oidc_subject: null,
      created_at: Date.now(),
    };
    await this.db.transaction().execute(async (trx) => {
      const taken = await trx.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
      if (taken) throw new RatchetError('conflict', `email: an account for ${email} exists`, 'email');
      await trx.insertInto('users').values(row).execute();
    });
    return toUser(row);
  }

  async getUser(id: string): Promise<User | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toUser(row);
  }

  async getUserByEmail(email: string): Promise<User | undefined> {
    const row = await this.db
      .selectFrom('users')
      .selectAll()
      .where('email', '=', email.trim().toLowerCase())
      .executeTakeFirst();
    return row && toUser(row);
  }

  async listUsers(): Promise<User[]> {
    const rows = await this.db.selectFrom('users').selectAll().orderBy('email').execute();
    return rows.map(toUser);
  }

  /**
   * The account whose password this is, or undefined (unknown email or wrong password alike, so a
   * caller cannot tell which). An unknown email still costs one hash, so timing does not tell either.
   */
  async verifyPassword(email: string, password: string): Promise<User | undefined> {
    const row = await this.db
      .selectFrom('users')
      .selectAll()
      .where('email', '=', email.trim().toLowerCase())
      .executeTakeFirst();
    if (!row?.password_hash) {
      await argon2Hash(password);
      return undefined;
    }
    return (await argon2Verify(row.password_hash, password)) ? toUser(row) : undefined;
  }

  /** Sets a new password and ends the account's sessions (a reset is usually after a leak). */
  async setPassword(userId: string, password: string): Promise<void> {
    const valid = parseInput(AccountPassword, password, 'password');
    const passwordHash = await argon2Hash(valid);
    await this.db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable('users')
        .set({ password_hash: passwordHash })
        .where('id', '=', userId)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 0)
        throw new RatchetError('not_found', `user ${userId} not found`, 'userId');
      await trx.deleteFrom('sessions').where('user_id', '=', userId).execute();
    });
  }

  /**
   * The account an OpenID Connect sign-in names: by (issuer, subject) first, else by the verified
   * email (linking the subject to it), else a new account. An unverified email never links.
   */
  async userForOidc(claims: {
    issuer: string;
    subject: string;
    email?: string;
    emailVerified: boolean;
    name?: string;
  }): Promise<{ user: User; created: boolean }> {
    return this.db.transaction().execute(async (trx) => {
      const bySubject = await trx
        .selectFrom('users')
        .selectAll()
        .where('oidc_issuer', '=', claims.issuer)
        .where('oidc_subject', '=', claims.subject)
        .executeTakeFirst();
      if (bySubject) return { user: toUser(bySubject), created: false };
      const email = claims.email && claims.emailVerified ? claims.email.trim().toLowerCase() : undefined;
      if (!email)
        throw new RatchetError(
          'unauthorized',
          'email: the identity provider gave no verified email for a new account',
          'email',
        );
      const byEmail = await trx.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst();
      if (byEmail) {
        await trx
          .updateTable('users')
          .set({ oidc_issuer: claims.issuer, oidc_subject: claims.subject })
          .where('id', '=', byEmail.id)
          .execute();
        return { user: toUser(byEmail), created: false };
      }
      const row = {
        id: newId(),
        email,
        name: claims.name ?? null,
        password_hash: null,
        oidc_issuer: claims.issuer,
        oidc_subject: claims.subject,
        created_at: Date.now(),
      };
      await trx.insertInto('users').values(row).execute();
      return { user: toUser(row), created: true };
    });
  }

  /** Deletes an account, its memberships and sessions. */
  async removeUser(userId: string, actor: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const memberships = await trx
        .selectFrom('project_members')
        .select(['project_id', 'role'])
        .where('user_id', '=', userId)
        .execute();
      const deleted = await trx.deleteFrom('users').where('id', '=', userId).executeTakeFirst();
      if (Number(deleted.numDeletedRows) === 0)
        throw new RatchetError('not_found', `user ${userId} not found`, 'userId');
      await trx.deleteFrom('project_members').where('user_id', '=', userId).execute();
      await trx.deleteFrom('sessions').where('user_id', '=', userId).execute();
      for (const m of memberships)
        await this.audit.record(
          {
            projectId: m.project_id,
            actor,
            action: 'member.removed',
            subjectType: 'user',
            subjectId: userId,
            details: { role: m.role, accountDeleted: true },
          },
          trx,
        );
    });
  }

  /** The person's role in the project, or undefined when not a member. */
  async roleOf(projectId: string, userId: string): Promise<ProjectRole | undefined> {
    const row = await this.db
      .selectFrom('project_members')
      .select('role')
      .where('project_id', '=', projectId)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    return row && asRole(row.role);
  }

  /** The projects the person belongs to, with their role, oldest membership first. */
  async membershipsOf(userId: string): Promise<{ projectId: string; role: ProjectRole }[]> {
    const rows = await this.db
      .selectFrom('project_members')
      .select(['project_id', 'role'])
      .where('user_id', '=', userId)
      .orderBy('created_at')
      .execute();
    return rows.map((r) => ({ projectId: r.project_id, role: asRole(r.role) }));
  }

  async members(projectId: string): Promise<Member[]> {
    const rows = await this.db
      .selectFrom('project_members')
      .innerJoin('users', 'users.id', 'project_members.user_id')
      .select([
        'users.id',
        'users.email',
        'users.name',
        'users.password_hash',
        'users.created_at',
        'project_members.role',
      ])
      .where('project_members.project_id', '=', projectId)
      .orderBy('users.email')
      .execute();
    return rows.map((r) => ({ ...toUser(r), role: asRole(r.role) }));
  }

  /**
   * Gives the person a role in the project (adding or changing it); audited with the actor. The
   * last owner cannot be demoted, so a project always has someone who can manage its members.
   */
  async setRole(projectId: string, userId: string, role: ProjectRole, actor: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const user = await trx.selectFrom('users').select('id').where('id', '=', userId).executeTakeFirst();
      if (!user) throw new RatchetError('not_found', `userId: user ${userId} not found`, 'userId');
      const current = await trx
        .selectFrom('project_members')
        .select('role')
        .where('project_id', '=', projectId)
        .where('user_id', '=', userId)
        .executeTakeFirst();
      if (current?.role === 'owner' && role !== 'owner') await this.refuseLastOwner(trx, projectId, 'role');
      if (current)
        await trx
          .updateTable('project_members')
          .set({ role })
          .where('project_id', '=', projectId)
          .where('user_id', '=', userId)
          .execute();
      else
        await trx
          .insertInto('project_members')
          .values({ project_id: projectId, user_id: userId, role, created_at: Date.now() })
          .execute();
      // A session carries the role it was opened with; a changed role takes effect at once.
      await this.endSessionsIn(trx, projectId, userId);
      await this.audit.record(
        {
          projectId,
          actor,
          action: current ? 'member.role_changed' : 'member.added',
          subjectType: 'user',
          subjectId: userId,
          details: current ? { from: current.role, to: role } : { role },
        },
        trx,
      );
    });
  }

  /** Removes the person from the project (not the account); their sessions there end. */
  async removeMember(projectId: string, userId: string, actor: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const current = await trx
        .selectFrom('project_members')
        .select('role')
        .where('project_id', '=', projectId)
        .where('user_id', '=', userId)
        .executeTakeFirst();
      if (!current)
        throw new RatchetError('not_found', `userId: ${userId} is not a member of this project`, 'userId');
      if (current.role === 'owner') await this.refuseLastOwner(trx, projectId, 'userId');
      await trx
        .deleteFrom('project_members')
        .where('project_id', '=', projectId)
        .where('user_id', '=', userId)
        .execute();
      await this.endSessionsIn(trx, projectId, userId);
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'member.removed',
          subjectType: 'user',
          subjectId: userId,
          details: { role: current.role },
        },
        trx,
      );
    });
  }

  /** Ends the person's sessions in one project (a changed or removed membership takes effect at once). */
  private async endSessionsIn(trx: Kysely<Database>, projectId: string, userId: string): Promise<void> {
    await trx
      .deleteFrom('sessions')
      .where('project_id', '=', projectId)
      .where('user_id', '=', userId)
      .execute();
  }

  private async refuseLastOwner(trx: Kysely<Database>, projectId: string, path: string): Promise<void> {
    const owners = await trx
      .selectFrom('project_members')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('project_id', '=', projectId)
      .where('role', '=', 'owner')
      .executeTakeFirstOrThrow();
    if (Number(owners.n) <= 1)
      throw new RatchetError(
        'conflict',
        `${path}: the project's last owner cannot be removed or demoted`,
        path,
      );
  }

  /** Opens a session for a member; the answer holds the secrets, shown once. */
  async openSession(userId: string, projectId: string, ttlMs: number): Promise<NewSession> {
    const sessionId = randomBytes(32).toString('base64url');
    const csrfToken = csrfTokenOf(sessionId);
    const now = Date.now();
    const expiresAt = now + ttlMs;
    await this.db
      .insertInto('sessions')
      .values({
        id_hash: hashSecret(sessionId),
        user_id: userId,
        project_id: projectId,
        csrf_hash: hashSecret(csrfToken),
        created_at: now,
        expires_at: expiresAt,
      })
      .execute();
    return { sessionId, csrfToken, expiresAt };
  }

  /** What a presented session id grants, or undefined when unknown, expired or no longer a member. */
  async session(sessionId: string, now = Date.now()): Promise<SessionGrant | undefined> {
    const row = await this.db
      .selectFrom('sessions')
      .innerJoin('project_members', (j) =>
        j
          .onRef('project_members.project_id', '=', 'sessions.project_id')
          .onRef('project_members.user_id', '=', 'sessions.user_id'),
      )
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .select([
        'sessions.user_id',
        'sessions.project_id',
        'sessions.csrf_hash',
        'sessions.expires_at',
        'project_members.role',
        'users.email',
      ])
      .where('sessions.id_hash', '=', hashSecret(sessionId))
      .executeTakeFirst();
    if (!row || Number(row.expires_at) <= now) return undefined;
    return {
      userId: row.user_id,
      email: row.email,
      projectId: row.project_id,
      role: asRole(row.role),
      csrfHash: row.csrf_hash,
      expiresAt: Number(row.expires_at),
    };
  }

  /** Ends a session (sign-out); and sweeps expired ones, so the table does not grow. */
  async closeSession(sessionId: string): Promise<void> {
    await this.db.deleteFrom('sessions').where('id_hash', '=', hashSecret(sessionId)).execute();
    await this.db.deleteFrom('sessions').where('expires_at', '<=', Date.now()).execute();
  }
}
