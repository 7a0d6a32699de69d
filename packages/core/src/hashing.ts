import type { ChatMessage } from './schemas/interaction.js';
import { sha256Hex } from './sha256.js';

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
  return sha256Hex(canonical).slice(0, 32);
}

export type ApiKeyKind = 'secret' | 'public';

/** The prefix that says what kind of key an API key is (keys are made in the store). */
export const apiKeyPrefix: Record<ApiKeyKind, string> = { secret: 'rk_sec_', public: 'rk_pub_' };

export function apiKeyKindOf(key: string): ApiKeyKind | undefined {
  if (key.startsWith(apiKeyPrefix.secret)) return 'secret';
  if (key.startsWith(apiKeyPrefix.public)) return 'public';
  return undefined;
}
