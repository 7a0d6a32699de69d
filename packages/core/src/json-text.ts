/**
 * JSON text for any value `JSON.parse` can return, however deeply nested. `JSON.stringify`
 * recurses and throws "Maximum call stack size exceeded" at a few thousand levels, yet
 * `JSON.parse` (iterative in V8) accepts far deeper input: the gateway must still forward such a
 * body upstream and keep it, unchanged, as a dead letter's evidence. The common case costs one
 * native `JSON.stringify`; only when it overflows does the explicit-stack walk below run.
 *
 * Like `JSON.stringify`, strings are escaped so the text is well-formed (a NUL becomes `\u0000`,
 * a lone surrogate `\udXXX`): the result itself can be stored in any text column.
 */
export function jsonText(value: unknown): string {
  try {
    return JSON.stringify(value) ?? 'null';
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    return deepJsonText(value);
  }
}

/** A piece of output already written as text, told apart from values still to encode. */
class Raw {
  constructor(readonly text: string) {}
}

/** The explicit-stack encoder: same output as `JSON.stringify` for plain JSON values. */
function deepJsonText(root: unknown): string {
  const out: string[] = [];
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const next = stack.pop();
    if (next instanceof Raw) {
      out.push(next.text);
      continue;
    }
    if (next === null || typeof next !== 'object') {
      out.push(JSON.stringify(next) ?? 'null');
      continue;
    }
    // Pushed in reverse, so that popping writes them in order.
    if (Array.isArray(next)) {
      stack.push(new Raw(']'));
      for (let i = next.length - 1; i >= 0; i--) {
        stack.push(next[i] === undefined || typeof next[i] === 'function' ? null : next[i]);
        if (i > 0) stack.push(new Raw(','));
      }
      stack.push(new Raw('['));
      continue;
    }
    const entries = Object.entries(next).filter(([, v]) => v !== undefined && typeof v !== 'function');
    stack.push(new Raw('}'));
    for (let i = entries.length - 1; i >= 0; i--) {
      const [k, v] = entries[i]!;
      stack.push(v);
      stack.push(new Raw(`${i > 0 ? ',' : ''}${JSON.stringify(k)}:`));
    }
    stack.push(new Raw('{'));
  }
  return out.join('');
}
