import { z } from 'zod';
import {
  LocalModelServer,
  type LocalModelServerOptions,
  type ServedModel,
} from '../../orchestrator/model-server.js';
import type { DeployTarget } from '../target.js';

/**
 * The built-in worker (`ratchet-worker serve`), the default. Its port comes from the command that
 * runs the loop (`ratchet loop run --local-worker-port`); without one, whoever runs the worker
 * keeps it serving and the loop only calls it.
 */
export const WorkerDeploy = z.strictObject({ target: z.literal('worker') });
export type WorkerDeploy = z.output<typeof WorkerDeploy>;

/** The worker as a deploy target: `LocalModelServer` as it is, behind the seam. */
export class WorkerTarget implements DeployTarget {
  private readonly server: LocalModelServer;

  constructor(private readonly o: LocalModelServerOptions) {
    this.server = new LocalModelServer(o);
  }

  get baseUrl(): string {
    return this.server.baseUrl;
  }

  ensure(models: readonly ServedModel[]): Promise<void> {
    return this.server.ensure(models);
  }

  describe(): string {
    return `the built-in worker (ratchet-worker serve) at ${this.baseUrl}, base ${this.o.baseModel}`;
  }

  close(): Promise<void> {
    return this.server.stop();
  }
}
