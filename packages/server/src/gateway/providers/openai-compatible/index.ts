import type { UpstreamConfig } from '../../config.js';
import { apiKey, UpstreamHttp } from '../http.js';
import type { Provider, UpstreamResponse } from '../types.js';

/**
 * Any server speaking OpenAI's chat completions: vLLM, Ollama, llama.cpp, the Ratchet worker.
 * Not all of them speak the Responses API, so Responses calls to it are translated; OpenAI
 * itself is the `openai` provider.
 */
export class OpenAICompatibleProvider implements Provider {
  protected readonly http: UpstreamHttp;

  constructor(
    readonly name: string,
    config: UpstreamConfig,
  ) {
    const key = apiKey(config);
    this.http = new UpstreamHttp(config, key ? { authorization: `Bearer ${key}` } : {});
  }

  chatCompletions(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse> {
    return this.http.request('POST', '/chat/completions', body, signal);
  }

  embeddings(body: Record<string, unknown>, signal: AbortSignal): Promise<UpstreamResponse> {
    return this.http.request('POST', '/embeddings', body, signal);
  }

  models(signal: AbortSignal): Promise<UpstreamResponse> {
    return this.http.request('GET', '/models', undefined, signal);
  }

  close(): Promise<void> {
    return this.http.close();
  }
}

export function createOpenAICompatibleProvider(name: string, config: UpstreamConfig): Provider {
  return new OpenAICompatibleProvider(name, config);
}
