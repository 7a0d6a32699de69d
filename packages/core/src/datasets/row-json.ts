/**
 * One dataset row as a JSON line, where the row's strings are JSON text: a `TextCandidate`'s
 * prompt (a column) and completion (an element of a column's array), each already
 * `JSON.stringify` of its messages. Everything else (a correction's parsed message, labels,
 * margins) is written by `JSON.stringify`. For such a row the line is the one `JSON.stringify`
 * writes of the row with its texts parsed, without parsing them: a build over millions of
 * answers writes its rows by concatenation.
 *
 * Only for rows of text candidates: a row whose columns hold plain strings as values would be
 * written wrong (no builder makes one).
 */
export function rowJson(row: object): string {
  let out = '{';
  for (const [key, value] of Object.entries(row)) {
    const json = valueJson(value);
    // As JSON.stringify: a property whose value has no JSON (undefined, a function) is left out.
    if (json === undefined) continue;
    out += `${out.length > 1 ? ',' : ''}${JSON.stringify(key)}:${json}`;
  }
  return `${out}}`;
}

function valueJson(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) return JSON.stringify(value);
  // In an array, a value without JSON is `null`, as JSON.stringify writes it.
  return `[${value.map((v) => (typeof v === 'string' ? v : (JSON.stringify(v) ?? 'null'))).join(',')}]`;
}
