import { jsonText } from '@ratchet/core';
import { Pool } from 'undici';
import type { UpstreamConfig } from '../config.js';
import type { UpstreamResponse } from './types.js';

/**
 * The HTTP side every provider shares: a pool of kept-alive connections per upstream (no TCP
 * handshake on the hot path), the upstream's base path, its configured headers plus the
 * provider's own (its key header), and the connect timeout failover counts on.
 */
export class UpstreamHttp {
  private readonly pool: Pool;
  /** The upstream's base path (e.g. `/v1`), to which each provider appends its paths. */
  readonly base: string;
  private readonly headers: Record<string, string>;

  constructor(config: UpstreamConfig, providerHeaders: Record<string, string>) {
    const url = new URL(config.baseURL);
    this.base = url.pathname.replace(/\/$/, '');
    this.pool = new Pool(url.origin, {
      connections: config.connections,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      connect: { timeout: config.connectTimeoutMs },
      headersTimeout: config.timeoutMs,
      bodyTimeout: config.timeoutMs,
    });
    this.headers = { 'content-type': 'application/json', ...config.headers, ...providerHeaders };
  }

  async request(
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

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** The upstream's key from the environment variable its config names, if any. */
export function apiKey(config: UpstreamConfig): string | undefined {
  return config.apiKeyEnv ? process.env[config.apiKeyEnv] : undefined;
}
