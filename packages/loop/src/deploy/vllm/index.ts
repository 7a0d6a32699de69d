import { createHash } from 'node:crypto';
import { cpSync, lstatSync, mkdirSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { join, posix, resolve } from 'node:path';
import { RatchetError } from '@ratchet/core';
import { z } from 'zod';
import {
  call,
  errorText,
  type HttpAnswer,
  listModels,
  type ModelCard,
  nameList,
  ServerFields,
} from '../http.js';
import { cannotServe, type DeployTarget, modelFolder, type ServedModel } from '../target.js';

/**
 * vLLM with runtime LoRA loading: one vLLM server holds the base model; the target copies each
 * adapter into a folder the server can read and loads it with `POST /v1/load_lora_adapter`,
 * unloading the ones no longer needed. The server must run with
 * `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` and `--enable-lora` (see the README).
 */
export const VllmDeploy = z.strictObject({
  target: z.literal('vllm'),
  ...ServerFields,
  /** The shared adapter folder as Ratchet sees it: adapters are copied (or linked) into it. */
  adapterDir: z.string().min(1),
  /**
   * The same folder as the vLLM server sees it (its mount on the GPU machine or in its container);
   * the path sent in `lora_path`. Default: `adapterDir`, for a vLLM on the same file system.
   */
  serverAdapterDir: z
    .string()
    .min(1)
    .refine((p) => p.startsWith('/'), 'must be an absolute path (vLLM resolves lora_path on its side)')
    .optional(),
  /**
   * `copy` (safe across machines) or `link` (a symlink to the adapter in Ratchet's data dir: only
   * when the vLLM server sees that folder at the same path).
   */
  transfer: z.enum(['copy', 'link']).default('copy'),
});
export type VllmDeploy = z.output<typeof VllmDeploy>;

/** What one registry model needs from vLLM. */
type Need =
  | { name: string; base: true }
  | { name: string; base: false; source: string; local: string; server: string };

const targetName = 'vllm';

export class VllmTarget implements DeployTarget {
  private readonly localDir: string;
  private readonly serverDir: string;

  constructor(private readonly o: VllmDeploy) {
    this.localDir = resolve(o.adapterDir);
    this.serverDir = posix.normalize(o.serverAdapterDir ?? this.localDir).replace(/\/+$/, '');
  }

  get baseUrl(): string {
    return this.o.baseURL;
  }

  describe(): string {
    const seen = this.serverDir === this.localDir ? '' : `, which vLLM reads as ${this.serverDir}`;
    return `vLLM at ${this.o.baseURL} with runtime LoRA loading (adapters ${this.o.transfer === 'link' ? 'linked' : 'copied'} into ${this.localDir}${seen})`;
  }

  async close(): Promise<void> {}

  /**
   * Loads the adapters vLLM does not list yet (first, so what is served keeps answering), then
   * unloads the ones this target loaded that no model here needs. Every model is checked before
   * anything is sent: a model vLLM cannot hot-load refuses the whole set.
   */
  async ensure(models: readonly ServedModel[]): Promise<void> {
    const needs = models.map((m) => this.need(m));
    const cards = await listModels(this.o);
    for (const need of needs) if (need.base) this.checkBase(need.name, cards);
    const byId = new Map(cards.map((c) => [c.id, c]));
    for (const need of needs) {
      if (need.base) continue;
      const card = byId.get(need.name);
      if (card && card.root === need.server) continue;
      if (card && !card.parent)
        throw cannotServe(
          targetName,
          need.name,
          `vLLM at ${this.o.baseURL} serves its base model under that name`,
        );
      this.place(need.source, need.local);
      if (card) await this.unload(need.name); // same name, other weights: the registry says which
      await this.load(need.name, need.server);
    }
    const wanted = new Set(models.map((m) => m.name));
    for (const card of cards)
      if (card.parent && this.isOurs(card) && !wanted.has(card.id)) await this.unload(card.id);
  }

  /** What vLLM must do for this model; refuses what it cannot hot-load. */
  private need(m: ServedModel): Need {
    if (!m.adapterPath) return { name: m.name, base: true };
    const source = resolve(m.adapterPath);
    const folder = modelFolder(source);
    if (folder.kind === 'missing')
      throw cannotServe(targetName, m.name, `its adapter folder is unusable: ${folder.why}`);
    if (folder.kind === 'full')
      throw cannotServe(
        targetName,
        m.name,
        `it is a merged model (${source} holds full weights, not a LoRA adapter) and vLLM loads only LoRA adapters at runtime (POST /v1/load_lora_adapter). Serve it with its own vLLM server (vllm serve ${source} --served-model-name ${m.name}) reached through deploy target openai-compatible, or train LoRA adapters (training.stack: false)`,
      );
    if (folder.task !== 'CAUSAL_LM')
      throw cannotServe(
        targetName,
        m.name,
        `it is a ${folder.task} adapter (a reward model, scored at /v1/score by ratchet-worker serve) and vLLM's runtime LoRA loading serves generation adapters only; set rewardModel.enabled: false in the loop policy`,
      );
    // One folder per (name, source): a folder that exists is a finished copy of exactly this adapter.
    const safe = m.name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 80);
    const dir = `${safe}-${createHash('sha256').update(source).digest('hex').slice(0, 12)}`;
    return {
      name: m.name,
      base: false,
      source,
      local: join(this.localDir, dir),
      server: `${this.serverDir}/${dir}`,
    };
  }

  /** A model without an adapter is the base itself: vLLM must already answer to its name. */
  private checkBase(model: string, cards: ModelCard[]): void {
    if (cards.some((c) => c.id === model && !c.parent)) return;
    throw cannotServe(
      targetName,
      model,
      `it has no adapter, so it is vLLM's base model, and vLLM at ${this.o.baseURL} does not serve a base model by that name (it lists: ${nameList(cards)}); start vLLM with --served-model-name ${model} (several names are allowed)`,
    );
  }

  private isOurs(card: ModelCard): boolean {
    return typeof card.root === 'string' && posix.normalize(card.root).startsWith(`${this.serverDir}/`);
  }

  /** Copies (or links) the adapter into the shared folder, atomically: vLLM never reads half a copy. */
  private place(source: string, local: string): void {
    if (lstatSync(local, { throwIfNoEntry: false })) return;
    mkdirSync(this.localDir, { recursive: true });
    if (this.o.transfer === 'link') {
      symlinkSync(source, local, 'dir');
      return;
    }
    const tmp = `${local}.partial-${process.pid}-${Date.now()}`;
    try {
      cpSync(source, tmp, { recursive: true });
      renameSync(tmp, local);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  private async load(lora: string, path: string): Promise<void> {
    const answer = await call(this.o, 'POST', '/load_lora_adapter', { lora_name: lora, lora_path: path });
    if (answer.status !== 200)
      throw this.refused(answer, '/load_lora_adapter', `load adapter "${lora}" from ${path}`);
  }

  private async unload(lora: string): Promise<void> {
    const answer = await call(this.o, 'POST', '/unload_lora_adapter', { lora_name: lora });
    // vLLM answers 404 for an adapter it does not hold: already the state we want.
    if (answer.status === 404 && !endpointMissing(answer)) return;
    if (answer.status !== 200) throw this.refused(answer, '/unload_lora_adapter', `unload adapter "${lora}"`);
  }

  private refused(answer: HttpAnswer, path: string, what: string): RatchetError {
    if (endpointMissing(answer))
      return new RatchetError(
        'upstream_error',
        `vLLM at ${this.o.baseURL} has no POST ${path} (404): runtime LoRA loading is off; start vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora`,
        'deploy',
      );
    return new RatchetError(
      'upstream_error',
      `vLLM at ${this.o.baseURL} refused to ${what} (${answer.status} ${errorText(answer.text)})`,
      'deploy',
    );
  }
}

/**
 * vLLM registers the LoRA routes only with VLLM_ALLOW_RUNTIME_LORA_UPDATING; without them FastAPI
 * answers `{"detail": "Not Found"}`, unlike vLLM's own 404s (`error.message`, "cannot be found").
 */
function endpointMissing(answer: HttpAnswer): boolean {
  if (answer.status !== 404) return false;
  try {
    return (JSON.parse(answer.text) as { detail?: unknown }).detail === 'Not Found';
  } catch {
    return false;
  }
}
