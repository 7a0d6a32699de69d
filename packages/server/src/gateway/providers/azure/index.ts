import type { UpstreamConfig } from '../../config.js';
import { apiKey, UpstreamHttp } from '../http.js';
import type { Provider, UpstreamResponse } from '../types.js';

/** The Azure OpenAI data-plane version used when the upstream names none (a GA version). */
export const AZURE_DEFAULT_API_VERSION = '2024-10-21';

/**
 * Azure OpenAI: OpenAI's request, answer, stream and error bodies at a deployment's URL. The
 * variant's `model` is the deployment's name; `baseURL` is the resource's `/openai`
 * (https://<resource>.openai.azure.com/openai); the key (apiKeyEnv) goes in `api-key`.
 */
export class AzureOpenAIProvider implements Provider {
  private readonly http: UpstreamHttp;
  private readonly query: string;

  constructor(
    readonly name: string,
    config: UpstreamConfig,
  ) {
    const key = apiKey(config);
    this.http = new UpstreamHttp(config, key ? { 'api-key': key } : {});
    this.query = `?api-version=${encodeURIComponent(config.apiVersion ?? AZURE_DEFAULT_API_VERSION)}`;
  }

  private path(body: Record<string, unknown>, operation: string): string {
    return `/deployments/${encodeURIComponent(String(body.model))}/${operation}${this.query}`;
  }

  chatCompletions(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse> {
    return this.http.request('POST', this.path(body, 'chat/completions'), body, signal);
  }

  /**
   * Azure's Responses API is served by its v1 API (`<resource>/openai/v1/responses`, no
   * `api-version`), with the deployment's name as `model` in the body.
   */
  responses(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse> {
    return this.http.request('POST', '/v1/responses', body, signal);
  }

  embeddings(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse> {
    return this.http.request('POST', this.path(body, 'embeddings'), body, signal);
  }

  close(): Promise<void> {
    return this.http.close();
  }
}

export function createAzureOpenAIProvider(name: string, config: UpstreamConfig): Provider {
  return new AzureOpenAIProvider(name, config);
}
