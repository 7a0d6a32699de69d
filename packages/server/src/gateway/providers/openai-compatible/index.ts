import { jsonText } from '@ratchet/core';
import { Pool } from 'undici';
import type { UpstreamConfig } from '../../config.js';
import type { Provider, UpstreamResponse } from '../types.js';

/** Any server speaking OpenAI's chat completions: vLLM, Ollama, llama.cpp, OpenAI, the Ratchet worker. */
export class OpenAICompatibleProvider implements Provider {
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;

  constructor(
    readonly name: string,
    private readonly config: UpstreamConfig,
  ) {
    const url = new URL(config.baseURL);
    this.path = `${url.pathname.replace(/\/$/, '')}/chat/completions`;
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

  async chatCompletions(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse> {
    const res = await this.pool.request({
      path: this.path,
      method: 'POST',
      headers: this.headers,
      // A body nested too deep for JSON.stringify still parsed; it must still reach the upstream.
      body: jsonText(body),
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
