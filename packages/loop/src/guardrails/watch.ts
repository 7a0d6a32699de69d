import { createHmac } from 'node:crypto';
import { lookAtWatch, type WatchLookResult } from '@ratchet/core';
import type { GatewayFacts, PromotionWatch, Store } from '@ratchet/store';
import { holdbackVariant } from '@ratchet/store';

/** The actor of the guardrail's looks and rollbacks in the audit log. */
export const guardrailActor = 'guardrail';

/**
 * Where the guardrail tells a person that it acted. From the server's configuration or the
 * environment only, never from an API request: a request that could set it could send the
 * project's evidence anywhere.
 */
export interface GuardrailWebhook {
  url: string;
  /** HMAC-SHA256 key of the signature header; the receiver holds the same. */
  secret: string;
  /** How a failed delivery is retried (defaults: `defaultWebhookRetry`). */
  retry?: Partial<WebhookRetry>;
}

/**
 * Retries of a delivery that failed on the network or with a 5xx, 408 or 429 (the receiver may be
 * restarting): at most `attempts` POSTs, waiting before each retry a backoff that doubles from
 * `baseDelayMs` up to `maxDelayMs`, half of it random (jitter, so many servers that saw the same
 * outage do not retry in step). Bounded so a look's pass ends: the rollback has committed already.
 */
export interface WebhookRetry {
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Each attempt's own timeout. */
  timeoutMs: number;
}

export const defaultWebhookRetry: WebhookRetry = {
  attempts: 5,
  baseDelayMs: 1000,
  maxDelayMs: 30_000,
  timeoutMs: 10_000,
};

/** One POST of a delivery: the receiver's status, or the network error. */
export interface WebhookAttempt {
  at: number;
  status?: number;
  error?: string;
}

/** A webhook delivery's outcome, recorded in the audit log (`watch.webhook`, subject the watch). */
export interface WebhookDelivery {
  delivered: boolean;
  /** The last attempt's status or error. */
  status?: number;
  error?: string;
  attempts: WebhookAttempt[];
}

/** The webhook from RATCHET_GUARDRAIL_WEBHOOK_URL and RATCHET_GUARDRAIL_WEBHOOK_SECRET (both, or none). */
export function guardrailWebhookFromEnv(env: NodeJS.ProcessEnv = process.env): GuardrailWebhook | undefined {
  const url = env.RATCHET_GUARDRAIL_WEBHOOK_URL;
  const secret = env.RATCHET_GUARDRAIL_WEBHOOK_SECRET;
  if (!url && !secret) return undefined;
  if (!url || !secret)
    throw new Error(
      'RATCHET_GUARDRAIL_WEBHOOK_URL and RATCHET_GUARDRAIL_WEBHOOK_SECRET go together: an unsigned webhook cannot be trusted',
    );
  new URL(url);
  return { url, secret };
}

/** The signature header's name and value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export const signatureHeader = 'x-ratchet-signature';

export function signWebhook(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

export interface WatchLookOutcome {
  watch: PromotionWatch;
  decision: WatchLookResult['decision'] | 'closed';
  reasons: string[];
  result?: WatchLookResult;
  /** The webhook's delivery, when one was sent. */
  webhook?: WebhookDelivery;
}

export interface WatchLookOptions {
  webhook?: GuardrailWebhook | undefined;
  gateway?: GatewayFacts | undefined;
  actor?: string;
  /** The clock (tests and the bench move it). */
  now?: number;
  fetch?: typeof fetch;
  /** Aborted when the server shuts down: a webhook's retries stop waiting (recorded as not delivered). */
  signal?: AbortSignal;
}

/**
 * One look at an open watch: the evidence summed per user in SQL since it opened, the one-sided
 * always-valid tests (core), recorded with the decision. Harm rolls the route back (registry,
 * route, audit as `guardrail`, one transaction) and sends the signed webhook; a watch whose length
 * passed without harm ends (the holdback leaves the route). A watch whose route another change
 * already took over (the holdback is gone from it) is closed as superseded.
 */
export async function lookAtPromotionWatch(
  store: Store,
  watch: PromotionWatch,
  options: WatchLookOptions = {},
): Promise<WatchLookOutcome> {
  const actor = options.actor ?? guardrailActor;
  if (watch.status !== 'watching')
    return { watch, decision: 'closed', reasons: [`the watch is ${watch.status}`] };
  const route = await store.routes.get(watch.projectId, watch.route);
  if (!route?.variants.some((v) => v.name === holdbackVariant && v.modelId === watch.holdbackModelId)) {
    const reason = `route "${watch.route}" no longer serves the holdback (another change took it over)`;
    await store.routes.transaction((trx) =>
      store.watches.closeOn(trx, watch.projectId, watch.route, 'superseded', actor, reason),
    );
    return { watch, decision: 'closed', reasons: [reason] };
  }
  const now = options.now ?? Date.now();
  const evidence = await store.watches.evidence(watch);
  const result = lookAtWatch({
    policy: watch.policy,
    openedAt: watch.openedAt,
    now,
    newArm: evidence.newArm,
    holdback: evidence.holdback,
    previous: watch.state,
  });
  const recorded = { evidence: { ...evidence, metrics: result.metrics }, state: result.state };
  await store.watches.recordLook(
    watch,
    { decision: result.decision, reasons: result.reasons, ...recorded },
    actor,
  );
  const outcome: WatchLookOutcome = { watch, decision: result.decision, reasons: result.reasons, result };
  if (result.decision === 'end') {
    await store.watches.end(watch.projectId, watch.id, actor, result.reasons.join('; '));
  } else if (result.decision === 'rollback') {
    const reason = `guardrail: the promoted model is worse than the holdback: ${result.reasons.join('; ')}`;
    const rolled = await store.models.rollback(watch.projectId, watch.route, actor, reason, options.gateway);
    outcome.webhook = await sendWebhook(options, {
      event: 'promotion.rolled_back',
      at: new Date(now).toISOString(),
      projectId: watch.projectId,
      route: watch.route,
      watch: watch.id,
      rolledBack: { id: rolled.from.id, name: rolled.from.name },
      restored: { id: rolled.to.id, name: rolled.to.name },
      reasons: result.reasons,
      evidence: recorded.evidence,
    });
    if (outcome.webhook)
      await store.audit.record({
        projectId: watch.projectId,
        actor,
        action: webhookAuditAction,
        subjectType: 'watch',
        subjectId: watch.id,
        details: { route: watch.route, url: options.webhook!.url, ...outcome.webhook },
      });
  }
  return outcome;
}

/** Every project's open watches, one look each (what `ratchet serve` runs on its timer). */
export async function lookAtOpenWatches(
  store: Store,
  options: WatchLookOptions = {},
): Promise<WatchLookOutcome[]> {
  const out: WatchLookOutcome[] = [];
  for (const watch of await store.watches.watching())
    out.push(await lookAtPromotionWatch(store, watch, options));
  return out;
}

/** The audit action of a webhook delivery (subject: the watch), which `GET /api/v1/watches` shows. */
export const webhookAuditAction = 'watch.webhook';

/** A status worth another attempt: the receiver is down or busy, not refusing this event. */
const retryableStatus = (status: number) => status >= 500 || status === 408 || status === 429;

/** The wait before retry `n` (1-based): half the doubled backoff, plus up to as much at random. */
export function webhookBackoffMs(retry: WebhookRetry, n: number, random: () => number = Math.random): number {
  const cap = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (n - 1));
  return cap / 2 + random() * (cap / 2);
}

/**
 * POSTs the event, signed like Stripe's and GitHub's webhooks so the receiver can check it came
 * from here and was not replayed later (the signed timestamp, fresh on every attempt), retried
 * on network errors and 5xx (see WebhookRetry). A failure is reported, not thrown: the rollback
 * has committed and must not be undone by a receiver that is down.
 */
async function sendWebhook(
  options: WatchLookOptions,
  event: Record<string, unknown>,
): Promise<WebhookDelivery | undefined> {
  const hook = options.webhook;
  if (!hook) return undefined;
  const retry = { ...defaultWebhookRetry, ...hook.retry };
  const body = JSON.stringify(event);
  const attempts: WebhookAttempt[] = [];
  for (let n = 0; n < retry.attempts; n++) {
    if (n > 0) await pause(webhookBackoffMs(retry, n), options.signal);
    if (options.signal?.aborted) {
      attempts.push({ at: Date.now(), error: 'not sent: the server is shutting down' });
      break;
    }
    const attempt = await postOnce(options.fetch ?? fetch, hook, body, retry.timeoutMs, options.signal);
    attempts.push(attempt);
    if (attempt.status !== undefined && attempt.status < 300)
      return { delivered: true, ...last(attempt), attempts };
    if (attempt.status !== undefined && !retryableStatus(attempt.status)) break;
  }
  return { delivered: false, ...last(attempts.at(-1)!), attempts };
}

const last = (a: WebhookAttempt) => (a.status !== undefined ? { status: a.status } : { error: a.error! });

/** Waits `ms`, or less when `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

async function postOnce(
  post: typeof fetch,
  hook: GuardrailWebhook,
  body: string,
  timeoutMs: number,
  stop: AbortSignal | undefined,
): Promise<WebhookAttempt> {
  const at = Date.now();
  const signature = signWebhook(hook.secret, body, Math.floor(at / 1000));
  try {
    const res = await post(hook.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [signatureHeader]: signature },
      body,
      signal: stop ? AbortSignal.any([AbortSignal.timeout(timeoutMs), stop]) : AbortSignal.timeout(timeoutMs),
    });
    // Read the answer so the connection is released (its content is not needed).
    await res.arrayBuffer().catch(() => undefined);
    return { at, status: res.status };
  } catch (err) {
    return { at, error: errorText(err) };
  }
}

/** Node's fetch says only "fetch failed"; the cause says what (ECONNREFUSED, a reset, a timeout). */
function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? err.cause.message : undefined;
  return cause ? `${err.message}: ${cause}` : err.message;
}
