import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Model } from '@ratchet/store';
import { describe, expect, it } from 'vitest';
import { stackedBase } from './loop.js';
import { LoopPolicy } from './policy.js';

const dir = mkdtempSync(join(tmpdir(), 'ratchet-stack-'));
const folder = (name: string, file: string) => {
  const path = join(dir, name);
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, file), '{}');
  return path;
};
const policy = LoopPolicy.parse({ route: 'r', baseModel: '/models/base', training: { stack: true } });
const model = (adapterPath: string | null) => ({ name: 'prod', adapterPath }) as Model;

describe('stacked rounds', () => {
  it('train on the production model when it is a merged full model', () => {
    const merged = folder('merged', 'config.json');
    expect(stackedBase(policy, model(merged))).toBe(merged);
  });

  it('fall back to the base for the base itself, a LoRA adapter, or a missing folder', () => {
    expect(stackedBase(policy, model(null))).toBe('/models/base');
    expect(stackedBase(policy, model(folder('adapter', 'adapter_config.json')))).toBe('/models/base');
    expect(stackedBase(policy, model(join(dir, 'gone')))).toBe('/models/base');
  });
});
