import { feedbackKindsJson } from './feedback-kinds.js';
import { methodRegistryJson } from './methods.js';

/**
 * The files outside TypeScript that carry core's lists, by path from the repository root, with the
 * content they must have (scripts/write-registries.ts writes them; registries.test.ts checks them).
 */
export function registryFiles(): Record<string, string> {
  const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
  return {
    'worker/ratchet_worker/registry.json': json(methodRegistryJson()),
    'python-sdk/src/ratchet_sdk/feedback_kinds.json': json(feedbackKindsJson()),
    'packages/web/src/feedback-kinds.json': json(feedbackKindsJson()),
  };
}
