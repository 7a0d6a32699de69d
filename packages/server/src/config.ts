import { ProjectRole } from '@ratchet/core';
import { z } from 'zod';

/** Server settings; each has an environment variable (see the README's configuration reference). */
export const ServerConfig = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: z.coerce.number().int().min(0).max(65535).default(4400),
  /** Largest accepted request body, in bytes. */
  bodyLimit: z.coerce
    .number()
    .int()
    .positive()
    .default(4 * 1024 * 1024),
  /** Sustained requests per second allowed per API key; 0 disables the limit. */
  rateLimitPerSecond: z.coerce.number().nonnegative().default(2000),
  /** Requests a key may make in a burst above the sustained rate. */
  rateLimitBurst: z.coerce.number().positive().default(4000),
  /**
   * On shutdown, seconds /readyz says "shutting down" while requests are still served, so a load
   * balancer stops sending before the server stops accepting.
   */
  shutdownDrainSeconds: z.coerce.number().nonnegative().max(300).default(0),
  /** How long a feedback token (x-ratchet-feedback-token) lets a browser rate its interaction, in seconds. */
  feedbackTokenTtlSeconds: z.coerce
    .number()
    .int()
    .positive()
    .default(7 * 24 * 3600),
  /** Sustained feedback events per second one end user may send with the public key; 0 disables. */
  publicFeedbackPerSecond: z.coerce.number().nonnegative().default(1),
  /** Events one end user may send in a burst above that rate. */
  publicFeedbackBurst: z.coerce.number().positive().default(30),
  /** Path of the gateway's upstreams-and-routes file (YAML or JSON); no gateway routes without it. */
  gatewayConfigPath: z.string().optional(),
  /** How often buffered gateway interactions are written, in milliseconds. */
  logFlushIntervalMs: z.coerce.number().int().positive().default(50),
  /** Buffered gateway interactions that trigger a write before the interval ends. */
  logFlushBatchSize: z.coerce.number().int().positive().default(500),
  /** Most gateway interactions held while the database is unreachable; beyond it the oldest is dropped. */
  logBufferLimit: z.coerce.number().int().positive().default(100_000),
  /** Where dataset versions are written (RATCHET_DATA_DIR; default .ratchet/data). */
  dataDir: z.string().optional(),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** `/metrics` answers only a key with the `read` scope (a Prometheus scrape's bearer token). */
  metricsRequireKey: z.union([z.boolean(), z.stringbool()]).default(false),
  /** How long a person's sign-in lasts, in hours. */
  sessionTtlHours: z.coerce
    .number()
    .positive()
    .max(24 * 30)
    .default(12),
  /**
   * Session cookies carry `Secure` (sent over HTTPS only). Browsers treat http://localhost as
   * secure, so only a plain-HTTP deployment under another name needs false.
   */
  cookieSecure: z.union([z.boolean(), z.stringbool()]).default(true),
  /** OpenID Connect sign-in ("Sign in with SSO"): the issuer URL; off without it. */
  oidcIssuer: z.url().optional(),
  oidcClientId: z.string().min(1).optional(),
  oidcClientSecret: z.string().min(1).optional(),
  /** Where the identity provider sends people back: this server's /api/v1/auth/oidc/callback. */
  oidcRedirectUrl: z.url().optional(),
  /** The project a person signing in with SSO for the first time joins, by name. */
  oidcProject: z.string().min(1).optional(),
  /** The role that person gets there. */
  oidcDefaultRole: ProjectRole.default('viewer'),
});
export type ServerConfig = z.output<typeof ServerConfig>;
export type ServerConfigInput = z.input<typeof ServerConfig>;

const envNames: Record<keyof ServerConfig, string> = {
  host: 'RATCHET_HOST',
  port: 'RATCHET_PORT',
  bodyLimit: 'RATCHET_BODY_LIMIT',
  rateLimitPerSecond: 'RATCHET_RATE_LIMIT_PER_SECOND',
  rateLimitBurst: 'RATCHET_RATE_LIMIT_BURST',
  shutdownDrainSeconds: 'RATCHET_SHUTDOWN_DRAIN_SECONDS',
  feedbackTokenTtlSeconds: 'RATCHET_FEEDBACK_TOKEN_TTL_SECONDS',
  publicFeedbackPerSecond: 'RATCHET_PUBLIC_FEEDBACK_PER_SECOND',
  publicFeedbackBurst: 'RATCHET_PUBLIC_FEEDBACK_BURST',
  gatewayConfigPath: 'RATCHET_GATEWAY_CONFIG',
  logFlushIntervalMs: 'RATCHET_LOG_FLUSH_INTERVAL_MS',
  logFlushBatchSize: 'RATCHET_LOG_FLUSH_BATCH_SIZE',
  logBufferLimit: 'RATCHET_LOG_BUFFER_LIMIT',
  dataDir: 'RATCHET_DATA_DIR',
  logLevel: 'RATCHET_LOG_LEVEL',
  metricsRequireKey: 'RATCHET_METRICS_REQUIRE_KEY',
  sessionTtlHours: 'RATCHET_SESSION_TTL_HOURS',
  cookieSecure: 'RATCHET_COOKIE_SECURE',
  oidcIssuer: 'RATCHET_OIDC_ISSUER',
  oidcClientId: 'RATCHET_OIDC_CLIENT_ID',
  oidcClientSecret: 'RATCHET_OIDC_CLIENT_SECRET',
  oidcRedirectUrl: 'RATCHET_OIDC_REDIRECT_URL',
  oidcProject: 'RATCHET_OIDC_PROJECT',
  oidcDefaultRole: 'RATCHET_OIDC_DEFAULT_ROLE',
};

/** Reads settings from the environment, then applies explicit overrides (e.g. CLI flags). */
export function loadServerConfig(
  overrides: ServerConfigInput = {},
  env: NodeJS.ProcessEnv = process.env,
): ServerConfig {
  const fromEnv: Record<string, string> = {};
  for (const [key, name] of Object.entries(envNames)) {
    const value = env[name];
    if (value !== undefined && value !== '') fromEnv[key] = value;
  }
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  const result = ServerConfig.safeParse({ ...fromEnv, ...defined });
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = String(issue.path[0]) as keyof ServerConfig;
    throw new Error(`invalid setting ${envNames[key] ?? key}: ${issue.message}`);
  }
  return result.data;
}
