import { z } from 'zod';
import type { ApiKeyScope } from './api-key-scopes.js';

/**
 * What a person may do in a project, one list of names, most to least: `owner` everything and
 * the members; `admin` models, routes, loop policies, keys; `annotator` the annotation queue and
 * their own ratings; `viewer` reads.
 */
export const projectRoles = ['owner', 'admin', 'annotator', 'viewer'] as const;
export const ProjectRole = z.enum(projectRoles);
export type ProjectRole = z.infer<typeof ProjectRole>;

/**
 * Which roles may call a route that admits keys with a scope: the one map from a route's declared
 * access to people. `ingest` (capture, OTLP, the gateway) and `public` are machine scopes no
 * person needs to hold; `admin` is admin and owner; `read` everyone. A route that needs something
 * else (the members, which only an owner manages; ratings, which annotators write) names its
 * roles itself, in the route table.
 */
export const rolesOfScope: Record<ApiKeyScope, readonly ProjectRole[]> = {
  read: projectRoles,
  admin: ['owner', 'admin'],
  ingest: ['owner', 'admin'],
  public: [],
};

/**
 * The roles that rate: annotators (as themselves) and those above them. The feedback route and
 * the annotation queue's writes admit exactly these; a viewer only reads.
 */
export const ratingRoles: readonly ProjectRole[] = ['owner', 'admin', 'annotator'];

/** The roles a route admits: its own list when it names one, else those of its scopes. */
export function rolesOfAccess(
  scopes: readonly ApiKeyScope[],
  declared?: readonly ProjectRole[],
): readonly ProjectRole[] {
  if (declared) return declared;
  return projectRoles.filter((role) => scopes.some((scope) => rolesOfScope[scope].includes(role)));
}

/** An account's email as given at an input edge, kept lowercase so one person is one account. */
export const AccountEmail = z.string().trim().toLowerCase().max(320).email('must be an email address');

/** A password as given: long enough to resist guessing, short enough that hashing it is cheap. */
export const AccountPassword = z
  .string()
  .min(12, 'must be at least 12 characters')
  .max(1024, 'must be at most 1024 characters');
