import { Command, Option } from 'commander';
import { registerCritiqueCommand } from './commands/critique.js';
import { registerSampleCommand } from './commands/demo.js';
import { registerEvalCommand } from './commands/eval.js';
import { registerExportCommand } from './commands/exchange.js';
import { registerExperimentCommands } from './commands/experiments.js';
import { registerImportCommands } from './commands/imports.js';
import { registerKeyCommands } from './commands/keys.js';
import { registerLoopCommands } from './commands/loop.js';
import { registerDemoCommand } from './commands/loop-demo.js';
import { registerModelCommands } from './commands/models.js';
import { registerPersonalizeCommand } from './commands/personalize.js';
import { registerPrivacyCommands } from './commands/privacy.js';
import { registerDatasetCommands, registerRatingCommands } from './commands/ratings.js';
import { registerRollupCommands } from './commands/rollups.js';
import { registerServeCommand } from './commands/serve.js';
import { registerSimulateCommand } from './commands/simulate.js';
import { registerTrainingCommands } from './commands/training.js';
import { registerUserCommands } from './commands/users.js';
import { registerWatchCommands } from './commands/watch.js';

/** The program: every command lives in commands/, registered here in the order help lists them. */
export function buildProgram(): Command {
  const program = new Command('ratchet')
    .description(
      'Ratchet: turn user feedback on your LLM app into a better model, and never let quality slip back.',
    )
    .addOption(
      new Option('--database-url <url>', 'sqlite:PATH or postgres://...').env('RATCHET_DATABASE_URL'),
    )
    .showHelpAfterError()
    .configureHelp({ showGlobalOptions: true });

  registerServeCommand(program);
  registerKeyCommands(program);
  registerUserCommands(program);
  registerImportCommands(program);
  registerExportCommand(program);
  registerRatingCommands(program);
  registerDatasetCommands(program);
  registerModelCommands(program);
  registerTrainingCommands(program);
  registerSimulateCommand(program);
  registerLoopCommands(program);
  registerPersonalizeCommand(program);
  registerEvalCommand(program);
  registerCritiqueCommand(program);
  registerExperimentCommands(program);
  registerWatchCommands(program);
  registerPrivacyCommands(program);
  registerRollupCommands(program);
  registerSampleCommand(program);
  registerDemoCommand(program);

  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
