import { type ErrorCode, RatchetError } from '@ratchet/core';
import type { FastifyError, FastifyInstance } from 'fastify';

/** Maps Fastify's own errors (body parsing, size, content type) onto our error codes. */
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
  }
  if (err.statusCode === 400 && err.message.includes('JSON'))
    return new RatchetError('invalid_request', `body: ${err.message}`, 'body');
  return undefined;
}

/** Every error leaves as `{ error: { code, message, path? } }` with the status its code implies. */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
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
  });
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({
      error: { code: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` },
    });
  });
}
