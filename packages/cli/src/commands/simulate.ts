import { createPopulation, PopulationOptions, parseInput } from '@ratchet/core';
import type { Command } from 'commander';
import { positiveInteger, share } from '../arguments.js';
import { loadDemoDomain, simulateTraffic, type TrafficReport } from '../demo/traffic.js';
import { progressBar } from '../progress.js';

export function printTraffic(report: TrafficReport): void {
  const rows = Object.entries(report.variants).map(([variant, v]) => ({
    variant,
    chats: v.chats,
    'true quality': v.trueQuality.toFixed(3),
    'good on all axes': v.goodShare.toFixed(3),
    'thumbs up/down': `${v.thumbsUp}/${v.thumbsDown}`,
    'feedback events': v.feedbackEvents,
  }));
  console.table(rows);
  if (report.errors > 0) console.error(`${report.errors} chats failed; first error: ${report.firstError}`);
}

export function registerSimulateCommand(program: Command): void {
  program
    .command('simulate')
    .description(
      'Simulated users chat with a route through the gateway and rate what they get (personas with preferences, habits, bias, noise and adversaries); prints the true quality per variant beside the ratings',
    )
    .requiredOption('--url <url>', 'the Ratchet server, e.g. http://127.0.0.1:4400')
    .requiredOption('--key <key>', "a project's secret key (or RATCHET_API_KEY)", process.env.RATCHET_API_KEY)
    .option('--route <name>', 'the route to call', 'support-bot')
    .option('--chats <n>', 'how many chats', positiveInteger, 200)
    .option('--users <n>', 'size of the population', positiveInteger, 500)
    .option('--adversarial <share>', 'share of adversaries among the people who rate', share, 0.1)
    .option('--seed <n>', 'seed of the population and the chats', positiveInteger, 1)
    .option('--concurrency <n>', 'chats in flight', positiveInteger, 4)
    .option('--json', 'print the report as JSON')
    .action(
      async (opts: {
        url: string;
        key: string;
        route: string;
        chats: number;
        users: number;
        adversarial: number;
        seed: number;
        concurrency: number;
        json?: boolean;
      }) => {
        const population = createPopulation(
          parseInput(PopulationOptions, {
            size: opts.users,
            seed: opts.seed,
            adversarialShare: opts.adversarial,
          }),
        );
        const bar = opts.json ? undefined : progressBar('chats', opts.chats);
        const report = await simulateTraffic({
          baseUrl: opts.url.replace(/\/$/, ''),
          apiKey: opts.key,
          route: opts.route,
          domain: loadDemoDomain(),
          population,
          chats: opts.chats,
          seed: opts.seed,
          concurrency: opts.concurrency,
          onProgress: () => bar?.increment(),
        });
        bar?.stop();
        if (opts.json) console.log(JSON.stringify(report));
        else printTraffic(report);
        if (report.chats === 0) throw new Error(`no chat succeeded: ${report.firstError}`);
      },
    );
}
