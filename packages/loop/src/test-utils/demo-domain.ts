import { readFileSync } from 'node:fs';
import { parseSupportDomain, type SupportDomain } from '@ratchet/core';

/**
 * The demo's support domain, for tests that need realistic prompts and answers. The file belongs
 * to the worker's tiny policy and the demo tooling (packages/cli/src/demo/traffic.ts) reads it
 * too; the loop itself never does, so this reader lives with the tests only.
 */
export function demoDomainForTests(): SupportDomain {
  const path = new URL('../../../../worker/ratchet_worker/tiny/domain.json', import.meta.url);
  return parseSupportDomain(JSON.parse(readFileSync(path, 'utf8')));
}
