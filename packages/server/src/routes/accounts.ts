import { AccountEmail, AccountPassword, ProjectRole, RatchetError } from '@ratchet/core';
import { csrfTokenOf, type Principal, type Store } from '@ratchet/store';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ServerConfig } from '../config.js';
import { cookieValue, SESSION_COOKIE } from '../middleware/auth.js';
import { RateLimiter } from '../middleware/rate-limit.js';
import type { OidcFlow, OidcSignIn } from '../oidc.js';
import type { RouteTable } from '../routing.js';

const OIDC_COOKIE = 'ratchet_oidc';
const OIDC_COOKIE_PATH = '/api/v1/auth/oidc';

const ProjectName = z.string().min(1).max(100);

const SignIn = z.strictObject({
  email: AccountEmail,
  // Checked against the hash, not the rules for new passwords (those may have changed since).
  password: z.string().min(1).max(1024),
  project: ProjectName.optional(),
});

const MemberAdd = z.strictObject({
  email: AccountEmail,
  role: ProjectRole,
  name: z.string().trim().min(1).max(200).optional(),
  /** For a new account that signs in with a password; without it, the account signs in with SSO. */
  password: AccountPassword.optional(),
});

const MemberRef = z.strictObject({ userId: z.string().min(1).max(100) });

/** The rater id a person's ratings carry, so calibration and agreement see one rater per person. */
export function personRaterId(userId: string): string {
  return `user:${userId}`;
}

function cookie(
  name: string,
  value: string,
  attrs: { path: string; maxAgeSeconds: number; secure: boolean },
) {
  return [
    `${name}=${value}`,
    `Path=${attrs.path}`,
    `Max-Age=${Math.max(0, Math.floor(attrs.maxAgeSeconds))}`,
    'HttpOnly',
    // Lax, not Strict: the provider's redirect back is a cross-site navigation that must carry
    // the flow cookie; writes are guarded by the CSRF token either way.
    'SameSite=Lax',
    ...(attrs.secure ? ['Secure'] : []),
  ].join('; ');
}

/** Who is signed in, for the dashboard: the person, the project, their role and the CSRF token. */
async function sessionView(store: Store, sessionId: string) {
  const grant = await store.accounts.session(sessionId);
  if (!grant)
    throw new RatchetError(
      'unauthorized',
      'authorization: not signed in, or the session ended',
      'authorization',
    );
  const project = await store.projects.get(grant.projectId);
  return {
    user: { id: grant.userId, email: grant.email },
    project,
    role: grant.role,
    raterId: personRaterId(grant.userId),
    csrfToken: csrfTokenOf(sessionId),
    expiresAt: grant.expiresAt,
  };
}

/** Member management is a person's act: a key (which an admin can mint) may not make owners. */
function requirePerson(principal: Principal): void {
  if (!principal.user)
    throw new RatchetError(
      'forbidden',
      'authorization: members are managed by an owner signed in, or with `ratchet users` on the server',
      'authorization',
    );
}

export function registerAccountRoutes(
  routes: RouteTable,
  store: Store,
  config: ServerConfig,
  oidc: OidcSignIn | undefined,
): void {
  const ttlMs = config.sessionTtlHours * 3600 * 1000;
  // Password guessing: 10 tries per account at once, then one every 6 seconds (per server).
  const signInLimiter = new RateLimiter(1 / 6, 10, 'sign-ins to this account');
  const secure = config.cookieSecure;

  /** Opens a session in the project (by name, else the person's first) and sets its cookie. */
  const signIn = async (reply: FastifyReply, userId: string, projectName: string | undefined) => {
    const memberships = await store.accounts.membershipsOf(userId);
    let projectId = memberships[0]?.projectId;
    if (projectName !== undefined) {
      const project = await store.projects.getByName(projectName);
      projectId = memberships.find((m) => m.projectId === project?.id)?.projectId;
      if (!projectId)
        throw new RatchetError('forbidden', `project: you are not a member of "${projectName}"`, 'project');
    }
    if (!projectId)
      throw new RatchetError('forbidden', 'project: you are not a member of any project yet', 'project');
    const opened = await store.accounts.openSession(userId, projectId, ttlMs);
    reply.header(
      'set-cookie',
      cookie(SESSION_COOKIE, opened.sessionId, { path: '/', maxAgeSeconds: ttlMs / 1000, secure }),
    );
    return opened.sessionId;
  };

  routes.add({
    method: 'GET',
    url: '/api/v1/auth/config',
    access: 'none',
    tag: 'accounts',
    summary: 'How people sign in here: with a password always, with SSO when configured.',
    handler: async () => ({ password: true, sso: oidc !== undefined }),
  });

  routes.add({
    method: 'POST',
    url: '/api/v1/session',
    access: 'none',
    tag: 'accounts',
    summary:
      'Sign in with email and password: sets an HTTP-only session cookie; the answer holds the CSRF token writes must send in x-ratchet-csrf.',
    body: SignIn,
    response: { status: 201, description: 'Signed in' },
    handler: async ({ body, reply }) => {
      signInLimiter.take(body.email);
      const user = await store.accounts.verifyPassword(body.email, body.password);
      if (!user) throw new RatchetError('unauthorized', 'password: wrong email or password', 'password');
      return sessionView(store, await signIn(reply, user.id, body.project));
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/session',
    access: 'none',
    tag: 'accounts',
    summary:
      'Who is signed in (from the session cookie): person, project, role, rater id and CSRF token; 401 if nobody.',
    handler: async ({ request }) => {
      const sessionId = cookieValue(request, SESSION_COOKIE);
      if (!sessionId) throw new RatchetError('unauthorized', 'authorization: not signed in', 'authorization');
      return sessionView(store, sessionId);
    },
  });

  routes.add({
    method: 'DELETE',
    url: '/api/v1/session',
    access: 'none',
    tag: 'accounts',
    summary: 'Sign out: the session ends on the server and the cookie is cleared.',
    handler: async ({ request, reply }) => {
      const sessionId = cookieValue(request, SESSION_COOKIE);
      if (sessionId) await store.accounts.closeSession(sessionId);
      reply.header('set-cookie', cookie(SESSION_COOKIE, '', { path: '/', maxAgeSeconds: 0, secure }));
      return { signedOut: true };
    },
  });

  routes.add({
    method: 'GET',
    url: '/api/v1/members',
    access: 'read',
    tag: 'accounts',
    summary: "The project's members with their roles (owner, admin, annotator, viewer).",
    handler: async ({ principal }) => ({ items: await store.accounts.members(principal.projectId) }),
  });

  routes.add({
    method: 'POST',
    url: '/api/v1/members',
    access: 'admin',
    roles: ['owner'],
    tag: 'accounts',
    summary:
      'Add a member by email with a role (owner only); a new account gets the password given, or signs in with SSO.',
    body: MemberAdd,
    response: { status: 201, description: 'Added' },
    handler: async ({ body, principal }) => {
      requirePerson(principal);
      const existing = await store.accounts.getUserByEmail(body.email);
      if (existing && body.password !== undefined)
        throw new RatchetError(
          'conflict',
          'password: the account exists; its owner keeps their password (reset it with ratchet users reset-password)',
          'password',
        );
      const user =
        existing ??
        (await store.accounts.createUser({ email: body.email, name: body.name, password: body.password }));
      await store.accounts.setRole(principal.projectId, user.id, body.role, principal.actor);
      return { ...user, role: body.role };
    },
  });

  routes.add({
    method: 'PUT',
    url: '/api/v1/members/:userId',
    access: 'admin',
    roles: ['owner'],
    tag: 'accounts',
    summary: "Change a member's role (owner only); the last owner stays an owner.",
    params: MemberRef,
    body: z.strictObject({ role: ProjectRole }),
    handler: async ({ params, body, principal }) => {
      requirePerson(principal);
      if ((await store.accounts.roleOf(principal.projectId, params.userId)) === undefined)
        throw new RatchetError(
          'not_found',
          `userId: ${params.userId} is not a member of this project`,
          'userId',
        );
      await store.accounts.setRole(principal.projectId, params.userId, body.role, principal.actor);
      return { userId: params.userId, role: body.role };
    },
  });

  routes.add({
    method: 'DELETE',
    url: '/api/v1/members/:userId',
    access: 'admin',
    roles: ['owner'],
    tag: 'accounts',
    summary: 'Remove a member from the project (owner only; the account stays); their sessions here end.',
    params: MemberRef,
    handler: async ({ params, principal }) => {
      requirePerson(principal);
      await store.accounts.removeMember(principal.projectId, params.userId, principal.actor);
      return { userId: params.userId, removed: true };
    },
  });

  registerOidcRoutes(routes, store, config, oidc, signIn, secure);
}

function registerOidcRoutes(
  routes: RouteTable,
  store: Store,
  config: ServerConfig,
  oidc: OidcSignIn | undefined,
  signIn: (reply: FastifyReply, userId: string, projectName: string | undefined) => Promise<string>,
  secure: boolean,
): void {
  const sso = (): OidcSignIn => {
    if (!oidc) throw new RatchetError('not_found', 'sso: sign-in with SSO is not configured here', 'sso');
    return oidc;
  };
  routes.add({
    method: 'GET',
    url: '/api/v1/auth/oidc/start',
    access: 'none',
    tag: 'accounts',
    summary: 'Sign in with SSO: redirects to the identity provider (authorization code with PKCE).',
    handler: async ({ reply }) => {
      const { url, flow } = await sso().start();
      const value = Buffer.from(JSON.stringify(flow)).toString('base64url');
      reply.header(
        'set-cookie',
        cookie(OIDC_COOKIE, value, { path: OIDC_COOKIE_PATH, maxAgeSeconds: 600, secure }),
      );
      return reply.redirect(url, 302);
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/auth/oidc/callback',
    access: 'none',
    tag: 'accounts',
    summary:
      'Where the identity provider sends people back: matches the account by subject or verified email (a new one joins the configured project with the default role), signs in, redirects to the dashboard.',
    handler: async ({ request, reply }) => {
      const signInWithSso = sso();
      const flow = readFlow(request);
      const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?')) : '';
      const identity = await signInWithSso.finish(query, flow);
      const { user } = await store.accounts.userForOidc(identity);
      const projectName = config.oidcProject;
      if (projectName) {
        const project = await store.projects.getByName(projectName);
        if (project && (await store.accounts.roleOf(project.id, user.id)) === undefined)
          await store.accounts.setRole(project.id, user.id, config.oidcDefaultRole, `sso:${identity.issuer}`);
      }
      await signIn(reply, user.id, undefined);
      // The flow cookie has done its work; the session cookie is set by signIn.
      reply.header('set-cookie', [
        reply.getHeader('set-cookie') as string,
        cookie(OIDC_COOKIE, '', { path: OIDC_COOKIE_PATH, maxAgeSeconds: 0, secure }),
      ]);
      return reply.redirect('/', 302);
    },
  });
}

const FlowCookie = z.strictObject({
  state: z.string().min(1).max(200),
  nonce: z.string().min(1).max(200),
  codeVerifier: z.string().min(43).max(128),
});

function readFlow(request: FastifyRequest): OidcFlow {
  const raw = cookieValue(request, OIDC_COOKIE);
  const problem = () =>
    new RatchetError('unauthorized', 'state: no sign-in under way in this browser; start again', 'state');
  if (!raw) throw problem();
  try {
    const parsed = FlowCookie.safeParse(JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')));
    if (!parsed.success) throw problem();
    return parsed.data;
  } catch {
    throw problem();
  }
}
