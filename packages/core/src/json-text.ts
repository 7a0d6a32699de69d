/**
 * JSON text for any value `JSON.parse` can return, however deeply nested. `JSON.stringify`
 * recurses and throws "Maximum call stack size exceeded" at a few thousand levels, yet
 * `JSON.parse` (iterative in V8) accepts far deeper input: the gateway must still forward such a
 * body upstream and keep it, unchanged, as a dead letter's evidence. The common case costs one
 * native `JSON.stringify`; only when it overflows does the explicit-stack walk below run.
 *
 * `maxChars` cuts the text (a caller keeping a prefix need not encode the rest).
 *
 * Like `JSON.stringify`, strings are escaped so the text is well-formed (a NUL becomes `\u0000`,
 * a lone surrogate `\udXXX`): the result itself can be stored in any text column.
 */
export function jsonText(value: unknown, maxChars = Number.POSITIVE_INFINITY): string {
  try {
    const text = JSON.stringify(value) ?? 'null';
    return text.length > maxChars ? text.slice(0, maxChars) : text;
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    return deepJsonText(value, maxChars);
  }
}

/** An array or object being written: where the walk is inside it. */
interface Frame {
  /** The array, or the object's entries. */
  items: readonly unknown[] | readonly [string, unknown][];
  isArray: boolean;
  next: number;
}

function skipped(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

/**
 * The explicit-stack encoder: the same text as `JSON.stringify` for plain JSON values, cut at
 * `maxChars` (a caller that keeps only a prefix need not pay for the rest).
 */
function deepJsonText(root: unknown, maxChars: number): string {
  const out: string[] = [];
  let length = 0;
  const write = (s: string) => {
    out.push(s);
    length += s.length;
  };
  const stack: Frame[] = [];
  // Writes a primitive, or opens a container and returns its frame.
  const open = (v: unknown): void => {
    if (v === null || typeof v !== 'object') {
      write(JSON.stringify(v) ?? 'null');
      return;
    }
    if (Array.isArray(v)) {
      write('[');
      stack.push({ items: v, isArray: true, next: 0 });
      return;
    }
    write('{');
    stack.push({ items: Object.entries(v).filter(([, x]) => !skipped(x)), isArray: false, next: 0 });
  };
  open(root);
  while (stack.length > 0 && length <= maxChars) {
    const frame = stack[stack.length - 1]!;
    if (frame.next >= frame.items.length) {
      write(frame.isArray ? ']' : '}');
      stack.pop();
      continue;
    }
    const i = frame.next++;
    if (i > 0) write(',');
    if (frame.isArray) {
      const v = frame.items[i];
      open(skipped(v) ? null : v);
    } else {
      const [k, v] = frame.items[i] as [string, unknown];
      write(`${JSON.stringify(k)}:`);
      open(v);
    }
  }
  const text = out.join('');
  return text.length > maxChars ? text.slice(0, maxChars) : text;
}
