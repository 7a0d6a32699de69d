import type { Readable } from 'node:stream';
import type { UpstreamConfig } from '../config.js';

export interface UpstreamResponse {
  status: number;
  contentType: string | undefined;
  body: Readable;
}

/**
 * One interface for every kind of upstream. A provider turns an OpenAI-style chat request into
 * its upstream's call and hands back the raw response; the gateway does the rest (logging,
 * headers, streaming), so adding a provider is one folder implementing this.
 */
export interface Provider {
  chatCompletions(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse>;
  /**
   * OpenAI's `POST /responses`, passed through: present exactly when the upstream speaks the
   * Responses API (OpenAI, Azure OpenAI), which is how the gateway knows to proxy a Responses
   * call natively instead of translating it to chat completions (`gateway/responses.ts`).
   */
  responses?(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse>;
  /** OpenAI's `POST /embeddings`, passed through; a provider without it cannot serve embeddings. */
  embeddings?(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse>;
  /** OpenAI's `GET /models`: what the upstream serves, for `GET /v1/models`. */
  models?(signal: AbortSignal): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

export type ProviderFactory = (name: string, config: UpstreamConfig) => Provider;
