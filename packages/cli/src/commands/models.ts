import { modelStages } from '@ratchet/core';
import { gatewayFacts, loadGatewayConfig } from '@ratchet/server';
import type { ServedChange } from '@ratchet/store';
import { type Command, Option } from 'commander';
import { projectIdByName, withStore } from '../context.js';

/** What a stage change made the gateway serve, for the one line the CLI prints. */
function describeServed(served: ServedChange): string {
  if (!served.variants) return `the gateway file's route serves ${served.route}`;
  return `${served.route} serves ${served.variants
    .map((v) => `${v.model}@${v.upstream}:${v.weight}${v.segment ? ' (segment)' : ''}`)
    .join(', ')}`;
}

/** `ratchet models list|register`, `ratchet promote` and `ratchet rollback`: the model registry. */
export function registerModelCommands(program: Command): void {
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
}
