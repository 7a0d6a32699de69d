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
  /** The webhook's answer status, or the error, when one was sent. */
  webhook?: { status?: number; error?: string };
}

export interface WatchLookOptions {
  webhook?: GuardrailWebhook | undefined;
  gateway?: GatewayFacts | undefined;
  actor?: string;
  /** The clock (tests and the bench move it). */
  now?: number;
  fetch?: typeof fetch;
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
        action: 'watch.webhook',
        subjectType: 'route',
        subjectId: watch.route,
        details: { watch: watch.id, url: options.webhook!.url, ...outcome.webhook },
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

/**
 * POSTs the event, signed like Stripe's and GitHub's webhooks so the receiver can check it came
 * from here and was not replayed later (the signed timestamp). A failure is reported, not thrown:
 * the rollback has committed and must not be undone by a receiver that is down.
 */
async function sendWebhook(options: WatchLookOptions, event: Record<string, unknown>) {
  if (!options.webhook) return undefined;
  const body = JSON.stringify(event);
  const signature = signWebhook(options.webhook.secret, body, Math.floor(Date.now() / 1000));
  try {
    const res = await (options.fetch ?? fetch)(options.webhook.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [signatureHeader]: signature },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}
