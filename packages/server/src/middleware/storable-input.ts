import { RatchetError, storableIssue } from '@ratchet/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/**
 * A route whose body is stored repaired rather than refused (the gateway: it forwards the call
 * and logs what it can; its log writer makes the record storable). Set as Fastify route config.
 */
export interface StorableRouteConfig {
  repairsBody?: boolean;
}

/** The longest request target (path and query) we take; longer is a 414 naming `url`. */
export const MAX_URL_LENGTH = 8192;

/**
 * `storableIssue` as a 400 naming the field. `where` says which part of the request it came
 * from when that is not the body (`query`, `params`), for the message only: paths name the field
 * the way the client wrote it (`items.3.text`, `model`).
 */
export function unstorableInput(value: unknown, where = 'body'): RatchetError | undefined {
  const issue = storableIssue(value);
  if (!issue) return undefined;
  const path = issue.path === '' ? where : issue.path;
  return new RatchetError('invalid_request', `${path}: ${issue.message}`, path);
}

/**
 * Refuses, right after JSON parsing and before any schema walks the value, a body that either
 * database could not store: a NUL, a lone surrogate, or nesting deeper than MAX_JSON_DEPTH.
 * Depth is checked here because JSON.parse itself is iterative but everything after it (zod,
 * JSON.stringify on the way to the store) recurses; `storableIssue` stops at the limit.
 */
export function registerStorableJsonBody(app: FastifyInstance): void {
  // Fastify's own parser (proto-poisoning checks, empty-body and syntax errors) does the parsing.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  // JSON is the one body the API takes: a text/plain body (Fastify parses those by default) is a
  // 415 like any other type, not a string that reaches a handler unchecked.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    parseJson(request, body as string, (err: Error | null, value?: unknown) => {
      if (err) return done(err, undefined);
      const repairs = (request.routeOptions.config as StorableRouteConfig | undefined)?.repairsBody;
      const refused = repairs ? undefined : unstorableInput(value);
      if (refused) return done(refused, undefined);
      done(null, value);
    });
  });
  // A callback hook, not an async one: on every call, a promise per hook is measurable.
  app.addHook('onRequest', (request: FastifyRequest, _reply, done) => {
    if (request.url.length <= MAX_URL_LENGTH) return done();
    done(
      new RatchetError(
        'uri_too_long',
        `url: ${request.url.length} characters, more than the limit of ${MAX_URL_LENGTH}`,
        'url',
      ),
    );
  });
}
