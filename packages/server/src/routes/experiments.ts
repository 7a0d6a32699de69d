import { RatchetError, RouteVariantInput } from '@ratchet/core';
import { ExperimentStartSpec, experimentStatus, startExperiment, stopExperiment } from '@ratchet/loop';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import type { Gateway } from '../gateway/gateway.js';
import type { RouteTable } from '../routing.js';

const ExperimentRef = z.strictObject({ ref: z.string().min(1).max(200) });
const RouteName = z.strictObject({ route: z.string().min(1).max(200) });

const RouteVariant = RouteVariantInput;

/**
 * Experiments and the database routes they write. Every write refreshes this server's gateway at
 * once; other servers pick the change up at their next background refresh.
 */
export function registerExperimentRoutes(
  routes: RouteTable,
  store: Store,
  gateway: () => Gateway | undefined,
): void {
  const refresh = async () => gateway()?.databaseRoutes?.refresh();

  routes.add({
    method: 'GET',
    url: '/api/v1/routes',
    access: 'read',
    tag: 'experiments',
    summary: 'Routes kept in the database (they take precedence over the gateway file).',
    handler: async ({ principal }) => ({ items: await store.routes.list(principal.projectId) }),
  });
  routes.add({
    method: 'PUT',
    url: '/api/v1/routes/:route',
    access: 'admin',
    tag: 'experiments',
    summary:
      "Set a route's weighted variants in the database (e.g. a canary share) without an experiment. A variant with `segment` ({tag} or {metadata, equals}) serves only that segment's calls; the others go to the variants without one, or to the gateway file's route when there are none.",
    params: RouteName,
    body: z.strictObject({
      variants: z
        .array(RouteVariant)
        .min(1)
        .refine((vs) => vs.some((v) => v.weight > 0), 'at least one variant needs a positive weight')
        .refine((vs) => new Set(vs.map((v) => v.name)).size === vs.length, 'variant names must be unique'),
    }),
    handler: async ({ principal, params, body }) => {
      const known = gateway()?.upstreamNames();
      body.variants.forEach((v, i) => {
        if (known && !known.includes(v.upstream))
          throw new RatchetError(
            'invalid_request',
            `variants.${i}.upstream: "${v.upstream}" is not an upstream of the gateway file`,
            `variants.${i}.upstream`,
          );
      });
      const running = await store.experiments.list(principal.projectId, {
        route: params.route,
        status: 'running',
      });
      if (running.length)
        throw new RatchetError(
          'conflict',
          `route: experiment "${running[0]!.name}" runs on "${params.route}"`,
          'route',
        );
      const route = await store.routes.transaction(async (trx) => {
        const written = await store.routes.put(principal.projectId, params.route, body.variants, trx);
        await store.audit.record(
          {
            projectId: principal.projectId,
            actor: principal.actor,
            action: 'route.updated',
            subjectType: 'route',
            subjectId: params.route,
            details: { variants: body.variants },
          },
          trx,
        );
        return written;
      });
      await refresh();
      return route;
    },
  });
  routes.add({
    method: 'DELETE',
    url: '/api/v1/routes/:route',
    access: 'admin',
    tag: 'experiments',
    summary: "Remove a route's database entry: the gateway file's route applies again.",
    params: RouteName,
    handler: async ({ principal, params }) => {
      const running = await store.experiments.list(principal.projectId, {
        route: params.route,
        status: 'running',
      });
      if (running.length)
        throw new RatchetError(
          'conflict',
          `route: experiment "${running[0]!.name}" runs on "${params.route}"`,
          'route',
        );
      await store.routes.transaction(async (trx) => {
        if (!(await store.routes.delete(principal.projectId, params.route, trx)))
          throw new RatchetError('not_found', `route "${params.route}" is not in the database`, 'route');
        await store.audit.record(
          {
            projectId: principal.projectId,
            actor: principal.actor,
            action: 'route.deleted',
            subjectType: 'route',
            subjectId: params.route,
            details: {},
          },
          trx,
        );
      });
      await refresh();
      return { deleted: params.route };
    },
  });

  routes.add({
    method: 'POST',
    url: '/api/v1/experiments',
    access: 'admin',
    tag: 'experiments',
    summary:
      "Start an experiment: the route's variants (registry models or upstream models) with traffic weights, the metric, engine and decision rule.",
    body: ExperimentStartSpec,
    response: { status: 201, description: 'The running experiment' },
    handler: async ({ principal, body }) => {
      const gw = gateway();
      const experiment = await startExperiment(store, principal.projectId, body, {
        actor: principal.actor,
        ...(gw
          ? { gateway: { upstreams: gw.upstreamNames(), defaultUpstream: gw.defaultUpstreamName() } }
          : {}),
      });
      await refresh();
      return experiment;
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/experiments',
    access: 'read',
    tag: 'experiments',
    summary: 'Experiments, newest first.',
    query: z.strictObject({
      route: z.string().optional(),
      status: z.enum(['running', 'stopped']).optional(),
    }),
    handler: async ({ principal, query }) => ({
      items: await store.experiments.list(principal.projectId, query),
    }),
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/experiments/:ref',
    access: 'read',
    tag: 'experiments',
    summary:
      "Status: per-variant metrics per end user from the users' own feedback (each user's mean, then the mean over users; judge and annotator labels reported apart), each treatment against the control (always-valid interval, p-value, probability to beat, expected loss, credible interval), SRM over users, and the decision now. Records nothing.",
    params: ExperimentRef,
    handler: async ({ principal, params }) => experimentStatus(store, principal.projectId, params.ref),
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/experiments/:ref/analyze',
    access: 'admin',
    tag: 'experiments',
    summary:
      "Take a look and record it: the decision joins the history, the sequential test's state is kept, and a bandit's new weights go to the route.",
    params: ExperimentRef,
    handler: async ({ principal, params }) => {
      const status = await experimentStatus(store, principal.projectId, params.ref, {
        record: true,
        actor: principal.actor,
      });
      if (status.weights) await refresh();
      return status;
    },
  });
  routes.add({
    method: 'POST',
    url: '/api/v1/experiments/:ref/stop',
    access: 'admin',
    tag: 'experiments',
    summary:
      'Stop an experiment; `keep` gives that variant all of the route, otherwise the route returns to the gateway file.',
    params: ExperimentRef,
    body: z.strictObject({ reason: z.string().min(1).max(2000), keep: z.string().min(1).optional() }),
    handler: async ({ principal, params, body }) => {
      const experiment = await stopExperiment(store, principal.projectId, params.ref, {
        reason: body.reason,
        ...(body.keep ? { keep: body.keep } : {}),
        actor: principal.actor,
      });
      await refresh();
      return experiment;
    },
  });
}
