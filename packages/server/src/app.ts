import type { ActiveLearningObjective } from '@ratchet/core';
import type { AnnotationQueueTerms } from '@ratchet/loop';
import type { LoopRound, Store } from '@ratchet/store';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import { CaptureService } from './capture.js';
import type { ServerConfig } from './config.js';
import { FeedbackTokens } from './feedback-tokens.js';
import { type GatewayConfig, loadGatewayConfig } from './gateway/config.js';
import { Gateway, registerGatewayRoutes } from './gateway/gateway.js';
import { InteractionLogWriter } from './gateway/log-writer.js';
import type { ProviderFactory } from './gateway/providers/types.js';
import { ResponseLinks } from './gateway/response-links.js';
import { DatabaseRoutes } from './gateway/router.js';
import { createMetrics, type Metrics } from './metrics.js';
import { KeyResolver } from './middleware/auth.js';
import { clientErrorHandler, frameworkErrors, registerErrorHandling } from './middleware/errors.js';
import { RateLimiter } from './middleware/rate-limit.js';
import { registerSecurityHeaders } from './middleware/security-headers.js';
import { registerStorableJsonBody } from './middleware/storable-input.js';
import { OidcSignIn } from './oidc.js';
import { ReportRunner } from './reports/runner.js';
import { registerAccountRoutes } from './routes/accounts.js';
import { registerAdminRoutes } from './routes/admin.js';
import { registerAnnotationRoutes } from './routes/annotation.js';
import { registerCaptureRoutes } from './routes/capture.js';
import { registerDashboardRoutes } from './routes/dashboard.js';
import { registerDeadLetterRoutes } from './routes/dead-letters.js';
import { registerEvalRoutes } from './routes/eval.js';
import { registerExperimentRoutes } from './routes/experiments.js';
import { registerLoopRoutes } from './routes/loop.js';
import { registerOtlpRoutes } from './routes/otlp.js';
import { registerPipelineRoutes } from './routes/pipeline.js';
import { registerPrivacyRoutes } from './routes/privacy.js';
import { registerRegistryRoutes } from './routes/registry.js';
import { registerRunRoutes } from './routes/runs.js';
import { registerSystemRoutes } from './routes/system.js';
import { registerUsageRecordRoutes } from './routes/usage-records.js';
import { RouteTable } from './routing.js';
import { registerWebRoutes } from './web.js';

export const version = '0.1.0';

export interface ServerOptions {
  store: Store;
  config: ServerConfig;
  /** Overrides the config file (tests, embedding). */
  gatewayConfig?: GatewayConfig;
  providerFactory?: ProviderFactory;
  /** Compute the slow dashboard reports on a worker thread (default); false: on the event loop. */
  reportThread?: boolean;
  /** Per route, what the annotation queue's active learning asks for when a request does not say (from loop policies). */
  queueObjectives?: Record<string, ActiveLearningObjective>;
  /** Per route, how its annotation team shares the queue (overlap, lock time; from loop policies). */
  queueTerms?: Record<string, AnnotationQueueTerms>;
  /** Called when a person approves or rejects a loop round, so a loop running here can resume at once. */
  onLoopReviewed?: (round: LoopRound) => void;
}

export interface RatchetServer {
  app: FastifyInstance;
  metrics: Metrics;
  logWriter: InteractionLogWriter;
  gateway: Gateway | undefined;
  /** The gateway file's upstreams and routes, when there is one. */
  gatewayConfig: GatewayConfig | undefined;
  keys: KeyResolver;
  /** Starts listening; resolves with the address. */
  listen(): Promise<string>;
  /** Stops taking requests, writes buffered interactions, closes upstream connections. */
  close(): Promise<void>;
}

export async function buildServer(options: ServerOptions): Promise<RatchetServer> {
  const { store, config } = options;
  const app = Fastify({
    bodyLimit: config.bodyLimit,
    logger: config.logLevel === 'silent' ? false : { level: config.logLevel },
    // A log line per request would cost more than the gateway's whole latency budget.
    logController: new LogController({ disableRequestLogging: true }),
    // Clients choose their interaction ids; we generate none for requests.
    requestIdHeader: false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Bad URLs, over-long parameters and what Node's parser refuses (431) in the one error shape.
    frameworkErrors,
    clientErrorHandler,
    // Longer than any id or name the schemas take, so a long one is a 400 naming the parameter.
    maxParamLength: 1000,
  });
  const metrics = createMetrics();
  const keys = new KeyResolver(store);
  const stopWatchingKeys = keys.watch((err) => app.log.warn({ err }, 'watching API key revocations'));
  // On PostgreSQL several servers may share the database, so a key's limit is counted there too.
  const rateLimiter = new RateLimiter(
    config.rateLimitPerSecond,
    config.rateLimitBurst,
    'this key',
    undefined,
    store.dialect === 'postgres' ? store.rateWindows : undefined,
  );
  const logWriter = new InteractionLogWriter(
    store,
    metrics,
    app.log,
    config.logFlushIntervalMs,
    config.logFlushBatchSize,
    { maxBuffered: config.logBufferLimit },
  );
  const feedbackTokens = new FeedbackTokens(store, config.feedbackTokenTtlSeconds * 1000);
  const capture = new CaptureService(
    store,
    metrics,
    logWriter,
    feedbackTokens,
    new RateLimiter(config.publicFeedbackPerSecond, config.publicFeedbackBurst, 'this end user'),
  );
  const gatewayConfig =
    options.gatewayConfig ??
    (config.gatewayConfigPath ? loadGatewayConfig(config.gatewayConfigPath) : undefined);
  const gateway = gatewayConfig
    ? new Gateway(
        gatewayConfig,
        logWriter,
        metrics,
        options.providerFactory,
        new DatabaseRoutes(
          () => store.routes.list(),
          2000,
          (err) => app.log.error({ err }, 'loading database routes failed'),
          (reload) =>
            store.routes.subscribe(reload, {
              onError: (err) => app.log.warn({ err }, 'watching database routes'),
            }),
        ),
        feedbackTokens,
        (projectId, id, record) =>
          void store.usage
            .insert(projectId, record, id)
            .catch((err) => app.log.error({ err, id }, 'recording a usage record failed')),
        new ResponseLinks(store.responseLinks, (err, link) =>
          app.log.error({ err, responseId: link.responseId }, 'recording a Responses link failed'),
        ),
      )
    : undefined;

  const routes = new RouteTable(app, { keys, rateLimiter, store });
  registerErrorHandling(app, (path) => routes.methodsFor(path));
  registerStorableJsonBody(app);
  registerSecurityHeaders(app);
  // A callback hook, not an async one: on every call, a promise per hook is measurable.
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.httpRequests.inc({ route, method: request.method, status: reply.statusCode });
    metrics.httpDuration.observe({ route, method: request.method }, reply.elapsedTime / 1000);
    done();
  });
  // A request the client closed before its answer was complete (a "stop" button, a client's
  // timeout) never finishes, so onResponse never counts it (nor does Fastify's onRequestAbort once
  // the body was read); it was still a call (the gateway logs it as aborted). Counted as 499,
  // nginx's "client closed request".
  app.addHook('onRequest', (request, reply, done) => {
    reply.raw.once('close', () => {
      if (reply.raw.writableFinished) return;
      const route = request.routeOptions.url ?? 'unmatched';
      metrics.httpRequests.inc({ route, method: request.method, status: 499 });
    });
    done();
  });

  let shuttingDown = false;
  registerSystemRoutes(routes, store, metrics, version, {
    metricsRequireKey: config.metricsRequireKey,
    shuttingDown: () => shuttingDown,
  });
  registerCaptureRoutes(routes, store, capture);
  registerOtlpRoutes(routes, capture);
  registerDeadLetterRoutes(routes, store);
  registerUsageRecordRoutes(routes, store);
  registerAdminRoutes(routes, store);
  registerAccountRoutes(routes, store, config, OidcSignIn.fromConfig(config));
  registerPipelineRoutes(routes, store, config.dataDir);
  registerRegistryRoutes(routes, store, gatewayConfig);
  registerRunRoutes(routes, app, store, config.dataDir);
  registerGatewayRoutes(routes, () => gateway);
  registerEvalRoutes(routes, store, () => gateway);
  registerExperimentRoutes(routes, store, () => gateway);
  registerLoopRoutes(routes, store, (round) => options.onLoopReviewed?.(round));
  registerPrivacyRoutes(routes, store);
  const reportRunner = new ReportRunner(store, { threaded: options.reportThread ?? true });
  registerDashboardRoutes(routes, store, reportRunner, { queueObjectives: options.queueObjectives ?? {} });
  registerAnnotationRoutes(routes, store, {
    queueObjectives: options.queueObjectives ?? {},
    queueTerms: options.queueTerms ?? {},
  });
  registerWebRoutes(app);

  let closed = false;
  return {
    app,
    metrics,
    logWriter,
    gateway,
    gatewayConfig,
    keys,
    async listen() {
      return app.listen({ host: config.host, port: config.port });
    },
    async close() {
      if (closed) return;
      closed = true;
      // Not ready from now on; still serving through the drain, then Fastify answers new
      // requests 503 and waits for those under way before the interaction log is flushed.
      shuttingDown = true;
      if (config.shutdownDrainSeconds > 0)
        await new Promise((r) => setTimeout(r, config.shutdownDrainSeconds * 1000));
      // Fastify closes the connections idle when it starts closing; a keep-alive connection whose
      // request finishes later would hold the exit for the keep-alive timeout (72 s), so sweep.
      const closing = app.close();
      const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
      try {
        await closing;
      } finally {
        clearInterval(sweep);
      }
      await stopWatchingKeys();
      await reportRunner.close();
      await logWriter.close();
      await gateway?.close();
    },
  };
}
