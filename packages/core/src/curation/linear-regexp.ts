/**
 * Patterns that other people write (a dataset build spec's custom PII patterns) run over every
 * interaction's text, so one like `(a+)+$` or `\w+@\w+\.\w+` could take minutes on a long text with
 * V8's backtracking engine. They are compiled with V8's linear-time engine instead (the `l` flag,
 * an automaton that never backtracks: time linear in the text for any pattern it accepts). It
 * refuses what cannot run in linear time: backreferences, lookarounds, and counted repetitions
 * above 16 (`\d{17}`); such a pattern is refused with its reason, before any text is read.
 *
 * The engine is behind a V8 flag that only changes how `l` regexps compile (nothing else reads
 * it). Core cannot set it (that takes node:v8, and core must load in a browser): the store turns
 * it on when it loads (store/src/regexp-engine.ts), and the engine is looked for at each compile.
 * Where it is off (a browser, a future Node without it) `l` is an invalid flag and every custom
 * pattern is refused: the check fails closed, never open.
 */

/** The flag as a value: a literal `/a/l` would not even parse where the engine is off. */
const LINEAR_FLAG = 'l';

function hasLinearEngine(): boolean {
  try {
    new RegExp('a', LINEAR_FLAG);
    return true;
  } catch {
    return false;
  }
}

const noEngine = 'this runtime has no linear-time regexp engine';

export type LinearRegExpResult = { ok: true; regexp: RegExp } | { ok: false; reason: string };

const compiled = new Map<string, LinearRegExpResult>();
const MAX_CACHED = 1000;
/** Longer sources are refused before compiling: a pattern is a few dozen characters. */
export const MAX_PATTERN_LENGTH = 1000;

/** `source` compiled for linear-time global matching, or why it cannot be. Cached by source. */
export function linearRegExp(source: string): LinearRegExpResult {
  const hit = compiled.get(source);
  if (hit) return hit;
  const result = compile(source);
  // A refusal for want of the engine is not kept: the engine may be turned on later.
  if (!result.ok && result.reason === noEngine) return result;
  if (compiled.size >= MAX_CACHED) compiled.clear();
  compiled.set(source, result);
  return result;
}

function compile(source: string): LinearRegExpResult {
  if (source.length > MAX_PATTERN_LENGTH)
    return { ok: false, reason: `longer than ${MAX_PATTERN_LENGTH} characters` };
  try {
    new RegExp(source, 'g');
  } catch (err) {
    return { ok: false, reason: `not a valid regular expression (${(err as Error).message})` };
  }
  if (!hasLinearEngine()) return { ok: false, reason: noEngine };
  try {
    return { ok: true, regexp: new RegExp(source, `g${LINEAR_FLAG}`) };
  } catch {
    return {
      ok: false,
      reason:
        'cannot run in linear time (no backreferences, lookaheads or lookbehinds, and no counted repetition above 16)',
    };
  }
}
