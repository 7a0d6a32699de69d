import { parseInput } from '@ratchet/core';
import type { Principal } from '@ratchet/store';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { type Access, authenticate, type KeyResolver } from './middleware/auth.js';
import type { RateLimiter } from './middleware/rate-limit.js';

/**
 * One declaration per endpoint: its schemas validate the request (zod at the edge, errors name
 * the field) and feed the OpenAPI document, so the spec cannot drift from what is enforced.
 */
export interface RouteSpec<B extends z.ZodType, Q extends z.ZodType, P extends z.ZodType> {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  access: Access;
  summary: string;
  tag: string;
  body?: B;
  /** For the spec only, when the handler parses the body itself (e.g. one item or a batch). */
  bodyDoc?: z.ZodType;
  query?: Q;
  params?: P;
  /** Description of the success response for the spec. */
  response?: { status: number; schema?: z.ZodType; description: string };
  handler: (ctx: RouteContext<z.output<B>, z.output<Q>, z.output<P>>) => Promise<unknown>;
}

export interface RouteContext<B, Q, P> {
  request: FastifyRequest;
  reply: FastifyReply;
  body: B;
  query: Q;
  params: P;
  /** Set on every route that requires a key. */
  principal: Principal;
}

export interface RouteDeps {
  keys: KeyResolver;
  rateLimiter: RateLimiter;
}

export class RouteTable {
  readonly specs: RouteSpec<z.ZodType, z.ZodType, z.ZodType>[] = [];

  constructor(
    private readonly app: FastifyInstance,
    private readonly deps: RouteDeps,
  ) {}

  add<
    B extends z.ZodType = z.ZodUndefined,
    Q extends z.ZodType = z.ZodUndefined,
    P extends z.ZodType = z.ZodUndefined,
  >(spec: RouteSpec<B, Q, P>): void {
    this.specs.push(spec as unknown as RouteSpec<z.ZodType, z.ZodType, z.ZodType>);
    const { keys, rateLimiter } = this.deps;
    this.app.route({
      method: spec.method,
      url: spec.url,
      handler: async (request, reply) => {
        const principal = await authenticate(request, spec.access, keys);
        if (principal) rateLimiter.take(principal.keyId);
        const ctx = {
          request,
          reply,
          body: spec.body ? parseInput(spec.body, request.body) : undefined,
          query: spec.query ? parseInput(spec.query, request.query ?? {}) : undefined,
          params: spec.params ? parseInput(spec.params, request.params) : undefined,
          principal: principal!,
        } as RouteContext<z.output<B>, z.output<Q>, z.output<P>>;
        // The declared status is the default; a handler may still choose another.
        if (spec.response) reply.status(spec.response.status);
        return spec.handler(ctx);
      },
    });
  }
}

const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, path: { type: 'string' } },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
};

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): unknown {
  return z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'openapi-3.0' });
}

/** OpenAPI 3.0 document generated from the route table. */
export function openApiDocument(table: RouteTable, version: string): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const spec of table.specs) {
    const path = spec.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const parameters: unknown[] = [];
    for (const [where, schema] of [
      ['path', spec.params],
      ['query', spec.query],
    ] as const) {
      if (!schema) continue;
      const js = jsonSchema(schema, 'input') as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, s] of Object.entries(js.properties ?? {})) {
        parameters.push({
          name,
          in: where,
          required: where === 'path' || (js.required ?? []).includes(name),
          schema: s,
        });
      }
    }
    const responses: Record<string, unknown> = {
      [String(spec.response?.status ?? 200)]: {
        description: spec.response?.description ?? 'OK',
        ...(spec.response?.schema
          ? { content: { 'application/json': { schema: jsonSchema(spec.response.schema, 'output') } } }
          : {}),
      },
      '4XX': {
        description: 'Bad input, auth or limits; names the field',
        content: { 'application/json': { schema: errorSchema } },
      },
    };
    paths[path] ??= {};
    paths[path][spec.method.toLowerCase()] = {
      summary: spec.summary,
      tags: [spec.tag],
      ...(spec.access === 'none' ? { security: [] } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(spec.body || spec.bodyDoc
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: jsonSchema((spec.body ?? spec.bodyDoc)!, 'input') } },
            },
          }
        : {}),
      responses,
    };
  }
  return {
    openapi: '3.0.3',
    info: { title: 'Ratchet API', version, description: 'Capture, feedback and gateway API of Ratchet.' },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'A project key: rk_sec_... or rk_pub_...' },
      },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
