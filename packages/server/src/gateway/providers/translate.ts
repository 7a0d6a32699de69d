import { Readable, Transform } from 'node:stream';
import type { UpstreamResponse } from './types.js';

/**
 * What providers that do not speak OpenAI share: their answers become OpenAI-shaped answers, so
 * the gateway logs, relays and assembles every provider's call the same way.
 */

type Json = Record<string, unknown>;

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function readAll(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function json(status: number, value: unknown): UpstreamResponse {
  return {
    status,
    contentType: 'application/json',
    body: Readable.from([Buffer.from(JSON.stringify(value))]),
  };
}

/** OpenAI's error shape, which every OpenAI client parses. */
export function openAIError(message: string, type: string, code: string | null = null): Json {
  return { error: { message, type, param: null, code } };
}

/** A provider's message text from its error body, whatever its shape, else the body itself (cut short). */
export type ErrorReader = (
  body: unknown,
  raw: string,
  status: number,
) => { message: string; type: string; code?: string };

export interface Translation {
  /** The provider's non-streamed answer as an OpenAI chat completion. */
  completion(body: Json): Json;
  /** A parser of the provider's stream that emits OpenAI chunk SSE lines. */
  stream(): StreamTranslator;
  error: ErrorReader;
  /** A provider status OpenAI clients would not know (Anthropic's 529 overloaded) as one they do. */
  status?(status: number): number;
}

/** Reads one provider's SSE events and returns the OpenAI `data:` lines they become. */
export interface StreamTranslator {
  event(name: string | undefined, data: Json): string;
  /** What to send when the provider's stream ends (usage, `[DONE]`). */
  end(): string;
}

/**
 * The provider's response as OpenAI's: an error as OpenAI's error body (its status kept), a
 * stream through `translation.stream()`, anything else through `translation.completion`. A 2xx
 * body that is not the provider's JSON is a 502 naming the provider.
 */
export async function translateResponse(
  provider: string,
  res: UpstreamResponse,
  translation: Translation,
): Promise<UpstreamResponse> {
  const status = translation.status?.(res.status) ?? res.status;
  if (res.status === 200 && (res.contentType ?? '').includes('text/event-stream'))
    return {
      status: 200,
      contentType: 'text/event-stream',
      body: res.body.pipe(sseTranslator(translation.stream())),
    };
  const raw = await readAll(res.body);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = undefined;
  }
  if (res.status >= 400) {
    const e = translation.error(parsed, raw, res.status);
    return json(status, openAIError(e.message, e.type, e.code ?? null));
  }
  if (!isObject(parsed))
    return json(
      502,
      openAIError(
        `${provider} answered with a body that is not JSON: ${raw.slice(0, 200)}`,
        'upstream_error',
      ),
    );
  return json(status, translation.completion(parsed));
}

/** The OpenAI error `type` for an HTTP status, for providers whose errors carry none OpenAI knows. */
export function errorTypeFor(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** A Transform from a provider's SSE bytes to OpenAI chunk SSE bytes, event by event. */
function sseTranslator(translator: StreamTranslator): Transform {
  const decoder = new TextDecoder();
  let pending = '';
  let eventName: string | undefined;
  let data = '';
  const dispatch = (): string => {
    const text = data;
    const name = eventName;
    data = '';
    eventName = undefined;
    if (text === '' || text === '[DONE]') return '';
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return '';
    }
    return isObject(parsed) ? translator.event(name, parsed) : '';
  };
  const lines = (final: boolean): string => {
    let out = '';
    let newline = pending.indexOf('\n');
    while (newline !== -1) {
      const line = pending.slice(0, newline).replace(/\r$/, '');
      pending = pending.slice(newline + 1);
      if (line === '') out += dispatch();
      else if (line.startsWith('event:')) eventName = line.slice(6).trim();
      else if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(5).trimStart();
      newline = pending.indexOf('\n');
    }
    if (final) {
      if (pending.startsWith('data:')) data += (data ? '\n' : '') + pending.slice(5).trimStart();
      pending = '';
      out += dispatch();
    }
    return out;
  };
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      pending += decoder.decode(chunk, { stream: true });
      done(null, lines(false));
    },
    flush(done) {
      pending += decoder.decode();
      done(null, lines(true) + translator.end());
    },
  });
}

/** One OpenAI `chat.completion.chunk` as an SSE line. */
export function chunkLine(base: Json, choices: unknown[], usage?: Json): string {
  return `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices, ...(usage ? { usage } : {}) })}\n\n`;
}

export const DONE = 'data: [DONE]\n\n';

/** OpenAI's `content` as text: a string, or the text parts of an array (other parts are dropped by the caller). */
export function contentParts(content: unknown): Json[] {
  if (typeof content === 'string') return content === '' ? [] : [{ type: 'text', text: content }];
  return Array.isArray(content) ? content.filter(isObject) : [];
}

export function contentText(content: unknown): string {
  return contentParts(content)
    .filter((p) => p.type === 'text' && typeof p.text === 'string')
    .map((p) => p.text as string)
    .join('');
}

/** `stop` as OpenAI takes it (a string or strings) as a list. */
/** An image part's `data:` URL as its media type and base64 payload; null for any other URL. */
export function dataUrl(url: unknown): { mediaType: string; data: string } | null {
  const match = typeof url === 'string' ? /^data:([^;]+);base64,(.*)$/s.exec(url) : null;
  return match ? { mediaType: match[1]!, data: match[2]! } : null;
}

export function stopList(stop: unknown): string[] | undefined {
  if (typeof stop === 'string') return [stop];
  if (Array.isArray(stop) && stop.every((s) => typeof s === 'string')) return stop as string[];
  return undefined;
}

/** A tool call's arguments (a JSON text in OpenAI) as the object other providers take. */
export function parseArguments(text: unknown): Json {
  if (typeof text !== 'string' || text.trim() === '') return {};
  try {
    const value = JSON.parse(text);
    return isObject(value) ? value : { value };
  } catch {
    return { text };
  }
}
