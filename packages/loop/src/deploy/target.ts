import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RatchetError } from '@ratchet/core';
import type { ServedModel } from '../orchestrator/model-server.js';

export type { ServedModel };

/**
 * Where a route's models are served: the loop asks a target to serve a set of registry models
 * before a stage calls them, and calls them at `baseUrl`. One folder per target under `deploy/`.
 */
export interface DeployTarget {
  /** OpenAI-compatible base URL, up to /v1, where every ensured model answers by its name. */
  readonly baseUrl: string;
  /**
   * Serves these models (by registry name) or throws an error that says why it cannot; models a
   * previous call needed and this one does not may be dropped.
   */
  ensure(models: readonly ServedModel[]): Promise<void>;
  /** One line for logs: what serves the models and where. */
  describe(): string;
  /** Stops what the target started (the built-in worker); targets that start nothing do nothing. */
  close(): Promise<void>;
}

/**
 * What a registry model's folder holds, the way `ratchet-worker serve` tells them apart: a PEFT
 * adapter (adapter_config.json; a reward model's is task SEQ_CLS), a full model (config.json only:
 * a merged candidate of a stacked round), or nothing readable.
 */
export type ModelFolder =
  | { kind: 'adapter'; task: string }
  | { kind: 'full' }
  | { kind: 'missing'; why: string };

export function modelFolder(path: string): ModelFolder {
  const adapterConfig = join(path, 'adapter_config.json');
  if (existsSync(adapterConfig)) {
    let task: unknown;
    try {
      task = (JSON.parse(readFileSync(adapterConfig, 'utf8')) as { task_type?: unknown }).task_type;
    } catch (err) {
      return { kind: 'missing', why: `${adapterConfig} is not JSON (${(err as Error).message})` };
    }
    return { kind: 'adapter', task: typeof task === 'string' && task ? task : 'CAUSAL_LM' };
  }
  if (existsSync(join(path, 'config.json'))) return { kind: 'full' };
  return {
    kind: 'missing',
    why: existsSync(path)
      ? `${path} has neither adapter_config.json nor config.json`
      : `${path} does not exist`,
  };
}

/** The error every target throws for a model it cannot serve: names the model and the reason. */
export const cannotServe = (target: string, model: string, why: string): RatchetError =>
  new RatchetError(
    'invalid_request',
    `deploy target ${target} cannot serve model "${model}": ${why}`,
    'deploy',
  );
