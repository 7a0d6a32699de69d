import { createHash, randomBytes } from 'node:crypto';
import type { GatewayConfig, UpstreamConfig, VariantConfig } from './config.js';

export interface Assignment {
  route: string | null;
  variant: string | null;
  upstreamName: string;
  upstream: UpstreamConfig;
  model: string;
}

/** A number in [0, 1) fixed by route and user, so a user keeps their variant across calls. */
export function stickyUnit(route: string, userKey: string): number {
  const digest = createHash('sha256').update(route).update('\u0000').update(userKey).digest();
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

export function pickVariant(variants: readonly VariantConfig[], unit: number): VariantConfig {
  const total = variants.reduce((s, v) => s + v.weight, 0);
  let threshold = unit * total;
  for (const v of variants) {
    if (v.weight <= 0) continue;
    if (threshold < v.weight) return v;
    threshold -= v.weight;
  }
  return variants.filter((v) => v.weight > 0).at(-1)!;
}

/**
 * Resolves the `model` an application asked for: a route name is assigned a variant (sticky per
 * end user when one is known, random otherwise); any other name goes to the default upstream.
 */
export function assign(
  config: GatewayConfig,
  requested: string,
  userKey: string | undefined,
): Assignment | undefined {
  const route = config.routes[requested];
  if (route) {
    const variant = pickVariant(
      route.variants,
      stickyUnit(requested, userKey ?? randomBytes(8).toString('hex')),
    );
    return {
      route: requested,
      variant: variant.name,
      upstreamName: variant.upstream,
      upstream: config.upstreams[variant.upstream]!,
      model: variant.model,
    };
  }
  if (config.defaultUpstream) {
    return {
      route: null,
      variant: null,
      upstreamName: config.defaultUpstream,
      upstream: config.upstreams[config.defaultUpstream]!,
      model: requested,
    };
  }
  return undefined;
}
