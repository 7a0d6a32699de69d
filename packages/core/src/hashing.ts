import { createHash, randomBytes } from 'node:crypto';
import type { ChatMessage } from './schemas/interaction.js';

function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(',')}}`;
}

/**
 * Identifies a prompt (the conversation up to the answer) independently of key order, so that
 * dataset splits can group by prompt and answers to the same prompt can be paired.
 */
export function promptHash(messages: readonly ChatMessage[]): string {
  const canonical = stableStringify(messages.map((m) => ({ role: m.role, content: m.content ?? null })));
  return createHash('sha256').update(canonical).digest('hex').slice(0, 32);
}

export type ApiKeyKind = 'secret' | 'public';

const keyPrefix: Record<ApiKeyKind, string> = { secret: 'rk_sec_', public: 'rk_pub_' };

/** A new API key: 192 random bits behind a prefix that says what kind of key it is. */
export function generateApiKey(kind: ApiKeyKind): string {
  return keyPrefix[kind] + randomBytes(24).toString('base64url');
}

/**
 * Keys carry 192 bits of entropy, so a plain SHA-256 is a safe verifier (no slow KDF needed, as
 * there is nothing to brute-force) and lets the server find a key by its hash in one lookup.
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function apiKeyKindOf(key: string): ApiKeyKind | undefined {
  if (key.startsWith(keyPrefix.secret)) return 'secret';
  if (key.startsWith(keyPrefix.public)) return 'public';
  return undefined;
}
