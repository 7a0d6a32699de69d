import type { UpstreamConfig } from '../config.js';
import { createAnthropicProvider } from './anthropic/index.js';
import { createAzureOpenAIProvider } from './azure/index.js';
import { createGeminiProvider } from './gemini/index.js';
import type { ProviderName } from './names.js';
import { createOpenAIProvider } from './openai/index.js';
import { createOpenAICompatibleProvider } from './openai-compatible/index.js';
import type { Provider, ProviderFactory } from './types.js';

/**
 * Every kind of upstream the gateway speaks, by the name an upstream's `provider` field takes
 * (`names.ts`; a name without a factory here does not compile).
 */
export const providerFactories: Record<ProviderName, ProviderFactory> = {
  'openai-compatible': createOpenAICompatibleProvider,
  openai: createOpenAIProvider,
  anthropic: createAnthropicProvider,
  azure: createAzureOpenAIProvider,
  gemini: createGeminiProvider,
};

/** The provider an upstream's config names. */
export function createProvider(name: string, config: UpstreamConfig): Provider {
  return providerFactories[config.provider](name, config);
}
