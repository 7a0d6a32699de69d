import {
  ApiKeyScopes,
  apiKeyScopes,
  InteractionFilters,
  modelStages,
  type PopulationPreset,
  parseInput,
  populationPresets,
} from '@ratchet/core';
import { datasetMethods, exportFormats } from '@ratchet/loop';
import { gatewayFacts, loadGatewayConfig } from '@ratchet/server';
import type { ServedChange } from '@ratchet/store';
import { Command, InvalidArgumentError, Option } from 'commander';
import { registerCritiqueCommand } from './commands/critique.js';
import { runDemo } from './commands/demo.js';
import { registerEvalCommand } from './commands/eval.js';
import { exportExchange } from './commands/exchange.js';
import { registerExperimentCommands } from './commands/experiments.js';
import { registerImportCommands } from './commands/imports.js';
import { registerLoopCommands } from './commands/loop.js';
import { registerPersonalizeCommand } from './commands/personalize.js';
import {
  buildWithProgress,
  calibrateWithProgress,
  exportVersion,
  printAnalysis,
  printDatasets,
  printRaters,
} from './commands/ratings.js';
import { startServer } from './commands/serve.js';
import { registerSimulateCommand } from './commands/simulate.js';
import { registerTrainingCommands } from './commands/training.js';
import { registerWatchCommands } from './commands/watch.js';
import { projectIdByName, withStore } from './context.js';
import { runLoopDemo } from './demo/loop-demo.js';

/** What a stage change made the gateway serve, for the one line the CLI prints. */
function describeServed(served: ServedChange): string {
  if (!served.variants) return `the gateway file's route serves ${served.route}`;
  return `${served.route} serves ${served.variants
    .map((v) => `${v.model}@${v.upstream}:${v.weight}${v.segment ? ' (segment)' : ''}`)
    .join(', ')}`;
}

function integer(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

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

  program
    .command('serve')
    .description('Run the server: capture API, feedback API, OTLP ingest and the OpenAI-compatible gateway')
    .option('--host <host>', 'address to listen on (RATCHET_HOST, default 127.0.0.1)')
    .option('--port <port>', 'port to listen on (RATCHET_PORT, default 4400)', integer)
    .option('--gateway-config <file>', 'upstreams and routes, YAML or JSON (RATCHET_GATEWAY_CONFIG)')
    .option('--loop-policy <file>', 'run the improvement loop inside the server with these policies')
    .option('--loop-project <name>', 'the project the loop improves (with --loop-policy)')
    .option(
      '--loop-models-url <url>',
      "where the loop reaches the route's models (default: the policy's gateway upstream)",
    )
    .action(
      async (opts: {
        host?: string;
        port?: number;
        gatewayConfig?: string;
        loopPolicy?: string;
        loopProject?: string;
        loopModelsUrl?: string;
      }) => {
        if (opts.loopPolicy && !opts.loopProject) throw new Error('--loop-policy needs --loop-project');
        const { url } = await startServer({
          ...program.opts(),
          host: opts.host,
          port: opts.port,
          gatewayConfigPath: opts.gatewayConfig,
          ...(opts.loopPolicy
            ? {
                loop: {
                  policyPath: opts.loopPolicy,
                  project: opts.loopProject!,
                  modelsUrl: opts.loopModelsUrl,
                },
              }
            : {}),
        });
        console.log(`ratchet listening on ${url}`);
      },
    );

  const keys = program.command('keys').description('Manage project API keys');
  keys
    .command('create')
    .description('Create an API key (and the project, if it does not exist); the key is shown once')
    .requiredOption('--project <name>', 'project name')
    .addOption(
      new Option(
        '--kind <kind>',
        'secret: full access, server side; public: feedback only, safe in a browser',
      )
        .choices(['secret', 'public'])
        .default('secret'),
    )
    .option(
      '--scopes <scopes>',
      `comma-separated scopes instead of a kind (${apiKeyScopes.join(', ')}): ingest logs calls and feedback, public sends feedback with a feedback token only, read reads, admin changes things`,
    )
    .option('--name <label>', 'a label to tell keys apart')
    .option('--json', 'print JSON')
    .action(
      async (opts: {
        project: string;
        kind: 'secret' | 'public';
        scopes?: string;
        name?: string;
        json?: boolean;
      }) => {
        const scopes =
          opts.scopes === undefined ? undefined : parseInput(ApiKeyScopes, opts.scopes.split(','), 'scopes');
        await withStore(program.opts(), async (store) => {
          const existed = await store.projects.getByName(opts.project);
          const project = existed ?? (await store.projects.create(opts.project));
          const key = await store.projects.createKey(project.id, scopes ?? opts.kind, opts.name, 'cli');
          if (opts.json)
            console.log(
              JSON.stringify({
                project: project.name,
                projectId: project.id,
                id: key.id,
                kind: key.kind,
                scopes: key.scopes,
                key: key.key,
              }),
            );
          else {
            if (!existed) console.error(`created project "${project.name}"`);
            console.log(key.key);
          }
        });
      },
    );
  keys
    .command('list')
    .description("List a project's keys (prefixes only; keys are stored hashed)")
    .requiredOption('--project <name>', 'project name')
    .action(async (opts: { project: string }) => {
      await withStore(program.opts(), async (store) => {
        const rows = await store.projects.listKeys(await projectIdByName(store, opts.project));
        console.table(
          rows.map((k) => ({
            id: k.id,
            kind: k.kind,
            scopes: k.scopes.join(','),
            prefix: `${k.displayPrefix}…`,
            name: k.name ?? '',
            created: new Date(k.createdAt).toISOString(),
            revoked: k.revokedAt ? new Date(k.revokedAt).toISOString() : '',
          })),
        );
      });
    });
  keys
    .command('revoke')
    .description('Revoke a key by id')
    .requiredOption('--project <name>', 'project name')
    .argument('<id>', 'key id (from keys list)')
    .action(async (id: string, opts: { project: string }) => {
      await withStore(program.opts(), async (store) => {
        await store.projects.revokeKey(await projectIdByName(store, opts.project), id, 'cli');
        console.log(`revoked ${id}`);
      });
    });

  registerImportCommands(program);

  program
    .command('export')
    .description('Export interactions with their whole feedback history as JSONL')
    .requiredOption('--project <name>', 'project name')
    .option('--out <file>', 'write here instead of stdout')
    .option('--route <route>')
    .option('--model <model>')
    .option('--tag <tag>')
    .option('--from <time>', 'ISO time or epoch ms')
    .option('--to <time>', 'ISO time or epoch ms')
    .action(
      async (opts: {
        project: string;
        out?: string;
        route?: string;
        model?: string;
        tag?: string;
        from?: string;
        to?: string;
      }) => {
        const time = (v?: string) => (v === undefined ? undefined : /^\d+$/.test(v) ? Number(v) : v);
        const filters = parseInput(InteractionFilters, {
          route: opts.route,
          model: opts.model,
          tag: opts.tag,
          from: time(opts.from),
          to: time(opts.to),
        });
        await withStore(program.opts(), async (store) => {
          const n = await exportExchange(
            store,
            await projectIdByName(store, opts.project),
            opts.out,
            filters,
          );
          if (opts.out) console.error(`exported ${n} interactions to ${opts.out}`);
        });
      },
    );

  program
    .command('raters')
    .description("Show raters' calibration: bias, scale, reliability, and who is flagged and why")
    .requiredOption('--project <name>', 'project name')
    .option('--calibrate', 'calibrate the current ratings first')
    .option('--flagged', 'only flagged raters')
    .action(async (opts: { project: string; calibrate?: boolean; flagged?: boolean }) => {
      await withStore(program.opts(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        if (opts.calibrate) await calibrateWithProgress(store, projectId);
        await printRaters(store, projectId, opts.flagged ?? false);
      });
    });

  program
    .command('analyze')
    .description(
      'Error analysis: complaint themes, worst prompts, criteria by model, route and tag, criteria correlations',
    )
    .requiredOption('--project <name>', 'project name')
    .option('--calibrate', 'calibrate the current ratings first (worst prompts use calibrated rewards)')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { project: string; calibrate?: boolean; json?: boolean }) => {
      await withStore(program.opts(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        if (opts.calibrate) await calibrateWithProgress(store, projectId);
        await printAnalysis(store, projectId, opts.json ?? false);
      });
    });

  const dataset = program.command('dataset').description('Build, list, show and export training datasets');
  dataset
    .command('build')
    .description(
      'Build an immutable dataset version from the latest calibration (and corrections, preferences)',
    )
    .requiredOption('--project <name>', 'project name')
    .requiredOption('--name <name>', 'dataset name; each build is its next version')
    .addOption(
      new Option('--method <method>', 'row format and selection')
        .choices([...datasetMethods])
        .makeOptionMandatory(),
    )
    .option(
      '--options <json>',
      'builder options as JSON, e.g. \'{"minMargin":0.5,"split":{"by":"time","testFraction":0.2}}\'',
      '{}',
    )
    .option('--no-curation', 'skip dedup, PII redaction, safety and length filters')
    .option(
      '--segment-tag-prefix <prefix>',
      'balance by the first tag with this prefix (with options.maxSegmentShare)',
    )
    .option('--calibrate', 'calibrate the current ratings first')
    .action(
      async (opts: {
        project: string;
        name: string;
        method: (typeof datasetMethods)[number];
        options: string;
        curation: boolean;
        segmentTagPrefix?: string;
        calibrate?: boolean;
      }) => {
        let options: Record<string, unknown>;
        try {
          options = JSON.parse(opts.options);
        } catch {
          throw new Error('--options must be a JSON object');
        }
        await withStore(program.opts(), async (store) => {
          const projectId = await projectIdByName(store, opts.project);
          if (opts.calibrate) await calibrateWithProgress(store, projectId);
          await buildWithProgress(store, projectId, {
            name: opts.name,
            method: opts.method,
            options,
            ...(opts.curation ? {} : { curation: false as const }),
            ...(opts.segmentTagPrefix ? { segmentTagPrefix: opts.segmentTagPrefix } : {}),
          });
        });
      },
    );
  dataset
    .command('list')
    .description('Dataset versions of a project')
    .requiredOption('--project <name>', 'project name')
    .action(async (opts: { project: string }) => {
      await withStore(program.opts(), async (store) =>
        printDatasets(store, await projectIdByName(store, opts.project)),
      );
    });
  dataset
    .command('show')
    .description("A version's manifest (name for the latest, name@N for one version)")
    .requiredOption('--project <name>', 'project name')
    .argument('<dataset>', 'name, name@version or id')
    .action(async (ref: string, opts: { project: string }) => {
      await withStore(program.opts(), async (store) => {
        const v = await store.datasets.get(await projectIdByName(store, opts.project), ref);
        if (!v) throw new Error(`no dataset "${ref}" in this project (see: ratchet dataset list)`);
        console.log(JSON.stringify({ id: v.id, path: v.path, ...v.manifest }, null, 2));
      });
    });
  dataset
    .command('export')
    .description('Write a version for TRL, OpenAI fine-tuning or the Hugging Face datasets library')
    .requiredOption('--project <name>', 'project name')
    .argument('<dataset>', 'name, name@version or id')
    .addOption(
      new Option('--format <format>', 'trl, openai or hf').choices([...exportFormats]).default('trl'),
    )
    .requiredOption('--out <dir>', 'output folder')
    .action(
      async (ref: string, opts: { project: string; format: (typeof exportFormats)[number]; out: string }) => {
        await withStore(program.opts(), async (store) =>
          exportVersion(store, await projectIdByName(store, opts.project), ref, opts.format, opts.out),
        );
      },
    );

  const models = program
    .command('models')
    .description('The model registry: list, register, promote, roll back');
  models
    .command('list', { isDefault: true })
    .description('Registered models and their stages')
    .requiredOption('--project <name>', 'project name')
    .option('--route <route>')
    .action(async (opts: { project: string; route?: string }) => {
      await withStore(program.opts(), async (store) => {
        const rows = await store.models.list(
          await projectIdByName(store, opts.project),
          opts.route ? { route: opts.route } : {},
        );
        console.table(
          rows.map((m) => ({
            model: m.name,
            route: m.route ?? '',
            stage: m.stage,
            base: m.baseModel,
            adapter: m.adapterPath ?? '',
            updated: new Date(m.updatedAt).toISOString(),
          })),
        );
      });
    });
  models
    .command('register')
    .description('Register a model (base, or base plus adapter) as a candidate')
    .requiredOption('--project <name>', 'project name')
    .requiredOption('--name <name>', 'unique model name')
    .requiredOption('--base <model>', 'base model path or name')
    .option('--adapter <path>', 'adapter folder')
    .option('--route <route>', 'the gateway route it serves')
    .action(
      async (opts: { project: string; name: string; base: string; adapter?: string; route?: string }) => {
        await withStore(program.opts(), async (store) => {
          const m = await store.models.register(
            await projectIdByName(store, opts.project),
            {
              name: opts.name,
              baseModel: opts.base,
              adapterPath: opts.adapter ?? null,
              route: opts.route ?? null,
            },
            'cli',
          );
          console.log(`registered ${m.name} (${m.id}) as ${m.stage}`);
        });
      },
    );
  const gatewayConfigOption = () =>
    new Option(
      '--gateway-config <file>',
      'the gateway file, to know which upstream serves the model (RATCHET_GATEWAY_CONFIG)',
    ).env('RATCHET_GATEWAY_CONFIG');
  program
    .command('promote')
    .description(
      "Move a model to a stage (production replaces the route's production model, and the route serves it at once); asks for a reason",
    )
    .requiredOption('--project <name>', 'project name')
    .argument('<model>', 'model name or id')
    .addOption(new Option('--stage <stage>', 'target stage').choices([...modelStages]).default('production'))
    .requiredOption('--reason <text>', 'why: kept in the audit log')
    .addOption(gatewayConfigOption())
    .action(
      async (
        model: string,
        opts: {
          project: string;
          stage: (typeof modelStages)[number];
          reason: string;
          gatewayConfig?: string;
        },
      ) => {
        const gateway = opts.gatewayConfig ? gatewayFacts(loadGatewayConfig(opts.gatewayConfig)) : undefined;
        await withStore(program.opts(), async (store) => {
          const m = await store.models.setStage(
            await projectIdByName(store, opts.project),
            model,
            opts.stage,
            'cli',
            opts.reason,
            gateway,
          );
          console.log(`${m.name} is now ${m.stage}${m.served ? `; ${describeServed(m.served)}` : ''}`);
          if (m.watchId)
            console.log(
              `watching it (${m.watchId}): the replaced model keeps a holdback of users; see ratchet watch status --project ${opts.project}`,
            );
        });
      },
    );
  program
    .command('rollback')
    .description(
      "Archive a route's production model and restore the one it replaced, which the route serves at once",
    )
    .requiredOption('--project <name>', 'project name')
    .requiredOption('--route <route>', 'route name')
    .requiredOption('--reason <text>', 'why: kept in the audit log')
    .addOption(gatewayConfigOption())
    .action(async (opts: { project: string; route: string; reason: string; gatewayConfig?: string }) => {
      const gateway = opts.gatewayConfig ? gatewayFacts(loadGatewayConfig(opts.gatewayConfig)) : undefined;
      await withStore(program.opts(), async (store) => {
        const { from, to, served } = await store.models.rollback(
          await projectIdByName(store, opts.project),
          opts.route,
          'cli',
          opts.reason,
          gateway,
        );
        console.log(
          `rolled back ${opts.route}: ${from.name} archived, ${to.name} is production again; ${describeServed(served)}`,
        );
      });
    });

  registerTrainingCommands(program);
  registerSimulateCommand(program);
  registerLoopCommands(program);
  registerPersonalizeCommand(program);
  registerEvalCommand(program);
  registerCritiqueCommand(program);
  registerExperimentCommands(program);
  registerWatchCommands(program);

  program
    .command('sample')
    .description(
      'Load a generated sample of rated support chats through a stand-in model (no training): the API, CLI and dashboard in seconds',
    )
    .option('--port <port>', 'port for the server', integer, 4400)
    .option('--calls <n>', 'simulated chats', integer, 300)
    .option('--exit', 'load the sample and exit instead of serving')
    .action(async (opts: { port: number; calls: number; exit?: boolean }) => {
      await runDemo({
        databaseUrl: program.opts().databaseUrl,
        port: opts.port,
        calls: opts.calls,
        exit: opts.exit ?? false,
      });
    });

  program
    .command('demo')
    .description(
      'The loop end to end on this machine: build the tiny policy, serve it behind the gateway, let simulated users chat and rate, and run rounds of calibrate, build, train, evaluate, canary, experiment, promote or roll back; leaves the dashboard running',
    )
    .option('--port <port>', 'port for the server', integer, 4400)
    .option('--rounds <n>', 'rounds of the loop', integer, 4)
    .option(
      '--chats <n>',
      'chats before each round (default: 250, 1000 with --population realistic)',
      integer,
    )
    .option('--seed <n>', 'seed of the simulated people and their chats', integer, 7)
    .addOption(
      new Option(
        '--population <name>',
        'who uses the assistant: default (nearly everyone rates) or realistic (about 12% of answers rated, a third of raters adversarial)',
      )
        .choices(Object.keys(populationPresets))
        .default('default'),
    )
    .option('--record <file>', "write the run's record (rounds, true quality, failed calls) as JSON")
    .option('--probe <n>', 'prompts per true-quality measurement', integer, 150)
    .option(
      '--risky-round <n>',
      'the round that tries a riskier recipe, to show the gate (0: none)',
      integer,
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

  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
