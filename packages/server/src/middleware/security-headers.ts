import type { FastifyInstance } from 'fastify';

/**
 * The dashboard loads only its own hashed script and stylesheet and calls only its own API, so
 * the policy allows nothing else: no inline script, no other origin, no plugins, no framing
 * (clickjacking a signed-in tab could press Promote). API answers carry the same policy; on JSON
 * it costs nothing and covers a response a browser is tricked into rendering. The widget script
 * is loaded by other origins' pages: a CSP on a script response does not apply to the page.
 */
export const contentSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const securityHeaders: Record<string, string> = {
  'content-security-policy': contentSecurityPolicy,
  // For browsers that predate frame-ancestors.
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // Dashboard URLs name interactions and models; they are nobody else's business.
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
};

/** Sends the hardening headers on every answer: dashboard files, API results and errors alike. */
export function registerSecurityHeaders(app: FastifyInstance): void {
  // A callback hook, not an async one: on every call, a promise per hook is measurable.
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(securityHeaders);
    done();
  });
}
