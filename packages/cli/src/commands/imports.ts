// Proposed packages/cli/src/commands/imports.ts: `ratchet import --format ...` and
// `ratchet labelstudio create|push|pull`. Call registerImportCommands(program) from buildProgram()
// in main.ts and drop the old `import` command there (`--format ratchet` keeps its behaviour).
import { FeedbackSource, InteractionFilters, parseInput } from '@ratchet/core';
import {
  createLabelStudioProject,
  importFile,
  importFormats,
  LabelStudioClient,
  pullFromLabelStudio,
  pushToLabelStudio,
} from '@ratchet/loop';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { positiveInteger } from '../arguments.js';
import { projectIdByName, withStore } from '../context.js';
import { progressBar } from '../progress.js';
import { importExchange } from './exchange.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `--column prompt=Question --column relevance="Rel (1-5)"` to { prompt: 'Question', ... }. */
function columnMap(pairs: string[] = []): Record<string, string> {
  return Object.fromEntries(
    pairs.map((pair) => {
      const at = pair.indexOf('=');
      if (at <= 0) throw new InvalidArgumentError(`--column ${pair}: expected FIELD=HEADER`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
}

function labelStudioClient(opts: { url: string; apiKey: string }): LabelStudioClient {
  return new LabelStudioClient({ url: opts.url, apiKey: opts.apiKey });
}

export function registerImportCommands(program: Command): void {
  program
    .command('import')
    .description(
      'Import interactions and feedback: Ratchet JSONL (what export writes), TRL JSONL, CSV or a Label Studio JSON export; validated whole before writing, idempotent',
    )
    .argument('<file>', 'the file to import')
    .requiredOption('--project <name>', 'project name (created if missing)')
    .addOption(
      new Option('--format <format>', 'file format')
        .choices(['ratchet', ...importFormats])
        .default('ratchet'),
    )
    .option('--model <model>', 'TRL, CSV: model of answers whose file does not name one')
    .option('--route <route>', 'TRL: route of the imported interactions')
    .option('--tag <tag>', 'TRL: tag the imported interactions (repeatable)', collect)
    .option('--rater <id>', 'TRL: rater of the preferences and labels (default import:trl)')
    .addOption(
      new Option('--source <source>', 'TRL, CSV: source of the ratings').choices(FeedbackSource.options),
    )
    .option(
      '--column <field=header>',
      'CSV: read a field or criterion from this header (repeatable)',
      collect,
    )
    .option('--delimiter <char>', 'CSV: field delimiter (default ,)')
    .action(
      async (
        file: string,
        opts: {
          project: string;
          format: 'ratchet' | (typeof importFormats)[number];
          model?: string;
          route?: string;
          tag?: string[];
          rater?: string;
          source?: FeedbackSource;
          column?: string[];
          delimiter?: string;
        },
      ) => {
        await withStore(program.opts(), async (store) => {
          const project = await store.projects.getOrCreate(opts.project);
          if (opts.format === 'ratchet') {
            const s = await importExchange(store, project.id, file);
            console.log(
              `imported ${s.lines} interactions (${s.interactionsCreated} new) and ${s.feedbackCreated} new feedback events`,
            );
            return;
          }
          let bar: ReturnType<typeof progressBar> | undefined;
          let last = 0;
          try {
            const s = await importFile(store, project.id, file, {
              format: opts.format,
              ...(opts.model ? { model: opts.model } : {}),
              ...(opts.route ? { route: opts.route } : {}),
              ...(opts.tag ? { tags: opts.tag } : {}),
              ...(opts.rater ? { raterId: opts.rater } : {}),
              ...(opts.source ? { source: opts.source } : {}),
              ...(opts.column ? { columns: columnMap(opts.column) } : {}),
              ...(opts.delimiter ? { delimiter: opts.delimiter } : {}),
              onProgress: (done, total) => {
                bar ??= progressBar('import', total);
                bar.increment(done - last);
                last = done;
              },
            });
            bar?.stop();
            for (const w of s.warnings) console.warn(`warning: ${w}`);
            console.log(
              `imported ${s.interactions} interactions (${s.interactionsCreated} new) and ${s.feedback} feedback events (${s.feedbackCreated} new)`,
            );
          } finally {
            bar?.stop();
          }
        });
      },
    );

  const ls = program
    .command('labelstudio')
    .description(
      'Annotate in Label Studio: create a project for our rating kinds, push interactions, pull annotations',
    );
  const connection = (cmd: Command) =>
    cmd
      .requiredOption('--project <name>', 'Ratchet project name')
      .addOption(new Option('--url <url>', 'Label Studio URL').env('LABEL_STUDIO_URL').makeOptionMandatory())
      .addOption(
        new Option('--api-key <key>', 'Label Studio access token (legacy or personal)')
          .env('LABEL_STUDIO_API_KEY')
          .makeOptionMandatory(),
      );

  connection(ls.command('create'))
    .description('Create a Label Studio project whose labeling config asks for the project rating kinds')
    .requiredOption('--title <title>', 'Label Studio project title (3 characters or more)')
    .option('--pairwise', 'compare two answers to the same prompt instead of rating one')
    .action(
      async (opts: { project: string; url: string; apiKey: string; title: string; pairwise?: boolean }) => {
        await withStore(program.opts(), async (store) => {
          const projectId = await projectIdByName(store, opts.project);
          const created = await createLabelStudioProject(labelStudioClient(opts), store, projectId, {
            title: opts.title,
            mode: opts.pairwise ? 'pairwise' : 'single',
          });
          console.log(
            `created Label Studio project ${created.id} (${opts.url.replace(/\/+$/, '')}/projects/${created.id})`,
          );
        });
      },
    );

  connection(ls.command('push'))
    .description('Push interactions as tasks (skips those already there)')
    .requiredOption('--ls-project <id>', 'Label Studio project id', positiveInteger)
    .option('--ids <ids>', 'comma-separated interaction ids (else the newest matching the filters)')
    .option('--route <route>')
    .option('--model <model>')
    .option('--tag <tag>')
    .option('--unrated', 'only interactions without current feedback')
    .option('--limit <n>', 'at most this many interactions (default 100)', positiveInteger)
    .option('--pairwise', 'pair answers to the same prompt (for a project made with --pairwise)')
    .action(
      async (opts: {
        project: string;
        url: string;
        apiKey: string;
        lsProject: number;
        ids?: string;
        route?: string;
        model?: string;
        tag?: string;
        unrated?: boolean;
        limit?: number;
        pairwise?: boolean;
      }) => {
        await withStore(program.opts(), async (store) => {
          const projectId = await projectIdByName(store, opts.project);
          const filters = parseInput(InteractionFilters, {
            route: opts.route,
            model: opts.model,
            tag: opts.tag,
            hasFeedback: opts.unrated ? 'false' : undefined,
          });
          const s = await pushToLabelStudio(labelStudioClient(opts), store, projectId, opts.lsProject, {
            ...(opts.ids ? { interactionIds: opts.ids.split(',').filter(Boolean) } : { filters }),
            ...(opts.limit ? { limit: opts.limit } : {}),
            mode: opts.pairwise ? 'pairwise' : 'single',
          });
          console.log(
            `selected ${s.selected} interactions: ${s.pushed} new tasks, ${s.alreadyThere} already there`,
          );
        });
      },
    );

  connection(ls.command('pull'))
    .description('Pull finished annotations as feedback (source annotator); pulling again writes nothing new')
    .requiredOption('--ls-project <id>', 'Label Studio project id', positiveInteger)
    .action(async (opts: { project: string; url: string; apiKey: string; lsProject: number }) => {
      await withStore(program.opts(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        const s = await pullFromLabelStudio(labelStudioClient(opts), store, projectId, opts.lsProject);
        for (const w of s.warnings) console.warn(`warning: ${w}`);
        console.log(
          `${s.annotatedTasks} annotated tasks: ${s.feedbackCreated} new feedback events of ${s.feedback}`,
        );
      });
    });
}
