import { z } from 'zod';
import { listModels, nameList, ServerFields, type ServerSpec } from '../http.js';
import { cannotServe, type DeployTarget, type ServedModel } from '../target.js';

/**
 * Any OpenAI-compatible server (Ollama, llama.cpp, TGI, a hosted API, a vLLM without runtime
 * LoRA) that already serves the route's models under their registry names. Nothing is loaded.
 */
export const OpenAICompatibleDeploy = z.strictObject({
  target: z.literal('openai-compatible'),
  ...ServerFields,
});
export type OpenAICompatibleDeploy = z.output<typeof OpenAICompatibleDeploy>;

export class OpenAICompatibleTarget implements DeployTarget {
  constructor(private readonly spec: ServerSpec) {}

  get baseUrl(): string {
    return this.spec.baseURL;
  }

  /**
   * Checks `GET /v1/models` lists every model: a round whose candidate the server does not serve
   * would otherwise fail later, call by call, in the evaluation or in front of users.
   */
  async ensure(models: readonly ServedModel[]): Promise<void> {
    if (models.length === 0) return;
    const cards = await listModels(this.spec);
    const listed = new Set(cards.map((c) => c.id));
    const missing = models.find((m) => !listed.has(m.name));
    if (missing)
      throw cannotServe(
        'openai-compatible',
        missing.name,
        `${this.spec.baseURL} does not list it at GET /models (it lists: ${nameList(cards)}); this target loads nothing, so the server must already serve the model under that name`,
      );
  }

  describe(): string {
    return `the OpenAI-compatible server at ${this.spec.baseURL} (models served by name, nothing loaded)`;
  }

  async close(): Promise<void> {}
}
