/**
 * What either database can store, checked the same way for both. PostgreSQL refuses a NUL
 * character in text and jsonb, and invalid UTF-16 (a lone surrogate) cannot be encoded as UTF-8;
 * SQLite takes both and gives them back differently. JSON nested thousands of levels deep
 * overflows the stack of `JSON.stringify` (and SQLite's JSON functions stop at 1,000 levels).
 * So every value on its way to the store is held to one rule: no NUL, no lone surrogate, at most
 * `MAX_JSON_DEPTH` levels. The API refuses a value that breaks it (a 400 naming the field);
 * the gateway, which has already answered the call, stores a repaired copy instead.
 *
 * Both walks recurse at most `MAX_JSON_DEPTH` levels, so a hostile value cannot overflow the
 * stack here either.
 */

/** The deepest nesting of arrays and objects a stored JSON value may have. */
export const MAX_JSON_DEPTH = 64;

/** What replaces a NUL or a lone surrogate in a repaired string. */
export const REPLACEMENT_CHARACTER = '\uFFFD';

/** Replaces what a subtree deeper than `MAX_JSON_DEPTH` becomes in a repaired value. */
export const TRUNCATED_MARKER = `[truncated: nested deeper than ${MAX_JSON_DEPTH} levels]`;

export interface StorableIssue {
  /** Where, in the dotted form errors use (`messages.0.content`); '' for the value itself. */
  path: string;
  reason: 'nul_character' | 'lone_surrogate' | 'too_deep';
  message: string;
}

// A NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding NUL is the point
const UNSTORABLE_CHAR = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UNSTORABLE_CHARS = new RegExp(UNSTORABLE_CHAR.source, 'g');

// Node 20 has String.prototype.isWellFormed (ES2024); the lib here is ES2023.
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

function stringIssue(s: string, path: string): StorableIssue | undefined {
  // The common case, a clean string, without the regex: several times faster on long text, and
  // the gateway's log writer checks every string of every call.
  if (isWellFormed(s) && !s.includes('\u0000')) return undefined;
  const m = UNSTORABLE_CHAR.exec(s);
  if (!m) return undefined;
  return m[0] === '\u0000'
    ? { path, reason: 'nul_character', message: 'contains a NUL character (\\u0000), which cannot be stored' }
    : {
        path,
        reason: 'lone_surrogate',
        message: 'contains a lone UTF-16 surrogate (invalid Unicode), which cannot be stored',
      };
}

function join(path: string, key: string | number): string {
  return path === '' ? String(key) : `${path}.${key}`;
}

/**
 * The first reason `value` cannot be stored as it is, or undefined. Object keys are checked like
 * strings. `path` prefixes the reported path (e.g. `items.3`).
 */
export function storableIssue(value: unknown, path = ''): StorableIssue | undefined {
  return walkIssue(value, path, 0);
}

function walkIssue(value: unknown, path: string, depth: number): StorableIssue | undefined {
  if (typeof value === 'string') return stringIssue(value, path);
  if (value === null || typeof value !== 'object') return undefined;
  if (depth >= MAX_JSON_DEPTH)
    return { path, reason: 'too_deep', message: `nested deeper than ${MAX_JSON_DEPTH} levels` };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const issue = walkIssue(value[i], join(path, i), depth + 1);
      if (issue) return issue;
    }
    return undefined;
  }
  for (const [k, v] of Object.entries(value)) {
    const keyIssue = stringIssue(k, join(path, k));
    if (keyIssue) return { ...keyIssue, message: `key ${keyIssue.message}` };
    const issue = walkIssue(v, join(path, k), depth + 1);
    if (issue) return issue;
  }
  return undefined;
}

/** A string with every NUL and lone surrogate replaced by U+FFFD. */
export function storableString(s: string): string {
  return stringIssue(s, '') !== undefined ? s.replace(UNSTORABLE_CHARS, REPLACEMENT_CHARACTER) : s;
}

/**
 * A copy of `value` that can be stored: strings (and keys) repaired with U+FFFD, subtrees deeper
 * than `MAX_JSON_DEPTH` replaced by `TRUNCATED_MARKER`. `repairs` lists what changed, at most
 * `maxRepairs` entries, so a caller can record it. Values that need nothing are returned as they
 * are (same reference), so the common case allocates nothing.
 */
export function toStorable<T>(value: T, maxRepairs = 20): { value: T; repairs: StorableIssue[] } {
  const repairs: StorableIssue[] = [];
  const note = (issue: StorableIssue) => {
    if (repairs.length < maxRepairs) repairs.push(issue);
  };
  const repaired = walkRepair(value, '', 0, note) as T;
  return { value: repaired, repairs };
}

function walkRepair(value: unknown, path: string, depth: number, note: (i: StorableIssue) => void): unknown {
  if (typeof value === 'string') {
    const issue = stringIssue(value, path);
    if (!issue) return value;
    note(issue);
    return storableString(value);
  }
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_JSON_DEPTH) {
    note({ path, reason: 'too_deep', message: `nested deeper than ${MAX_JSON_DEPTH} levels; truncated` });
    return TRUNCATED_MARKER;
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = walkRepair(value[i], join(path, i), depth + 1, note);
      if (v !== value[i]) {
        out ??= value.slice();
        out[i] = v;
      }
    }
    return out ?? value;
  }
  let out: Record<string, unknown> | undefined;
  const entries = Object.entries(value);
  for (const [k, v] of entries) {
    const key = storableString(k);
    const keyIssue = key === k ? undefined : stringIssue(k, join(path, key));
    if (keyIssue) note({ ...keyIssue, message: `key ${keyIssue.message}; repaired` });
    const nv = walkRepair(v, join(path, key), depth + 1, note);
    if (nv !== v || key !== k) {
      out ??= Object.fromEntries(entries.map(([k2, v2]) => [storableString(k2), v2]));
      out[key] = nv;
    }
  }
  return out ?? value;
}
