import { readFileSync } from 'node:fs';
import { Weight } from '@ratchet/core';
import type { GatewayFacts } from '@ratchet/store';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const Upstream = z.strictObject({
  /** Any OpenAI-compatible base URL, up to and including /v1 (vLLM, Ollama, llama.cpp, OpenAI, the worker). */
  baseURL: z.url(),
  /** Name of the environment variable holding the upstream's API key, if it needs one. */
  apiKeyEnv: z.string().optional(),
  /** Extra headers sent upstream (e.g. an organization header). */
  headers: z.record(z.string(), z.string()).default({}),
  timeoutMs: z.number().int().positive().default(120_000),
  /** Keep-alive connections kept open to this upstream. */
  connections: z.number().int().positive().default(128),
});

/**
 * The requests a variant is restricted to (personalization): calls tagged `tag` (the
 * `x-ratchet-tags` header; `x-ratchet-segment: busy` adds the tag `segment:busy`), or calls whose
 * `x-ratchet-metadata` has `metadata` equal to `equals`. A call that matches no segment variant
 * goes to the route's variants without a segment (the global model).
 */
export const VariantSegment = z.union([
  z.strictObject({ tag: z.string().min(1).max(100) }),
  z.strictObject({
    metadata: z.string().min(1).max(100),
    equals: z.union([z.string(), z.number(), z.boolean()]),
  }),
]);
export type VariantSegment = z.output<typeof VariantSegment>;

const Variant = z.strictObject({
  name: z.string().min(1).max(100),
  upstream: z.string(),
  /** The model name sent upstream. */
  model: z.string().min(1),
  weight: Weight,
  segment: VariantSegment.optional(),
});

const Route = z.strictObject({
  variants: z
    .array(Variant)
    .min(1)
    .refine((vs) => vs.some((v) => v.weight > 0), 'at least one variant needs a positive weight')
    .refine(
      (vs) => vs.some((v) => v.weight > 0 && !v.segment),
      'a variant without a segment needs a positive weight: calls of no segment go there',
    )
    .refine((vs) => new Set(vs.map((v) => v.name)).size === vs.length, 'variant names must be unique'),
});

/**
 * The gateway's file: upstreams, and routes that map the name an application calls (`model`)
 * onto weighted variants. A model that names no route goes to `defaultUpstream` unchanged.
 */
export const GatewayConfig = z
  .strictObject({
    upstreams: z.record(z.string(), Upstream),
    routes: z.record(z.string(), Route).default({}),
    defaultUpstream: z.string().optional(),
  })
  .superRefine((c, ctx) => {
    for (const [name, route] of Object.entries(c.routes)) {
      route.variants.forEach((v, i) => {
        if (!c.upstreams[v.upstream]) {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', name, 'variants', i, 'upstream'],
            message: `unknown upstream "${v.upstream}"`,
          });
        }
      });
    }
    if (c.defaultUpstream && !c.upstreams[c.defaultUpstream]) {
      ctx.addIssue({
        code: 'custom',
        path: ['defaultUpstream'],
        message: `unknown upstream "${c.defaultUpstream}"`,
      });
    }
  });
export type GatewayConfig = z.output<typeof GatewayConfig>;
export type GatewayConfigInput = z.input<typeof GatewayConfig>;
export type UpstreamConfig = z.output<typeof Upstream>;
export type VariantConfig = z.output<typeof Variant>;

export function parseGatewayConfig(value: unknown, source = 'gateway config'): GatewayConfig {
  const result = GatewayConfig.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new Error(`${source}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return result.data;
}

export function loadGatewayConfig(path: string): GatewayConfig {
  const text = readFileSync(path, 'utf8');
  const value = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  return parseGatewayConfig(value, path);
}

/**
 * What a registry stage change needs to know of the gateway file to serve a model: its
 * upstreams, where each route sends the calls of no segment (its heaviest such variant), and
 * its default upstream.
 */
export function gatewayFacts(config: GatewayConfig): GatewayFacts {
  const routeUpstreams: Record<string, string> = {};
  for (const [name, route] of Object.entries(config.routes)) {
    const global = route.variants.filter((v) => !v.segment && v.weight > 0);
    const heaviest = global.sort((a, b) => b.weight - a.weight)[0];
    if (heaviest) routeUpstreams[name] = heaviest.upstream;
  }
  return {
    upstreams: Object.keys(config.upstreams),
    routeUpstreams,
    ...(config.defaultUpstream ? { defaultUpstream: config.defaultUpstream } : {}),
  };
}
