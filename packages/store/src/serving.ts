import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { RatchetError } from '@ratchet/core';
import { type StoredVariant, segmentVariants } from './routes.js';

/**
 * What the caller knows of the gateway file: the upstreams it defines, where its routes send
 * the calls of no segment, and its default upstream. A stage change resolves the upstream that
 * serves a registry model from these (see `upstreamFor`).
 */
export interface GatewayFacts {
  upstreams: readonly string[];
  /** Per route of the gateway file, the upstream of its heaviest variant without a segment. */
  routeUpstreams: Readonly<Record<string, string>>;
  defaultUpstream?: string | undefined;
}

/** The registry model a route's production variant serves. */
export interface ServableModel {
  id: string;
  name: string;
  adapterPath: string | null;
}

/** The name of the variant that serves a route's production model. */
export const productionVariant = 'production';

/**
 * The upstream that serves `model` on `route`: the one the route's database entry already sends
 * it (or the route's global traffic) to, else the gateway file's route, else its default
 * upstream. Refused (409, `path`) when there is none, or when it names an upstream the gateway
 * file does not define: the registry would say production while no call could reach the model.
 */
function upstreamFor(
  route: string,
  model: ServableModel,
  current: readonly StoredVariant[],
  gateway: GatewayFacts | undefined,
  path: string,
): string {
  const global = current.filter((v) => !v.segment && v.weight > 0);
  const serving =
    global.find((v) => v.modelId === model.id) ?? [...global].sort((a, b) => b.weight - a.weight)[0];
  const upstream = serving?.upstream ?? gateway?.routeUpstreams[route] ?? gateway?.defaultUpstream;
  if (!upstream)
    throw new RatchetError(
      'conflict',
      `${path}: no upstream can serve "${model.name}" on route "${route}": the route has no database entry and ${
        gateway
          ? `the gateway file has neither a route "${route}" nor a defaultUpstream`
          : 'no gateway file is known here (the server reads its own; the CLI takes --gateway-config or RATCHET_GATEWAY_CONFIG)'
      }`,
      path,
    );
  if (gateway && !gateway.upstreams.includes(upstream))
    throw new RatchetError(
      'conflict',
      `${path}: route "${route}" sends its calls to upstream "${upstream}", which the gateway file does not define`,
      path,
    );
  return upstream;
}

/**
 * A local adapter folder must exist before its model is served: an absolute or ./-relative path
 * that is missing would fail every call. Other names (a hub id) are the upstream's to resolve.
 */
function checkArtifacts(model: ServableModel, path: string): void {
  const p = model.adapterPath;
  const local = p !== null && (isAbsolute(p) || p.startsWith('./') || p.startsWith('../'));
  if (local && !existsSync(p))
    throw new RatchetError(
      'conflict',
      `${path}: cannot serve "${model.name}": its adapter folder ${p} does not exist on this machine`,
      path,
    );
}

/**
 * The route's variants once `model` is its production model: the model at weight 1, with the
 * per-segment variants (personalization) kept, since they serve their own segments.
 */
export function servingModel(
  route: string,
  model: ServableModel,
  current: readonly StoredVariant[],
  gateway: GatewayFacts | undefined,
  path: string,
): StoredVariant[] {
  const upstream = upstreamFor(route, model, current, gateway, path);
  checkArtifacts(model, path);
  return [
    ...segmentVariants([...current]),
    { name: productionVariant, upstream, model: model.name, weight: 1, modelId: model.id },
  ];
}

/**
 * The route's variants once it has no production model: its database entry keeps only the
 * per-segment variants (null: remove the entry), so the gateway file's route serves the rest.
 * Refused when the gateway file is not known to have that route: the calls would reach nothing.
 */
export function servingNoModel(
  route: string,
  current: readonly StoredVariant[],
  gateway: GatewayFacts | undefined,
  path: string,
): StoredVariant[] | null {
  if (!gateway?.routeUpstreams[route])
    throw new RatchetError(
      'conflict',
      `${path}: route "${route}" would serve nothing without a production model (${
        gateway
          ? `the gateway file has no route "${route}"`
          : 'no gateway file is known here to say that it routes it'
      }); promote another model or roll back instead`,
      path,
    );
  const segments = segmentVariants([...current]);
  return segments.length > 0 ? segments : null;
}
