import { methodRegistryJson } from './methods.js';

/**
 * The files outside TypeScript that carry core's lists, by path from the repository root, with the
 * content they must have (scripts/write-registries.ts writes them; registries.test.ts checks them).
 */
export function registryFiles(): Record<string, string> {
  return {
    'worker/ratchet_worker/registry.json': `${JSON.stringify(methodRegistryJson(), null, 2)}\n`,
  };
}
