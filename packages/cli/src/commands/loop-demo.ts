import { type PopulationPreset, populationPresets } from '@ratchet/core';
import { type Command, Option } from 'commander';
import { nonNegativeInteger } from '../arguments.js';
import { runLoopDemo } from '../demo/loop-demo.js';

/** `ratchet demo`: the loop end to end on this machine with simulated users. */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'The loop end to end on this machine: build the tiny policy, serve it behind the gateway, let simulated users chat and rate, and run rounds of calibrate, build, train, evaluate, canary, experiment, promote or roll back; leaves the dashboard running',
    )
    .option('--port <port>', 'port for the server', nonNegativeInteger, 4400)
    .option('--rounds <n>', 'rounds of the loop', nonNegativeInteger, 4)
    .option(
      '--chats <n>',
      'chats before each round (default: 250, 1000 with --population realistic)',
      nonNegativeInteger,
    )
    .option('--seed <n>', 'seed of the simulated people and their chats', nonNegativeInteger, 7)
    .addOption(
      new Option(
        '--population <name>',
        'who uses the assistant: default (nearly everyone rates) or realistic (about 12% of answers rated, a third of raters adversarial)',
      )
        .choices(Object.keys(populationPresets))
        .default('default'),
    )
    .option('--record <file>', "write the run's record (rounds, true quality, failed calls) as JSON")
    .option(
      '--canary-chats <n>',
      "most chats on a round's canary before moving on (default: 3000, 9000 with --population realistic)",
      nonNegativeInteger,
    )
    .option('--probe <n>', 'prompts per true-quality measurement', nonNegativeInteger, 150)
    .option(
      '--risky-round <n>',
      'the round that tries a riskier recipe, to show the gate (0: none)',
      nonNegativeInteger,
      2,
    )
    .option('--model-dir <dir>', 'where the tiny policy is built (cached)', '.ratchet/models/tiny-support')
    .addOption(
      new Option('--preset <preset>', 'size of the tiny policy')
        .choices(['default', 'test'])
        .default('default'),
    )
    .option(
      '--data-dir <dir>',
      'datasets and runs (RATCHET_DATA_DIR)',
      process.env.RATCHET_DATA_DIR ?? '.ratchet/demo/data',
    )
    .option('--report-dir <dir>', 'where the report and charts go', '.ratchet/demo-report')
    .option('--exit', 'exit after the rounds instead of leaving the server up')
    .option(
      '--no-careless-promotion',
      'skip the last step (a worse model promoted by hand, which the guardrail rolls back)',
    )
    .action(
      async (opts: {
        carelessPromotion: boolean;
        port: number;
        rounds: number;
        chats?: number;
        seed: number;
        population: PopulationPreset;
        record?: string;
        canaryChats?: number;
        probe: number;
        riskyRound: number;
        modelDir: string;
        preset: 'default' | 'test';
        dataDir: string;
        reportDir: string;
        exit?: boolean;
      }) => {
        await runLoopDemo({
          databaseUrl: program.opts().databaseUrl,
          port: opts.port,
          rounds: opts.rounds,
          chatsPerRound: opts.chats ?? (opts.population === 'realistic' ? 1000 : 250),
          seed: opts.seed,
          population: opts.population,
          recordPath: opts.record,
          canaryChats: opts.canaryChats ?? (opts.population === 'realistic' ? 9000 : 3000),
          probePrompts: opts.probe,
          riskyRound: opts.riskyRound,
          carelessPromotion: opts.carelessPromotion,
          modelDir: opts.modelDir,
          preset: opts.preset,
          dataDir: opts.dataDir,
          reportDir: opts.reportDir,
          exit: opts.exit ?? false,
        });
      },
    );
}
