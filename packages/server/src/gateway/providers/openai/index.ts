import type { UpstreamConfig } from '../../config.js';
import { OpenAICompatibleProvider } from '../openai-compatible/index.js';
import type { Provider, UpstreamResponse } from '../types.js';

/**
 * OpenAI itself (https://api.openai.com/v1): chat completions, embeddings and models as any
 * OpenAI-compatible server, plus the Responses API, which Responses calls are proxied to as
 * they are (the upstream keeps the conversation for `previous_response_id`).
 */
export class OpenAIProvider extends OpenAICompatibleProvider {
  responses(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse> {
    return this.http.request('POST', '/responses', body, signal);
  }
}

export function createOpenAIProvider(name: string, config: UpstreamConfig): Provider {
  return new OpenAIProvider(name, config);
}
