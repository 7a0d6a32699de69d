import { RatchetError } from '@ratchet/core';
import { z } from 'zod';

/** The fields every target that talks to a running server shares. */
export const ServerFields = {
  /** OpenAI-compatible base URL up to and including /v1 (the gateway upstream should point here). */
  baseURL: z.url(),
  /** Name of the environment variable holding the server's API key, if it wants one (keys are never stored). */
  apiKeyEnv: z.string().min(1).optional(),
  timeoutMs: z.number().int().positive().default(120_000),
};
export interface ServerSpec {
  baseURL: string;
  apiKeyEnv?: string;
  timeoutMs: number;
}

/** A card of `GET /v1/models`; vLLM adds `root` (the weights' path) and `parent` (a LoRA's base). */
const ModelCard = z.looseObject({
  id: z.string(),
  root: z.string().nullish(),
  parent: z.string().nullish(),
});
export type ModelCard = z.output<typeof ModelCard>;
const ModelList = z.looseObject({ data: z.array(ModelCard) });

const upstream = (message: string) => new RatchetError('upstream_error', message, 'deploy');

export interface HttpAnswer {
  status: number;
  text: string;
}

/** One call to the server; a failure to connect names the URL. */
export async function call(
  spec: ServerSpec,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<HttpAnswer> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (spec.apiKeyEnv) {
    const key = process.env[spec.apiKeyEnv];
    if (!key)
      throw upstream(`environment variable ${spec.apiKeyEnv} (the API key of ${spec.baseURL}) is not set`);
    headers.authorization = `Bearer ${key}`;
  }
  const url = `${spec.baseURL.replace(/\/+$/, '')}${path}`;
  try {
    const res = await fetch(url, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(spec.timeoutMs),
      // The key goes to this server only: a redirect elsewhere is an error, not a second hop.
      redirect: 'error',
    });
    return { status: res.status, text: await res.text() };
  } catch (err) {
    throw upstream(`${method} ${url}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** What the server lists at `GET /v1/models`. */
export async function listModels(spec: ServerSpec): Promise<ModelCard[]> {
  const answer = await call(spec, 'GET', '/models');
  const where = `GET ${spec.baseURL.replace(/\/+$/, '')}/models`;
  if (answer.status !== 200) throw upstream(`${where} answered ${answer.status}: ${errorText(answer.text)}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer.text);
  } catch {
    throw upstream(`${where} answered with something that is not JSON: ${answer.text.slice(0, 200)}`);
  }
  const list = ModelList.safeParse(parsed);
  if (!list.success)
    throw upstream(`${where} answered without a model list (data: [{id}]): ${answer.text.slice(0, 200)}`);
  return list.data.data;
}

/**
 * The message of an error body: OpenAI's and newer vLLM's `{error: {message, type}}`, older
 * vLLM's flat `{message, type}`, FastAPI's `{detail}`, else the text itself (shortened).
 */
export function errorText(text: string): string {
  try {
    const body = JSON.parse(text) as Record<string, unknown>;
    const inner = (typeof body.error === 'object' && body.error ? body.error : body) as Record<
      string,
      unknown
    >;
    if (typeof inner.message === 'string')
      return typeof inner.type === 'string' ? `${inner.type}: ${inner.message}` : inner.message;
    if (typeof body.detail === 'string') return body.detail;
  } catch {
    // not JSON: the text is the message
  }
  return text.slice(0, 500);
}

/** "a, b, c" of the first names (a long list would bury the error). */
export function nameList(cards: readonly ModelCard[]): string {
  if (cards.length === 0) return 'none';
  const names = cards.slice(0, 20).map((c) => c.id);
  return cards.length > 20 ? `${names.join(', ')} and ${cards.length - 20} more` : names.join(', ');
}
