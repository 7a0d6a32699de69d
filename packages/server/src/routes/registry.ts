import { defaultWatchPolicy, modelStages, RatchetError, watchPolicySchema } from '@ratchet/core';
import { type WebhookDelivery, webhookAuditAction } from '@ratchet/loop';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import { type GatewayConfig, gatewayFacts } from '../gateway/config.js';
import type { RouteTable } from '../routing.js';

/** The last recorded delivery of a watch's rollback webhook (its audit entry's details). */
async function webhookDelivery(store: Store, projectId: string, watchId: string) {
  const [entry] = await store.audit.list(projectId, {
    subjectType: 'watch',
    subjectId: watchId,
    action: webhookAuditAction,
    limit: 1,
  });
  return entry?.details as unknown as WebhookDelivery | undefined;
}

const ModelRef = z.strictObject({ ref: z.string().min(1).max(200) });

/**
 * The model registry: stages, promotion and rollback, each change in the audit log and in the
 * gateway's routing (the store does both in one transaction, checked against this server's
 * gateway file; every gateway on the database reloads at once).
 */
export function registerRegistryRoutes(
  routes: RouteTable,
  store: Store,
  gatewayConfig: GatewayConfig | undefined,
): void {
  const gateway = gatewayConfig && gatewayFacts(gatewayConfig);
  routes.add({
    method: 'GET',
    url: '/api/v1/models',
    access: 'read',
    tag: 'registry',
    summary: 'Registered models, newest first (filter by route or stage).',
    query: z.strictObject({ route: z.string().optional(), stage: z.enum(modelStages).optional() }),
    handler: async ({ principal, query }) => ({ items: await store.models.list(principal.projectId, query) }),
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/models',
    access: 'admin',
    tag: 'registry',
    summary: 'Register a model (a base model, or base plus adapter) as a candidate.',
    body: z.strictObject({
      name: z
        .string()
        .min(1)
        .max(200)
        .regex(/^[A-Za-z0-9._:@/-]+$/, 'letters, digits and . _ : @ / - only'),
      route: z.string().min(1).max(200).optional(),
      baseModel: z.string().min(1),
      adapterPath: z.string().min(1).optional(),
      metrics: z.record(z.string(), z.unknown()).optional(),
    }),
    response: { status: 201, description: 'The registered model' },
    handler: async ({ principal, body }) => store.models.register(principal.projectId, body, principal.actor),
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/models/:ref',
    access: 'read',
    tag: 'registry',
    summary: 'One model by id or name, with its audit history.',
    params: ModelRef,
    handler: async ({ principal, params }) => {
      const model = await store.models.get(principal.projectId, params.ref);
      if (!model) throw new RatchetError('not_found', `model "${params.ref}" not found`, 'ref');
      return {
        ...model,
        history: await store.audit.list(principal.projectId, { subjectType: 'model', subjectId: model.id }),
      };
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/watches',
    access: 'read',
    tag: 'registry',
    summary:
      "Promotion watches, newest first: the promoted model, the holdback it is compared with, status, outcome, the rollback webhook's delivery (delivered, attempts) and the last looks with their evidence (per metric: each arm's mean of user means, users, the one-sided always-valid p and the level it acts at).",
    query: z.strictObject({
      route: z.string().min(1).max(200).optional(),
      open: z.enum(['true', 'false']).optional(),
      looks: z.coerce.number().int().min(0).max(100).default(5),
    }),
    handler: async ({ principal, query }) => {
      const watches = await store.watches.list(principal.projectId, {
        open: query.open === 'true',
        ...(query.route ? { route: query.route } : {}),
        limit: 50,
      });
      const name = async (id: string) => (await store.models.get(principal.projectId, id))?.name ?? id;
      return {
        items: await Promise.all(
          watches.map(async (w) => ({
            ...w,
            modelName: await name(w.modelId),
            holdbackModelName: await name(w.holdbackModelId),
            looks: query.looks > 0 ? await store.watches.looks(w.id, query.looks) : [],
            webhook: (await webhookDelivery(store, principal.projectId, w.id)) ?? null,
          })),
        ),
      };
    },
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/models/:ref/stage',
    access: 'admin',
    tag: 'registry',
    summary:
      "Move a model to a stage; production replaces the route's production model and the route serves it at once (`served`). Refused (409, nothing changed) when no upstream can serve it, its local adapter folder is missing, or an experiment runs on the route.",
    params: ModelRef,
    body: z.strictObject({ stage: z.enum(modelStages), reason: z.string().min(1).max(2000) }),
    handler: async ({ principal, params, body }) =>
      store.models.setStage(
        principal.projectId,
        params.ref,
        body.stage,
        principal.actor,
        body.reason,
        gateway,
      ),
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/routes/:route/rollback',
    access: 'admin',
    tag: 'registry',
    summary:
      "Archive a route's production model and restore the one it replaced, which the route serves at once (`served`); refused like a stage change when it cannot be served.",
    params: z.strictObject({ route: z.string().min(1).max(200) }),
    body: z.strictObject({ reason: z.string().min(1).max(2000) }),
    handler: async ({ principal, params, body }) =>
      store.models.rollback(principal.projectId, params.route, principal.actor, body.reason, gateway),
  });
  const RouteParam = z.strictObject({ route: z.string().min(1).max(200) });
  const policyAnswer = async (projectId: string, route: string) => {
    const set = await store.watches.policyOf(projectId, route);
    return set
      ? { ...set, configured: true }
      : { route, policy: defaultWatchPolicy, configured: false, updatedBy: null, updatedAt: null };
  };
  routes.add({
    method: 'GET',
    url: '/api/v1/routes/:route/watch-policy',
    access: 'read',
    tag: 'registry',
    summary:
      "The policy the route's next promotion is watched with (`configured: false`: the defaults): length in users and hours, holdback share, alpha, harm thresholds.",
    params: RouteParam,
    handler: async ({ principal, params }) => policyAnswer(principal.projectId, params.route),
  });
  routes.add({
    method: 'PUT',
    url: '/api/v1/routes/:route/watch-policy',
    access: 'admin',
    tag: 'registry',
    summary:
      "Set the route's watch policy (fields left out take their defaults); the next promotion on the route is watched with it, open watches keep theirs. A bad value is a 400 naming the field.",
    params: RouteParam,
    body: watchPolicySchema,
    handler: async ({ principal, params, body }) => ({
      ...(await store.watches.setPolicy(principal.projectId, params.route, body, principal.actor)),
      configured: true,
    }),
  });
  routes.add({
    method: 'DELETE',
    url: '/api/v1/routes/:route/watch-policy',
    access: 'admin',
    tag: 'registry',
    summary: "Remove the route's watch policy: its promotions are watched with the defaults again.",
    params: RouteParam,
    handler: async ({ principal, params }) => {
      if (!(await store.watches.clearPolicy(principal.projectId, params.route, principal.actor)))
        throw new RatchetError('not_found', `route "${params.route}" has no watch policy`, 'route');
      return policyAnswer(principal.projectId, params.route);
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/audit',
    access: 'read',
    tag: 'registry',
    summary: 'The audit log, newest first.',
    query: z.strictObject({
      subjectType: z.string().optional(),
      subjectId: z.string().optional(),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
      cursor: z.string().max(500).optional(),
    }),
    handler: async ({ principal, query }) => store.audit.page(principal.projectId, query),
  });
}
