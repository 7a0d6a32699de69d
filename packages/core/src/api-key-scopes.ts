import { z } from 'zod';
import type { ApiKeyKind } from './hashing.js';

/**
 * What a key may do, one list of names: `ingest` logs calls (capture, OTLP, the gateway) and
 * sends any feedback; `public` sends feedback with a feedback token only (safe in a browser);
 * `read` reads; `admin` changes things (datasets, training, models, routes, experiments, keys,
 * deletions). No scope implies another, so a route's 403 can name the one that is missing.
 */
export const apiKeyScopes = ['ingest', 'public', 'read', 'admin'] as const;
export const ApiKeyScope = z.enum(apiKeyScopes);
export type ApiKeyScope = z.infer<typeof ApiKeyScope>;

/** A key's scopes as given at an input edge: at least one, none twice. */
export const ApiKeyScopes = z
  .array(ApiKeyScope)
  .min(1, 'name at least one scope')
  .max(apiKeyScopes.length)
  .refine((s) => new Set(s).size === s.length, 'a scope is named twice');

/** The scopes the two kinds of key had before scopes existed: a secret key may do everything. */
export function scopesOfKind(kind: ApiKeyKind): ApiKeyScope[] {
  return kind === 'secret' ? [...apiKeyScopes] : ['public'];
}

/**
 * The key's prefix: `rk_pub_` only for a key that can do nothing but token-bound feedback (the
 * one kind meant to sit in a browser's page), `rk_sec_` for anything more.
 */
export function kindOfScopes(scopes: readonly ApiKeyScope[]): ApiKeyKind {
  return scopes.length === 1 && scopes[0] === 'public' ? 'public' : 'secret';
}

/** Stored as one text column, in the list's order, so both databases keep it the same way. */
export function encodeScopes(scopes: readonly ApiKeyScope[]): string {
  return apiKeyScopes.filter((s) => scopes.includes(s)).join(' ');
}

export function decodeScopes(text: string): ApiKeyScope[] {
  return text.split(' ').filter((s): s is ApiKeyScope => (apiKeyScopes as readonly string[]).includes(s));
}
