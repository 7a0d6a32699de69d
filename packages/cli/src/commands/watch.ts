import { defaultWatchPolicy, RatchetError, type WatchMetricLook, type WatchPolicy } from '@ratchet/core';
import {
  guardrailWebhookFromEnv,
  lookAtPromotionWatch,
  type WatchLookOutcome,
  type WebhookDelivery,
  webhookAuditAction,
} from '@ratchet/loop';
import { gatewayFacts, loadGatewayConfig } from '@ratchet/server';
import type { PromotionWatch, RouteWatchPolicy, Store } from '@ratchet/store';
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

/**
 * The flags of `watch policy`, once each: flag, the policy field it sets (dotted for `harm`),
 * and what it means.
 */
const policyFlags = [
  ['users', 'users', 'the watch ends once this many users were served (both arms)...'],
  ['hours', 'hours', '...and this many hours passed'],
  ['holdback-share', 'holdbackShare', 'share of users kept on the replaced model (default 0.05)'],
  ['alpha', 'alpha', 'bound on the chance that an unchanged model is ever rolled back'],
  ['min-users-per-arm', 'minUsersPerArm', 'no metric is tested before each arm has this many users'],
  ['thumbs-up-drop', 'harm.thumbsUpDrop', 'thumbs-up rate drop tolerated (0.02 = 2 points)'],
  ['reward-drop', 'harm.rewardDrop', 'calibrated reward drop tolerated'],
  ['error-rate-rise', 'harm.errorRateRise', 'upstream error rate rise tolerated'],
  ['empty-rate-rise', 'harm.emptyRateRise', 'empty answer rate rise tolerated'],
  [
    'slow-rate-rise',
    'harm.slowRateRise',
    "rise of the share of calls slower than the holdback's p95 tolerated",
  ],
] as const;

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The stored policy with the given flags laid over it (numbers as typed; zod judges them). */
function withFlags(base: Record<string, unknown>, opts: Record<string, string | undefined>) {
  const out: Record<string, unknown> = { ...base, harm: { ...(base.harm as object) } };
  for (const [flag, field] of policyFlags) {
    const value = opts[camel(flag)];
    if (value === undefined) continue;
    const [head, leaf] = field.split('.') as [string, string | undefined];
    const parsed = value.trim() === '' ? Number.NaN : Number(value);
    if (leaf) (out[head] as Record<string, unknown>)[leaf] = parsed;
    else out[head] = parsed;
  }
  return out;
}

function printPolicy(route: string, p: RouteWatchPolicy | undefined) {
  const policy = p?.policy ?? defaultWatchPolicy;
  console.log(
    `${route}: ${p ? `set by ${p.updatedBy} ${new Date(p.updatedAt).toISOString()}` : 'the defaults (no policy set)'}`,
  );
  for (const [flag, field] of policyFlags) {
    const [head, leaf] = field.split('.') as [keyof WatchPolicy, string | undefined];
    const value = leaf ? (policy[head] as Record<string, number>)[leaf] : policy[head];
    console.log(`  --${flag.padEnd(18)} ${value}`);
  }
}

/** `ratchet watch status|check|policy`: the watches that follow promotions, a look now, their policy. */
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
  const policy = watch
    .command('policy')
    .description(
      "Show or set a route's watch policy: what its next promotion is watched with (open watches keep theirs)",
    )
    .requiredOption('--project <name>', 'project name')
    .requiredOption('--route <route>', 'the route')
    .option('--reset', 'remove the policy: back to the defaults')
    .option('--json', 'print JSON');
  for (const [flag, , help] of policyFlags) policy.option(`--${flag} <n>`, help);
  policy.action(
    async (
      opts: { project: string; route: string; reset?: boolean; json?: boolean } & Record<string, string>,
    ) => {
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        const setting = policyFlags.some(([flag]) => opts[camel(flag)] !== undefined);
        if (opts.reset && setting) throw new Error('--reset takes no policy flags');
        if (opts.reset) await store.watches.clearPolicy(projectId, opts.route, 'cli');
        else if (setting) {
          const current = await store.watches.policyOf(projectId, opts.route);
          await store.watches
            .setPolicy(projectId, opts.route, withFlags(current?.policy ?? {}, opts), 'cli')
            .catch((err: unknown) => {
              // Name the flag the person typed, not the policy's field.
              const flag = policyFlags.find(
                ([, field]) => err instanceof RatchetError && err.path === field,
              )?.[0];
              throw flag ? new Error(`--${flag} ${opts[camel(flag)]}: ${(err as Error).message}`) : err;
            });
        }
        const now = await store.watches.policyOf(projectId, opts.route);
        if (opts.json)
          console.log(
            JSON.stringify(
              { route: opts.route, configured: !!now, policy: now?.policy ?? defaultWatchPolicy },
              null,
              2,
            ),
          );
        else printPolicy(opts.route, now);
      });
    },
  );
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
