import { readFileSync } from 'node:fs';
import { RouteVariantInput } from '@ratchet/core';
import type { GatewayFacts } from '@ratchet/store';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { Guardrails } from './guardrails.js';
import { providerNames } from './providers/names.js';

const Upstream = z.strictObject({
  /**
   * How the upstream is spoken to (`providers/index.ts`): `openai-compatible` (vLLM, Ollama,
   * llama.cpp, the worker), `openai` (OpenAI itself: also the Responses API, proxied natively),
   * `anthropic`, `azure` or `gemini`.
   */
  provider: z.enum(providerNames).default('openai-compatible'),
  /** The base URL, up to and including the API version (/v1, v1beta) or Azure's /openai. */
  baseURL: z.url(),
  /** Azure OpenAI's `api-version` query parameter (Azure only). */
  apiVersion: z.string().min(1).max(40).optional(),
  /** Name of the environment variable holding the upstream's API key, if it needs one. */
  apiKeyEnv: z.string().optional(),
  /** Extra headers sent upstream (e.g. an organization header). */
  headers: z.record(z.string(), z.string()).default({}),
  /** The longest wait for the answer's head, and between two chunks of its body. */
  timeoutMs: z.number().int().positive().default(120_000),
  /** Opening a TCP (and TLS) connection. */
  connectTimeoutMs: z.number().int().positive().default(10_000),
  /** From sending the request to the answer's first byte (a stream's first chunk). */
  firstTokenTimeoutMs: z.number().int().positive().optional(),
  /** The whole call, last streamed byte included (none by default: a long stream is not cut). */
  totalTimeoutMs: z.number().int().positive().optional(),
  /** Keep-alive connections kept open to this upstream. */
  connections: z.number().int().positive().default(128),
  /**
   * The circuit breaker: after `failures` failed calls in a row the upstream is skipped for
   * `openMs`, then one call probes it (half-open) and closes the circuit if it succeeds.
   */
  circuit: z
    .strictObject({
      failures: z.number().int().positive().default(5),
      openMs: z.number().int().positive().default(30_000),
    })
    .prefault({}),
});

const Variant = RouteVariantInput;

/** Where a route's calls go when its variant's upstream fails: another upstream and its model. */
const Fallback = z.strictObject({ upstream: z.string(), model: z.string().min(1) });

/**
 * What a route does when an upstream fails (refused or dropped connection, a timeout, 429 or
 * 5xx): `retries` more tries on the same upstream after a jittered backoff, then the next of
 * `fallbacks` in order. Retries and fallbacks spend one gateway-wide budget (`retryBudget`).
 */
const Failover = z.strictObject({
  fallbacks: z.array(Fallback).max(10).default([]),
  retries: z.number().int().min(0).max(5).default(0),
  /** The backoff before a retry: a random wait in [0, backoffMs·2^try) (full jitter). */
  backoffMs: z.number().int().min(0).max(60_000).default(100),
});

const Route = z.strictObject({
  failover: Failover.optional(),
  guardrails: Guardrails.optional(),
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
    /**
     * Retries and fallbacks, gateway-wide, may add at most `ratio` calls per call plus
     * `minPerSecond`, over a 10 s window: an upstream outage cannot multiply the load.
     */
    retryBudget: z
      .strictObject({
        ratio: z.number().min(0).max(10).default(0.2),
        minPerSecond: z.number().min(0).max(10_000).default(10),
      })
      .prefault({}),
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
      route.failover?.fallbacks.forEach((f, i) => {
        if (!c.upstreams[f.upstream])
          ctx.addIssue({
            code: 'custom',
            path: ['routes', name, 'failover', 'fallbacks', i, 'upstream'],
            message: `unknown upstream "${f.upstream}"`,
          });
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
export type FailoverConfig = z.output<typeof Failover>;

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
