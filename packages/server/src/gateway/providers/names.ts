/**
 * The kinds of upstream an upstream's `provider` field may name. Kept apart from the registry
 * (`index.ts`, which must have a factory for each) so that the config schema can list them
 * without importing the providers, which import the config's types.
 */
export const providerNames = ['openai-compatible', 'openai', 'anthropic', 'azure', 'gemini'] as const;
export type ProviderName = (typeof providerNames)[number];
