/** A message's or answer's content as text: a string as it is, anything else (parts, tool calls) as JSON. */
export const contentText = (content: unknown): string =>
  typeof content === 'string' ? content : JSON.stringify(content);
