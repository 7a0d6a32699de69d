/**
 * The few calls the harness makes to OpenAI-compatible servers (the gateway, the worker's serve,
 * vLLM, a hosted judge): chat completions, the worker's reward scores, and token log-probabilities
 * of a given answer. Plain fetch with a timeout; errors name the endpoint.
 */
import type { ChatMessage } from '@ratchet/core';
import { z } from 'zod';

export const EndpointSpec = z.strictObject({
  /** Base URL up to and including /v1. */
  baseURL: z.url(),
  /** The model name sent to the endpoint. */
  model: z.string().min(1),
  /** Name of the environment variable holding the API key (keys are never stored). */
  apiKeyEnv: z.string().min(1).optional(),
  headers: z.record(z.string(), z.string()).default({}),
  timeoutMs: z.number().int().positive().default(120_000),
  /**
   * How errors and notes name this endpoint instead of its URL. The API sets the upstream's name:
   * what it stores is readable by its callers, who are shown upstream names, never URLs.
   */
  label: z.string().min(1).optional(),
});
export type EndpointSpec = z.output<typeof EndpointSpec>;
export type EndpointSpecInput = z.input<typeof EndpointSpec>;

/** The endpoint as errors and notes name it: its label, else its URL. */
export const endpointName = (endpoint: EndpointSpec): string => endpoint.label ?? endpoint.baseURL;

/** One of the endpoint's paths as errors name it (`judge /score`, or the full URL). */
const pathName = (endpoint: EndpointSpec, path: string): string =>
  endpoint.label ? `${endpoint.label} ${path}` : `${endpoint.baseURL.replace(/\/+$/, '')}${path}`;

export class EndpointError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
    this.name = 'EndpointError';
  }
}

async function post(endpoint: EndpointSpec, path: string, body: unknown): Promise<Record<string, unknown>> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...endpoint.headers };
  if (endpoint.apiKeyEnv) {
    const key = process.env[endpoint.apiKeyEnv];
    if (!key)
      throw new EndpointError(`environment variable ${endpoint.apiKeyEnv} (the API key) is not set`, null);
    headers.authorization = `Bearer ${key}`;
  }
  const url = `${endpoint.baseURL.replace(/\/+$/, '')}${path}`;
  const where = pathName(endpoint, path);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(endpoint.timeoutMs),
      // The key goes to this endpoint only: a redirect elsewhere is an error, not a second hop.
      redirect: 'error',
    });
  } catch (err) {
    throw new EndpointError(`${where}: ${err instanceof Error ? err.message : String(err)}`, null);
  }
  const text = await res.text();
  if (!res.ok) throw new EndpointError(`${where} answered ${res.status}: ${text.slice(0, 500)}`, res.status);
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new EndpointError(
      `${where} answered with something that is not JSON: ${text.slice(0, 200)}`,
      res.status,
    );
  }
}

export interface GenerationOptions {
  maxTokens: number;
  temperature: number;
  seed?: number;
}

/** The assistant's text for a conversation (non-streaming). */
export async function chatCompletion(
  endpoint: EndpointSpec,
  messages: readonly ChatMessage[],
  options: GenerationOptions,
): Promise<string> {
  const body = await post(endpoint, '/chat/completions', {
    model: endpoint.model,
    messages,
    max_tokens: options.maxTokens,
    temperature: options.temperature,
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
  });
  const choice = (body.choices as { message?: { content?: unknown } }[] | undefined)?.[0];
  const content = choice?.message?.content;
  if (typeof content !== 'string')
    throw new EndpointError(`${endpointName(endpoint)}: the answer has no choices[0].message.content`, 200);
  return content;
}

/** Reward-model scores of whole conversations (the worker's `/v1/score`), one per conversation. */
export async function rewardScores(
  endpoint: EndpointSpec,
  conversations: readonly (readonly ChatMessage[])[],
): Promise<number[]> {
  const body = await post(endpoint, '/score', { model: endpoint.model, conversations });
  const data = body.data as { index: number; score: number }[] | undefined;
  if (!Array.isArray(data) || data.length !== conversations.length)
    throw new EndpointError(`${pathName(endpoint, '/score')}: expected ${conversations.length} scores`, 200);
  const out = new Array<number>(conversations.length);
  for (const d of data) out[d.index] = d.score;
  return out;
}

/**
 * Natural-log probabilities of each token of `completion` as the model's answer to `messages`,
 * from `POST /v1/logprobs` ({ model, messages, completion } -> { token_logprobs }). Returns null
 * when the endpoint does not offer it (404, 405, 501), so perplexity is reported as unavailable
 * instead of failing the evaluation.
 */
export async function completionLogprobs(
  endpoint: EndpointSpec,
  messages: readonly ChatMessage[],
  completion: string,
): Promise<number[] | null> {
  try {
    const body = await post(endpoint, '/logprobs', { model: endpoint.model, messages, completion });
    const lp = body.token_logprobs;
    if (!Array.isArray(lp) || lp.some((x) => typeof x !== 'number'))
      throw new EndpointError(
        `${pathName(endpoint, '/logprobs')}: token_logprobs is not a list of numbers`,
        200,
      );
    return lp as number[];
  } catch (err) {
    if (err instanceof EndpointError && err.status !== null && [404, 405, 501].includes(err.status))
      return null;
    throw err;
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
