import { ApiKeyScopes, apiKeyScopes, parseInput } from '@ratchet/core';
import { type Command, Option } from 'commander';
import { projectIdByName, withStore } from '../context.js';

/** `ratchet keys create|list|revoke`: a project's API keys. */
export function registerKeyCommands(program: Command): void {
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
}
