import type { Store } from '@ratchet/store';
import type { ServedModel } from './model-server.js';

/**
 * `models` plus every registry model the route's gateway variants send calls to now: production,
 * a canary's arms, a watch's holdback, per-segment adapters. A model server told to serve a set
 * unloads what is not in it, so whoever asks for models for a stage asks through this: leaving
 * out a model the gateway still routes to would fail those users' calls.
 */
export async function withRoutedModels(
  store: Store,
  projectId: string,
  route: string,
  models: readonly ServedModel[],
): Promise<ServedModel[]> {
  const out = new Map(models.map((m) => [m.name, m] as const));
  for (const v of (await store.routes.get(projectId, route))?.variants ?? []) {
    // A variant names its registry model by id when it is one; otherwise the upstream's own model.
    const m = await store.models.get(projectId, v.modelId ?? v.model);
    if (m && !out.has(m.name)) out.set(m.name, { name: m.name, adapterPath: m.adapterPath });
  }
  return [...out.values()];
}
