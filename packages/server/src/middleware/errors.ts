import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { type ErrorCode, RatchetError } from '@ratchet/core';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Maps Fastify's own errors (body parsing, size, content type, URLs) onto our error codes. */
function fromFastifyError(err: FastifyError): RatchetError | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new RatchetError(
        'payload_too_large',
        `body: larger than the limit of ${err.message.match(/\d+/)?.[0] ?? 'the configured'} bytes`,
        'body',
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new RatchetError('unsupported_media_type', 'body: send application/json', 'body');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new RatchetError('invalid_request', 'body: empty JSON body', 'body');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new RatchetError('invalid_request', `body: not valid JSON (${err.message})`, 'body');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new RatchetError('invalid_request', 'body: its length differs from content-length', 'body');
    case 'FST_ERR_BAD_URL':
      return new RatchetError('invalid_request', `url: ${err.message}`, 'url');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new RatchetError('uri_too_long', `url: ${err.message}`, 'url');
  }
  if (err.statusCode === 400 && err.message.includes('JSON'))
    return new RatchetError('invalid_request', `body: ${err.message}`, 'body');
  return undefined;
}

/** Which methods a path has routes for (`[]`: no route at all). */
export type AllowedMethods = (path: string) => string[];

function sendError(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const known = err instanceof RatchetError ? err : fromFastifyError(err);
  if (known) {
    if (known.code === 'rate_limited') reply.header('retry-after', '1');
    return reply.status(known.status).send(known.toJSON());
  }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    const code: ErrorCode = err.statusCode === 404 ? 'not_found' : 'invalid_request';
    return reply.status(err.statusCode).send({ error: { code, message: err.message } });
  }
  request.log.error({ err }, 'unhandled error');
  return reply.status(500).send({ error: { code: 'internal', message: 'internal error' } });
}

/**
 * Errors Node's HTTP parser finds before Fastify sees a request (headers over Node's
 * max-header-size: 431; a malformed request line: 400; a slow client: 408), answered in the one
 * error shape on the raw socket, which Node then closes.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, error] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, new RatchetError('headers_too_large', 'headers: larger than the server accepts', 'headers')]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, new RatchetError('invalid_request', 'request: not received in time')]
        : [400, new RatchetError('invalid_request', `request: not valid HTTP (${err.code ?? err.message})`)];
  const body = JSON.stringify(error.toJSON());
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`,
    );
  socket.destroy(err);
}

/** Every error leaves as `{ error: { code, message, path? } }` with the status its code implies. */
export function registerErrorHandling(app: FastifyInstance, allowedMethods: AllowedMethods): void {
  app.setErrorHandler(sendError);
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const allowed = allowedMethods(path);
    // A route takes this method at this path, yet the router found none: a path parameter over
    // the router's maxParamLength is the one reason it gives up on a match.
    if (allowed.includes(request.method)) {
      const err = new RatchetError(
        'uri_too_long',
        'url: a path parameter is longer than the server takes',
        'url',
      );
      return reply.status(err.status).send(err.toJSON());
    }
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      const err = new RatchetError(
        'method_not_allowed',
        `method: ${path} takes ${allowed.join(', ')}, not ${request.method}`,
        'method',
      );
      return reply.status(err.status).send(err.toJSON());
    }
    reply.status(404).send({ error: { code: 'not_found', message: `no route ${request.method} ${path}` } });
  });
}

/** Fastify's `frameworkErrors`: bad URLs and over-long path parameters, in the one error shape. */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  return sendError(err, request, reply);
}
