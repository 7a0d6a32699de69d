import { type ProjectRole, parseInput, RatchetError, rolesOfAccess } from '@ratchet/core';
import type { Principal, Store } from '@ratchet/store';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { type Access, accessScopes, authenticate, type KeyResolver } from './middleware/auth.js';
import type { RateLimiter } from './middleware/rate-limit.js';
import { type StorableRouteConfig, unstorableInput } from './middleware/storable-input.js';

/**
 * One declaration per endpoint: its schemas validate the request (zod at the edge, errors name
 * the field) and feed the OpenAPI document, so the spec cannot drift from what is enforced.
 */
export interface RouteSpec<B extends z.ZodType, Q extends z.ZodType, P extends z.ZodType> {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  access: Access;
  /**
   * The roles of people (session cookies) the route admits, when not those its scopes stand for
   * (core `rolesOfScope`): e.g. only owners manage members, annotators write ratings.
   */
  roles?: readonly ProjectRole[];
  summary: string;
  tag: string;
  body?: B;
  /** For the spec only, when the handler parses the body itself (e.g. one item or a batch). */
  bodyDoc?: z.ZodType;
  query?: Q;
  params?: P;
  /** Description of the success response for the spec. */
  response?: {
    status: number;
    schema?: z.ZodType;
    description: string;
    /** Other success statuses the handler chooses (same body schema), so the spec lists them too. */
    also?: { status: number; description: string }[];
  };
  /**
   * The body is stored repaired instead of refused when a database could not store it as it is
   * (NUL, lone surrogate, too deep): only the gateway, whose log writer repairs what it records.
   */
  repairsBody?: boolean;
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
  /** Where sessions are read; without it only keys authenticate. */
  store?: Store;
  rateLimiter: RateLimiter;
}

export class RouteTable {
  readonly specs: RouteSpec<z.ZodType, z.ZodType, z.ZodType>[] = [];
  private readonly patterns: { method: string; pattern: RegExp }[] = [];

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
    this.patterns.push({ method: spec.method, pattern: urlPattern(spec.url) });
    const config: StorableRouteConfig = { repairsBody: spec.repairsBody ?? false };
    this.app.route({
      method: spec.method,
      url: spec.url,
      config,
      handler: async (request, reply) => {
        const principal = await authenticate(
          request,
          spec.access,
          keys,
          this.deps.store && { store: this.deps.store, roles: spec.roles },
        );
        if (principal) await rateLimiter.admit(principal.keyId);
        // Without this, a missing body fails as "expected object" with no field named.
        if ((spec.body || spec.bodyDoc) && request.body === undefined)
          throw new RatchetError('invalid_request', 'body: send a JSON object', 'body');
        // What the JSON parser checks for bodies, for the path and the query string (`%00`).
        const unstorable =
          unstorableInput(request.params, 'params') ?? unstorableInput(request.query, 'query');
        if (unstorable) throw unstorable;
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

  /** The methods some route takes at `path` (for a 405 that says which). */
  methodsFor(path: string): string[] {
    return [...new Set(this.patterns.filter((p) => p.pattern.test(path)).map((p) => p.method))];
  }
}

/** `/api/v1/datasets/:ref` as a regular expression over concrete paths (one segment per param). */
function urlPattern(url: string): RegExp {
  const source = url
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}/?$`);
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

/**
 * The JSON Schemas of one OpenAPI document. zod puts the definitions of recursive schemas (e.g.
 * an OTLP attribute value) under the schema's own `definitions`, with `#/definitions/...`
 * references; inside an OpenAPI document such a reference points at the document's root and
 * cannot be resolved, so definitions move to `components.schemas` under a name unique to the
 * operation, and the references follow.
 */
class SchemaCollector {
  readonly components: Record<string, unknown> = {};

  convert(schema: z.ZodType, io: 'input' | 'output', owner: string): Record<string, unknown> {
    const js = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'openapi-3.0' }) as Record<
      string,
      unknown
    >;
    const { definitions, ...rest } = js as { definitions?: Record<string, unknown> };
    if (!definitions) return rest;
    const renamed = (name: string) => `${owner}_${name}`.replace(/[^A-Za-z0-9._-]/g, '_');
    const rewrite = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(rewrite);
      if (!value || typeof value !== 'object') return value;
      return Object.fromEntries(
        Object.entries(value).map(([k, v]) =>
          k === '$ref' && typeof v === 'string' && v.startsWith('#/definitions/')
            ? [k, `#/components/schemas/${renamed(v.slice('#/definitions/'.length))}`]
            : [k, rewrite(v)],
        ),
      );
    };
    for (const [name, def] of Object.entries(definitions)) this.components[renamed(name)] = rewrite(def);
    return rewrite(rest) as Record<string, unknown>;
  }
}

/** OpenAPI 3.0 document generated from the route table. */
export function openApiDocument(table: RouteTable, version: string): unknown {
  const schemas = new SchemaCollector();
  const paths: Record<string, Record<string, unknown>> = {};
  for (const spec of table.specs) {
    const path = spec.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const owner = `${spec.method}${path}`;
    const parameters: unknown[] = [];
    for (const [where, schema] of [
      ['path', spec.params],
      ['query', spec.query],
    ] as const) {
      if (!schema) continue;
      const js = schemas.convert(schema, 'input', `${owner}_${where}`) as {
        properties?: Record<string, unknown>;
        required?: string[];
      };
      for (const [name, s] of Object.entries(js.properties ?? {})) {
        parameters.push({
          name,
          in: where,
          required: where === 'path' || (js.required ?? []).includes(name),
          schema: s,
        });
      }
    }
    const success = spec.response ?? { status: 200, description: 'OK' };
    const content = spec.response?.schema
      ? {
          content: { 'application/json': { schema: schemas.convert(spec.response.schema, 'output', owner) } },
        }
      : {};
    const responses: Record<string, unknown> = {};
    for (const { status, description } of [success, ...(spec.response?.also ?? [])])
      responses[String(status)] = { description, ...content };
    responses['4XX'] = {
      description: 'Bad input, auth or limits; names the field',
      content: { 'application/json': { schema: errorSchema } },
    };
    const body = spec.body ?? spec.bodyDoc;
    paths[path] ??= {};
    paths[path][spec.method.toLowerCase()] = {
      summary: spec.summary,
      tags: [spec.tag],
      ...(spec.access === 'none' ? { security: [] } : {}),
      // Which key may call it (bearer alone cannot say): 'none', or the scopes any one of which
      // admits a key (a key created before scopes existed: secret = all four, public = public).
      'x-ratchet-access': spec.access === 'none' ? 'none' : accessScopes(spec.access),
      // Which people may call it (signed in with a session cookie), by role.
      'x-ratchet-roles': spec.access === 'none' ? [] : rolesOfAccess(accessScopes(spec.access), spec.roles),
      ...(parameters.length ? { parameters } : {}),
      ...(body
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: schemas.convert(body, 'input', `${owner}_body`) } },
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
      schemas: schemas.components,
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'A project key: rk_sec_... or rk_pub_...' },
      },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
