import { createHash } from 'node:crypto';
import { type ChatMessage, promptHash } from '@ratchet/core';

function sha256Hex(text: string, length: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

/**
 * A deterministic interaction id from content (model, prompt, answer), so importing the same file
 * twice, or the same answer from two files, names the same interaction. The prompt and the answer
 * are hashed with core's `promptHash`, which ignores key order and extra message fields.
 */
export function contentInteractionId(
  prefix: string,
  content: { model: string; messages: readonly ChatMessage[]; output: string | ChatMessage },
): string {
  const output: ChatMessage =
    typeof content.output === 'string' ? { role: 'assistant', content: content.output } : content.output;
  const digest = sha256Hex(
    [content.model, promptHash(content.messages), promptHash([output])].join('\u0000'),
    32,
  );
  return `${prefix}-${digest}`;
}

/**
 * A deterministic idempotency key from the parts that make a feedback event what it is. Parts are
 * JSON-encoded in a fixed order (callers pass arrays, never objects built in varying order).
 */
export function contentKey(prefix: string, parts: readonly unknown[]): string {
  return `${prefix}:${sha256Hex(JSON.stringify(parts), 32)}`;
}
