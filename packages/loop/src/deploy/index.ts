import { z } from 'zod';
import { OpenAICompatibleDeploy, OpenAICompatibleTarget } from './openai-compatible/index.js';
import type { DeployTarget } from './target.js';
import { VllmDeploy, VllmTarget } from './vllm/index.js';
import { WorkerDeploy, WorkerTarget } from './worker/index.js';

export { OpenAICompatibleDeploy, OpenAICompatibleTarget } from './openai-compatible/index.js';
export { type DeployTarget, type ModelFolder, modelFolder, type ServedModel } from './target.js';
export { VllmDeploy, VllmTarget } from './vllm/index.js';
export { WorkerDeploy, WorkerTarget } from './worker/index.js';

/**
 * Where a route's models are served (the loop policy's `deploy`). Each target names itself in
 * its own folder; this union is the one list of them.
 */
export const DeployPolicy = z.discriminatedUnion('target', [
  WorkerDeploy,
  OpenAICompatibleDeploy,
  VllmDeploy,
]);
export type DeployPolicy = z.output<typeof DeployPolicy>;
export type DeployPolicyInput = z.input<typeof DeployPolicy>;

export const deployTargetNames = DeployPolicy.options.map((o) => o.shape.target.value);
export type DeployTargetName = DeployPolicy['target'];

export interface DeployContext {
  /** The base model folder the built-in worker loads (the policy's `baseModel`). */
  baseModel: string;
  /** The built-in worker's port; without one the loop does not run the worker (someone else does). */
  workerPort?: number;
  /** The name the worker's base answers to when no base-only model is asked for. */
  workerBaseName?: string;
  onLog?: (line: string) => void;
}

/** The target a policy's `deploy` names, or undefined when serving is left to someone else. */
export function createDeployTarget(deploy: DeployPolicy, ctx: DeployContext): DeployTarget | undefined {
  switch (deploy.target) {
    case 'worker':
      return ctx.workerPort === undefined
        ? undefined
        : new WorkerTarget({
            baseModel: ctx.baseModel,
            baseName: ctx.workerBaseName ?? 'base',
            port: ctx.workerPort,
            onLog: ctx.onLog,
          });
    case 'openai-compatible':
      return new OpenAICompatibleTarget(deploy);
    case 'vllm':
      return new VllmTarget(deploy);
  }
}
