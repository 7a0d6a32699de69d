import type { ChatMessage } from '../schemas/interaction.js';
import { type PiiConfig, type PiiFinding, redactPii } from './pii.js';

/**
 * Chat messages are loose JSON (content parts, tool calls, provider keys), and any string in them
 * can carry text a model learns from. These keys only name the structure: never text to screen.
 */
const structuralKeys = new Set(['role', 'type']);

function collectStrings(value: unknown, out: string[], skip: ReadonlySet<string>): void {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) collectStrings(v, out, skip);
  else if (value !== null && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) if (!skip.has(k)) collectStrings(v, out, skip);
}

// The speaker's name is a label, not text the model writes: left out of the filters' text, so a
// name does not make two answers look different or an answer longer (PII redaction still sees it).
const textSkippedKeys = new Set([...structuralKeys, 'name']);

/**
 * The text of a message the filters screen: a string content as it is; otherwise every string in
 * its content parts, tool calls and other keys, one per line (text hidden in a tool call's
 * arguments or a content part is screened like plain content).
 */
export function messageText(message: ChatMessage): string {
  if (
    typeof message.content === 'string' &&
    Object.keys(message).every((k) => textSkippedKeys.has(k) || k === 'content')
  )
    return message.content;
  const out: string[] = [];
  collectStrings(message, out, textSkippedKeys);
  return out.join('\n');
}

function redactValue(value: unknown, config: PiiConfig, findings: PiiFinding[]): unknown {
  if (typeof value === 'string') {
    const r = redactPii(value, config);
    findings.push(...r.findings);
    return r.findings.length ? r.text : value;
  }
  if (Array.isArray(value)) {
    const next = value.map((v) => redactValue(v, config, findings));
    return next.some((v, i) => v !== value[i]) ? next : value;
  }
  if (value !== null && typeof value === 'object') {
    let changed = false;
    const next: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      next[k] = structuralKeys.has(k) ? v : redactValue(v, config, findings);
      if (next[k] !== v) changed = true;
    }
    return changed ? next : value;
  }
  return value;
}

/**
 * Redacts PII in every string of a message (content, content parts, tool-call arguments, name),
 * keeping its structure; the message itself when nothing was found.
 */
export function redactMessage(
  message: ChatMessage,
  config: PiiConfig = {},
): { message: ChatMessage; findings: PiiFinding[] } {
  const findings: PiiFinding[] = [];
  const redacted = redactValue(message, config, findings) as ChatMessage;
  return { message: redacted, findings };
}
