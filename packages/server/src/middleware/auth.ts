import {
  type ApiKeyScope,
  apiKeyKindOf,
  apiKeyScopes,
  type ProjectRole,
  RatchetError,
  rolesOfAccess,
  rolesOfScope,
} from '@ratchet/core';
import { type Principal, type Store, secretMatches } from '@ratchet/store';
import type { FastifyRequest } from 'fastify';

/**
 * Who may call a route: a key holding the scope, or one of the scopes (the first is the one a
 * 403 names), or anyone (`none`).
 */
export type Access = 'none' | ApiKeyScope | readonly [ApiKeyScope, ...ApiKeyScope[]];

/** The scopes that admit a key to a route (empty for `none`). */
export function accessScopes(access: Access): readonly ApiKeyScope[] {
  if (access === 'none') return [];
  return typeof access === 'string' ? [access] : access;
}

/**
 * Who made a request, for code that acts on the person (the annotation queue's assignments, the
 * audit log): a person signed in with a session, or a key. Undefined before authentication or on
 * a route open to anyone.
 */
export type RequestPrincipal =
  | { kind: 'user'; userId: string; email: string; role: ProjectRole; projectId: string }
  | { kind: 'key'; keyId: string; projectId: string };

export function principalOf(request: FastifyRequest): RequestPrincipal | undefined {
  const p = request.principal;
  if (!p) return undefined;
  return p.user
    ? { kind: 'user', userId: p.user.id, email: p.user.email, role: p.user.role, projectId: p.projectId }
    : { kind: 'key', keyId: p.keyId, projectId: p.projectId };
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

interface CacheEntry {
  principal: Promise<Principal | undefined>;
  expires: number;
}

/**
 * Resolves bearer keys to projects. Lookups are cached so that the gateway's hot path does not
 * hit the database on every call; `watch` empties the cache whenever a key is revoked (in this
 * process at once, in others by NOTIFY or the polled version), and `ttlMs` bounds what a missed
 * signal could cost. The cache
 * holds the lookup itself, so the calls in flight when an entry expires share one query instead
 * of each running its own (at a few hundred calls per second, that burst was a latency spike
 * every `ttlMs`).
 */
export class KeyResolver {
  private readonly cache = new Map<string, CacheEntry>();

  constructor(
    private readonly store: Store,
    private readonly ttlMs = 10_000,
    private readonly maxEntries = 10_000,
  ) {}

  async resolve(key: string): Promise<Principal | undefined> {
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && hit.expires > now) return hit.principal;
    const principal = apiKeyKindOf(key) ? this.store.projects.authenticate(key) : Promise.resolve(undefined);
    if (this.cache.size >= this.maxEntries) this.cache.clear();
    const entry = { principal, expires: now + this.ttlMs };
    this.cache.set(key, entry);
    // A failed lookup is not remembered: the next call asks the database again.
    principal.catch(() => {
      if (this.cache.get(key) === entry) this.cache.delete(key);
    });
    return principal;
  }

  forget(): void {
    this.cache.clear();
  }

  /** Forgets every cached key whenever one is revoked anywhere; returns the function that stops. */
  watch(onError?: (err: unknown) => void): () => Promise<void> {
    return this.store.projects.subscribeKeys(() => this.forget(), { onError });
  }
}

function bearerKey(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match?.[1];
  }
  // Some OpenTelemetry exporters can only set custom headers.
  const alt = request.headers['x-ratchet-key'];
  return typeof alt === 'string' ? alt : undefined;
}

/** The cookie a signed-in person's browser sends: the session id (stored as its SHA-256). */
export const SESSION_COOKIE = 'ratchet_session';
/** The header a cookie-authenticated write echoes the session's CSRF token in. */
export const CSRF_HEADER = 'x-ratchet-csrf';

/** One cookie's value from the request's Cookie header, or undefined. */
export function cookieValue(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

const safeMethods = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The key scopes a role stands for (so scope-based code, e.g. `/project`, reads a person alike). */
function scopesOfRole(role: ProjectRole): ApiKeyScope[] {
  return apiKeyScopes.filter((scope) => rolesOfScope[scope].includes(role));
}

/**
 * A person signed in with a session cookie. Writes must echo the session's CSRF token in
 * `x-ratchet-csrf`: the cookie rides along on a forged cross-site form post, the token cannot
 * (no other origin can read it). The role must be one the route admits (core `rolesOfAccess`).
 */
async function sessionPrincipal(
  request: FastifyRequest,
  sessionId: string,
  access: Access,
  roles: readonly ProjectRole[] | undefined,
  store: Store,
): Promise<Principal> {
  const grant = await store.accounts.session(sessionId);
  if (!grant)
    throw new RatchetError(
      'unauthorized',
      'authorization: the session has ended or is unknown; sign in again',
      'authorization',
    );
  if (!safeMethods.has(request.method)) {
    const token = request.headers[CSRF_HEADER];
    if (typeof token !== 'string' || !secretMatches(token, grant.csrfHash))
      throw new RatchetError(
        'forbidden',
        `${CSRF_HEADER}: a signed-in write must send the session's CSRF token in this header`,
        CSRF_HEADER,
      );
  }
  const admitted = rolesOfAccess(accessScopes(access), roles);
  if (!admitted.includes(grant.role))
    throw new RatchetError(
      'forbidden',
      `role: this needs the role ${admitted.map((r) => `"${r}"`).join(' or ') || 'of a key, not a person'}; you are ${grant.role}`,
      'role',
    );
  return {
    projectId: grant.projectId,
    keyId: `user:${grant.userId}`,
    kind: 'secret',
    scopes: scopesOfRole(grant.role),
    actor: `user:${grant.userId}`,
    user: { id: grant.userId, email: grant.email, role: grant.role },
  };
}

/**
 * Authenticates a request for a route of the given access level; throws 401/403. A bearer key
 * is checked against the route's scopes; without one, a session cookie against its roles.
 */
export async function authenticate(
  request: FastifyRequest,
  access: Access,
  keys: KeyResolver,
  people?: { store: Store; roles?: readonly ProjectRole[] },
): Promise<Principal | undefined> {
  if (access === 'none') return undefined;
  const key = bearerKey(request);
  const sessionId = key ? undefined : cookieValue(request, SESSION_COOKIE);
  if (sessionId && people) {
    request.principal = await sessionPrincipal(request, sessionId, access, people.roles, people.store);
    return request.principal;
  }
  if (!key)
    throw new RatchetError(
      'unauthorized',
      'authorization: send "Authorization: Bearer <project key>" or sign in',
      'authorization',
    );
  const principal = await keys.resolve(key);
  if (!principal)
    throw new RatchetError('unauthorized', 'authorization: unknown or revoked key', 'authorization');
  const scopes = accessScopes(access);
  if (!scopes.some((scope) => principal.scopes.includes(scope))) {
    const needed = scopes.map((scope) => `"${scope}"`).join(' or ');
    throw new RatchetError(
      'forbidden',
      `authorization: this route needs a key with the scope ${needed}; this key has ${principal.scopes.join(', ') || 'none'}`,
      'authorization',
    );
  }
  request.principal = principal;
  return principal;
}
