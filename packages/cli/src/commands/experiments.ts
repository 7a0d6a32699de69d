import { readFileSync } from 'node:fs';
import { directionText, experimentMetric, isExperimentMetric } from '@ratchet/core';
import {
  describeAdjustments,
  type ExperimentStartSpec,
  type ExperimentStatus,
  experimentEngines,
  experimentMetrics,
  experimentStatus,
  startExperiment,
  stopExperiment,
} from '@ratchet/loop';
import { loadGatewayConfig } from '@ratchet/server';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type GlobalOptions, projectIdByName, withStore } from '../context.js';

const fmt = (x: number | null | undefined, digits = 3) =>
  x === null || x === undefined || !Number.isFinite(x) ? '' : Number(x.toPrecision(digits)).toString();

type VariantInput = ExperimentStartSpec['variants'][number];

/** A per-user figure: the mean of user means, its interval, and the users behind it. */
function perUser(m: ExperimentStatus['variants'][number]['stars']): string {
  if (m.mean === null) return '';
  const i = m.interval ? ` [${fmt(m.interval.lower)}, ${fmt(m.interval.upper)}]` : '';
  return `${fmt(m.mean)}${i} (${m.users} users)`;
}

/**
 * `NAME=MODEL[@UPSTREAM][:WEIGHT]`: MODEL is a registry model; prefix it with `upstream:` for a
 * model name sent as is (e.g. `v2=upstream:gpt-4o-mini@openai:10`).
 */
export function parseVariant(value: string, previous: VariantInput[] = []): VariantInput[] {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('expected NAME=MODEL[@UPSTREAM][:WEIGHT]');
  const name = value.slice(0, eq);
  let rest = value.slice(eq + 1);
  const raw = rest.startsWith('upstream:');
  if (raw) rest = rest.slice('upstream:'.length);
  let weight = 1;
  const w = /:(\d+(?:\.\d+)?)$/.exec(rest);
  if (w) {
    weight = Number(w[1]);
    rest = rest.slice(0, w.index);
  }
  let upstream: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at > 0) {
    upstream = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  if (!rest) throw new InvalidArgumentError('expected NAME=MODEL[@UPSTREAM][:WEIGHT]');
  return [
    ...previous,
    { name, weight, ...(raw ? { upstreamModel: rest } : { model: rest }), ...(upstream ? { upstream } : {}) },
  ];
}

/** " (lower is better)" for a metric core defines that way; nothing for the usual direction. */
function metricDirection(metric: string): string {
  return isExperimentMetric(metric) && !experimentMetric(metric).higherIsBetter
    ? ` (${directionText(false)})`
    : '';
}

export function printExperimentStatus(s: ExperimentStatus): void {
  const e = s.experiment;
  console.log(
    `experiment ${e.name} on route ${e.route}: ${e.status}, metric ${e.metric}${metricDirection(e.metric)}, engine ${e.engine}${e.bandit ? ', Thompson-sampling bandit' : ''}, control ${e.control}`,
  );
  console.log("per user (each user's mean of their own ratings; the user is the unit of the test):");
  console.table(
    s.variants.map((v) => ({
      variant: v.name,
      model: v.model,
      weight: fmt(v.weight),
      users: v.users,
      calls: v.interactions,
      'thumbs up': `${v.thumbsUpRate.up}/${v.thumbsUpRate.events}`,
      'up rate': perUser(v.thumbsUpRate),
      'mean reward': perUser(v.meanReward),
      stars: perUser(v.stars),
    })),
  );
  // The users' own actions: every user served has a rate (0 when they did nothing).
  const implicit = s.variants.flatMap((v) =>
    Object.values(v.metrics)
      .filter((m) => m.source === 'implicit' && (m.signalled ?? 0) > 0)
      .map((m) => ({
        variant: v.name,
        metric: `${m.metric} (${directionText(m.higherIsBetter)})`,
        answers: `${m.signalled}/${m.events}`,
        'per user': perUser(m),
      })),
  );
  if (implicit.length) {
    console.log("implicit signals (each user's share of their answers with the signal):");
    console.table(implicit);
  }
  const others = s.variants.flatMap((v) =>
    v.otherSources.map((o) => ({
      variant: v.name,
      source: o.source,
      'thumbs up': `${o.thumbs.up}/${o.thumbs.total}`,
      'up rate': fmt(o.thumbs.rate),
      stars: o.stars.n ? `${fmt(o.stars.mean)} (${o.stars.n})` : '',
    })),
  );
  if (others.length) {
    console.log('AI and annotator labels (not in the decision):');
    console.table(others);
  }
  if (s.decision.comparisons.length)
    console.table(
      s.decision.comparisons.map((c) => ({
        variant: c.variant,
        metric: c.metric,
        role: c.role,
        better: c.higherIsBetter ? 'higher' : 'lower',
        difference: fmt(c.difference),
        'always-valid CI': `[${fmt(c.sequentialInterval.lower)}, ${fmt(c.sequentialInterval.upper)}]`,
        'p (mSPRT)': fmt(c.sequentialPValue),
        'P(better)': fmt(c.probabilityToBeat),
        'expected loss': fmt(c.expectedLoss),
        'credible interval': `[${fmt(c.credibleInterval.lower)}, ${fmt(c.credibleInterval.upper)}]`,
        verdict: c.verdict,
      })),
    );
  console.log(`adjustments: ${describeAdjustments(s.adjustments)}`);
  const srm = s.decision.srm;
  console.log(
    `sample ratio: chi-square ${fmt(srm.chiSquare)}, p ${fmt(srm.pValue)}${srm.mismatch ? ' MISMATCH' : ''}`,
  );
  console.log(`decision: ${s.decision.decision}${s.decision.variant ? ` (${s.decision.variant})` : ''}`);
  for (const r of s.decision.reasons) console.log(`  - ${r}`);
}

export function registerExperimentCommands(program: Command): void {
  const experiment = program
    .command('experiment')
    .description('A/B experiments on a gateway route: start, status (metrics, posterior, decision), stop');

  experiment
    .command('start')
    .description(
      "Start an experiment: the route's variants go to the database, where every gateway picks them up within seconds",
    )
    .requiredOption('--project <name>', 'project name')
    .option('--spec <file>', 'the experiment as JSON (flags override it)')
    .option('--name <name>', 'experiment name')
    .option('--route <route>', 'the route applications call')
    .option('--control <variant>', 'the variant the others are compared with')
    .option(
      '--variant <spec>',
      'NAME=MODEL[@UPSTREAM][:WEIGHT] (repeatable; upstream:MODEL for a raw model name)',
      parseVariant,
    )
    .addOption(new Option('--metric <metric>', 'primary metric').choices([...experimentMetrics]))
    .addOption(new Option('--engine <engine>', 'decision engine').choices([...experimentEngines]))
    .option('--min-per-arm <n>', 'observations per arm before any decision', (v) => Number(v))
    .option(
      '--expected-effect <x>',
      'the effect looked for, in metric units (e.g. 0.05 = 5 points of thumbs-up rate): tunes the sequential test',
      (v) => Number(v),
    )
    .option('--bandit', 'Thompson-sampling weights at every recorded look')
    .option('--gateway-config <file>', 'the gateway file, to check upstream names and take defaultUpstream')
    .action(
      async (opts: {
        project: string;
        spec?: string;
        name?: string;
        route?: string;
        control?: string;
        variant?: VariantInput[];
        metric?: string;
        engine?: string;
        minPerArm?: number;
        expectedEffect?: number;
        bandit?: boolean;
        gatewayConfig?: string;
      }) => {
        const base = (opts.spec ? JSON.parse(readFileSync(opts.spec, 'utf8')) : {}) as Record<
          string,
          unknown
        >;
        const spec = {
          ...base,
          ...(opts.name ? { name: opts.name } : {}),
          ...(opts.route ? { route: opts.route } : {}),
          ...(opts.control ? { control: opts.control } : {}),
          ...(opts.variant ? { variants: opts.variant } : {}),
          ...(opts.metric ? { metric: opts.metric } : {}),
          ...(opts.engine ? { engine: opts.engine } : {}),
          ...(opts.bandit ? { bandit: true } : {}),
          ...(opts.minPerArm !== undefined || opts.expectedEffect !== undefined
            ? {
                decisionRule: {
                  ...((base.decisionRule ?? {}) as object),
                  ...(opts.minPerArm !== undefined ? { minObservationsPerArm: opts.minPerArm } : {}),
                  ...(opts.expectedEffect !== undefined ? { expectedEffect: opts.expectedEffect } : {}),
                },
              }
            : {}),
        } as ExperimentStartSpec;
        const gateway = opts.gatewayConfig ? loadGatewayConfig(opts.gatewayConfig) : undefined;
        await withStore(program.opts<GlobalOptions>(), async (store) => {
          const e = await startExperiment(store, await projectIdByName(store, opts.project), spec, {
            actor: 'cli',
            ...(gateway
              ? {
                  gateway: {
                    upstreams: Object.keys(gateway.upstreams),
                    defaultUpstream: gateway.defaultUpstream,
                  },
                }
              : {}),
          });
          console.log(
            `started ${e.name} (${e.id}) on route ${e.route}: ${e.variants.map((v) => `${v.name}=${v.model}@${v.upstream}:${v.weight}`).join(', ')}`,
          );
        });
      },
    );

  experiment
    .command('status')
    .description(
      'Per-variant metrics from feedback, each treatment against the control (mSPRT and Bayesian), SRM and the decision',
    )
    .argument('<experiment>', 'experiment name or id')
    .requiredOption('--project <name>', 'project name')
    .option('--record', 'append this look to the history (and apply bandit weights)')
    .option('--json', 'print JSON')
    .action(async (ref: string, opts: { project: string; record?: boolean; json?: boolean }) => {
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const s = await experimentStatus(store, await projectIdByName(store, opts.project), ref, {
          record: Boolean(opts.record),
          actor: 'cli',
        });
        if (opts.json) console.log(JSON.stringify(s));
        else printExperimentStatus(s);
      });
    });

  experiment
    .command('stop')
    .description(
      'Stop an experiment; --keep gives one variant all of the route, otherwise the route returns to the gateway file',
    )
    .argument('<experiment>', 'experiment name or id')
    .requiredOption('--project <name>', 'project name')
    .requiredOption('--reason <text>', 'why (kept in the history and the audit log)')
    .option('--keep <variant>', 'the variant that takes all traffic')
    .action(async (ref: string, opts: { project: string; reason: string; keep?: string }) => {
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const e = await stopExperiment(store, await projectIdByName(store, opts.project), ref, {
          reason: opts.reason,
          actor: 'cli',
          ...(opts.keep ? { keep: opts.keep } : {}),
        });
        console.log(
          `stopped ${e.name}${opts.keep ? `; ${opts.keep} now takes all of ${e.route}` : `; ${e.route} follows the gateway file again`}`,
        );
      });
    });

  experiment
    .command('list')
    .description('Experiments, newest first')
    .requiredOption('--project <name>', 'project name')
    .action(async (opts: { project: string }) => {
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const rows = await store.experiments.list(await projectIdByName(store, opts.project));
        console.table(
          rows.map((e) => ({
            experiment: e.name,
            route: e.route,
            status: e.status,
            metric: e.metric,
            engine: e.engine,
            variants: e.variants.map((v) => v.name).join(', '),
            'last decision': e.history.at(-1)?.decision ?? '',
            started: new Date(e.startedAt).toISOString(),
          })),
        );
      });
    });
}
