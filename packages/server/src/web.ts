import { createReadStream, existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RatchetError } from '@ratchet/core';
import type { FastifyInstance, FastifyReply } from 'fastify';

/** The built dashboard: `packages/web/dist` beside this package (src/ or dist/ alike), or RATCHET_WEB_DIR. */
export function defaultWebDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.RATCHET_WEB_DIR || fileURLToPath(new URL('../../web/dist', import.meta.url));
}

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.map': 'application/json',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

/**
 * Endpoints an application's own pages call from the browser with the public key: the feedback
 * write and the widget's summary. Bearer keys, not cookies, so any origin may call them.
 */
const browserEndpoints = new Set(['/api/v1/feedback', '/api/v1/widget/summary']);

function allowCors(reply: FastifyReply): FastifyReply {
  return reply
    .header('access-control-allow-origin', '*')
    .header('access-control-allow-methods', 'GET, POST, OPTIONS')
    .header('access-control-allow-headers', 'authorization, content-type')
    .header('access-control-max-age', '600');
}

function registerCors(app: FastifyInstance): void {
  // A callback hook, not an async one: on every call, a promise per hook is measurable.
  app.addHook('onRequest', (request, reply, done) => {
    const path = request.url.split('?')[0]!;
    if (browserEndpoints.has(path)) allowCors(reply);
    done();
  });
  for (const url of browserEndpoints) app.options(url, async (_request, reply) => reply.status(204).send());
}

/**
 * Serves the dashboard (a single-page app: unknown paths get index.html so client routes can be
 * reloaded) and the widget script `/ratchet-widget.js`. API paths never fall through to the app.
 */
export function registerWebRoutes(app: FastifyInstance, webDir: string = defaultWebDir()): void {
  registerCors(app);
  const root = resolve(webDir);
  const sendFile = async (reply: FastifyReply, path: string) => {
    const info = await stat(path);
    const type = contentTypes[extname(path)] ?? 'application/octet-stream';
    // Hashed asset names can be cached for good; index.html and the widget must stay fresh.
    const immutable = path.startsWith(join(root, 'assets') + sep);
    return reply
      .header('content-type', type)
      .header('content-length', info.size)
      .header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
      .send(createReadStream(path));
  };
  app.get('/*', async (request, reply) => {
    const path = decodeURIComponent(request.url.split('?')[0]!);
    // The not-found handler answers 404, or 405 naming the methods the path takes.
    if (path.startsWith('/api/') || path.startsWith('/v1/')) return reply.callNotFound();
    if (!existsSync(join(root, 'index.html')))
      return reply
        .status(404)
        .type('text/plain')
        .send(`The dashboard is not built (${root} has no index.html): run \`make build\`.`);
    const file = normalize(join(root, path));
    if (file.startsWith(root + sep) && existsSync(file) && (await stat(file)).isFile())
      return sendFile(reply, file);
    if (extname(path)) throw new RatchetError('not_found', `no file ${path}`);
    return sendFile(reply, join(root, 'index.html'));
  });
}
