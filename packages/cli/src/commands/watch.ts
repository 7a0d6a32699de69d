import type { WatchMetricLook } from '@ratchet/core';
import {
  guardrailWebhookFromEnv,
  lookAtPromotionWatch,
  type WatchLookOutcome,
  type WebhookDelivery,
  webhookAuditAction,
} from '@ratchet/loop';
import { gatewayFacts, loadGatewayConfig } from '@ratchet/server';
import type { PromotionWatch, Store } from '@ratchet/store';
import { type Command, Option } from 'commander';
import { type GlobalOptions, projectIdByName, withStore } from '../context.js';

const fmt = (x: number | null) => (x === null ? '-' : Number(x.toPrecision(3)).toString());

function metricLine(m: WatchMetricLook): string {
  const p = m.skipped ? m.skipped : `p=${fmt(m.pValue)} (acts at ${fmt(m.alpha)})`;
  return `    ${m.metric.padEnd(15)} new ${fmt(m.newMean).padEnd(7)} holdback ${fmt(m.holdbackMean).padEnd(7)} users ${m.newUsers}/${m.holdbackUsers}  ${p}`;
}

/** `200`, `200 after 3 attempts`, `failed after 5 attempts: fetch failed: ...`. */
function deliveryText(d: WebhookDelivery): string {
  const tries = d.attempts.length > 1 ? ` after ${d.attempts.length} attempts` : '';
  return d.delivered ? `${d.status}${tries}` : `failed${tries || ' after 1 attempt'}: ${d.status ?? d.error}`;
}

async function describeWatch(store: Store, w: PromotionWatch): Promise<string[]> {
  const [model, holdback] = await Promise.all([
    store.models.get(w.projectId, w.modelId),
    store.models.get(w.projectId, w.holdbackModelId),
  ]);
  const lines = [
    `${w.route}: ${model?.name ?? w.modelId} watched against ${holdback?.name ?? w.holdbackModelId} (holdback ${
      w.policy.holdbackShare * 100
    }%), ${w.status}, opened ${new Date(w.openedAt).toISOString()} by ${w.openedBy}`,
  ];
  if (w.outcome) lines.push(`  closed by ${w.outcome.actor}: ${w.outcome.reason}`);
  const [hook] = await store.audit.list(w.projectId, {
    subjectType: 'watch',
    subjectId: w.id,
    action: webhookAuditAction,
    limit: 1,
  });
  if (hook) lines.push(`  webhook: ${deliveryText(hook.details as unknown as WebhookDelivery)}`);
  const [last] = await store.watches.looks(w.id, 1);
  if (last) {
    lines.push(
      `  last look ${new Date(last.createdAt).toISOString()}: ${last.decision}: ${last.reasons.join('; ')}`,
    );
    const metrics = (last.evidence as { metrics?: WatchMetricLook[] }).metrics ?? [];
    lines.push(...metrics.map(metricLine));
  }
  return lines;
}

/** `ratchet watch status|check`: the watches that follow promotions, and a look at them now. */
export function registerWatchCommands(program: Command): void {
  const watch = program
    .command('watch')
    .description(
      'Promotion watches: after a promotion the replaced model keeps a holdback of users, and the guardrail rolls back a worse model',
    );
  watch
    .command('status')
    .description('Open watches (all with --all), with the last look and its evidence')
    .requiredOption('--project <name>', 'project name')
    .option('--route <route>', 'only this route')
    .option('--all', 'closed watches too')
    .option('--json', 'print JSON')
    .action(async (opts: { project: string; route?: string; all?: boolean; json?: boolean }) => {
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        const watches = await store.watches.list(projectId, {
          open: !opts.all,
          ...(opts.route ? { route: opts.route } : {}),
        });
        if (opts.json) {
          const withLooks = await Promise.all(
            watches.map(async (w) => ({ ...w, looks: await store.watches.looks(w.id, 20) })),
          );
          console.log(JSON.stringify(withLooks, null, 2));
          return;
        }
        if (watches.length === 0) console.log(opts.all ? 'no watches' : 'no open watches');
        for (const w of watches) console.log((await describeWatch(store, w)).join('\n'));
      });
    });
  watch
    .command('check')
    .description(
      'Look at the open watches now (what `ratchet serve` does on its timer): roll back on harm, end a watch whose length passed',
    )
    .requiredOption('--project <name>', 'project name')
    .addOption(
      new Option(
        '--gateway-config <file>',
        'the gateway file, to know which upstream serves the restored model (RATCHET_GATEWAY_CONFIG)',
      ).env('RATCHET_GATEWAY_CONFIG'),
    )
    .action(async (opts: { project: string; gatewayConfig?: string }) => {
      const gateway = opts.gatewayConfig ? gatewayFacts(loadGatewayConfig(opts.gatewayConfig)) : undefined;
      const webhook = guardrailWebhookFromEnv();
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        const open = await store.watches.list(projectId, { open: true });
        if (open.length === 0) console.log('no open watches');
        for (const w of open) {
          const out: WatchLookOutcome = await lookAtPromotionWatch(store, w, {
            webhook,
            gateway,
            actor: 'guardrail',
          });
          const hook = out.webhook ? ` (webhook: ${deliveryText(out.webhook)})` : '';
          console.log(`${w.route}: ${out.decision}${hook}: ${out.reasons.join('; ')}`);
        }
      });
    });
}
