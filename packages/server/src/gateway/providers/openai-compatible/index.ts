import { jsonText } from '@ratchet/core';
import { Pool } from 'undici';
import type { UpstreamConfig } from '../../config.js';
import type { Provider, UpstreamResponse } from '../types.js';

/** Any server speaking OpenAI's chat completions: vLLM, Ollama, llama.cpp, OpenAI, the Ratchet worker. */
export class OpenAICompatibleProvider implements Provider {
  private readonly pool: Pool;
  /** The upstream's base path (`/v1`), to which `/chat/completions`, `/embeddings` and `/models` are appended. */
  private readonly base: string;
  private readonly headers: Record<string, string>;

  constructor(
    readonly name: string,
    private readonly config: UpstreamConfig,
  ) {
    const url = new URL(config.baseURL);
    this.base = url.pathname.replace(/\/$/, '');
    // A pool of kept-alive connections per upstream: no TCP handshake on the hot path.
    this.pool = new Pool(url.origin, {
      connections: config.connections,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: config.timeoutMs,
      bodyTimeout: config.timeoutMs,
    });
    const apiKey = config.apiKeyEnv ? process.env[config.apiKeyEnv] : undefined;
    this.headers = {
      'content-type': 'application/json',
      ...config.headers,
      ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
    };
  }

  chatCompletions(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse> {
    return this.request('POST', '/chat/completions', body, signal);
  }

  embeddings(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse> {
    return this.request('POST', '/embeddings', body, signal);
  }

  models(signal: AbortSignal): Promise<UpstreamResponse> {
    return this.request('GET', '/models', undefined, signal);
  }

  private async request(
    method: 'GET' | 'POST',
    path: string,
    body: Record<string, unknown> | undefined,
    signal: AbortSignal,
  ): Promise<UpstreamResponse> {
    const res = await this.pool.request({
      path: `${this.base}${path}`,
      method,
      headers: this.headers,
      // A body nested too deep for JSON.stringify still parsed; it must still reach the upstream.
      body: body === undefined ? undefined : jsonText(body),
      signal,
    });
    const contentType = res.headers['content-type'];
    return {
      status: res.statusCode,
      contentType: Array.isArray(contentType) ? contentType[0] : contentType,
      body: res.body,
    };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

export function createOpenAICompatibleProvider(name: string, config: UpstreamConfig): Provider {
  return new OpenAICompatibleProvider(name, config);
}
