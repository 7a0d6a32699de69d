// `ratchet personalize`: per-segment adapters for a route (issue 7).
import { readFileSync } from 'node:fs';
import { type PersonalizeSpecInput, personalize } from '@ratchet/loop';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { positiveInteger, positiveShare } from '../arguments.js';
import { projectIdByName, withStore } from '../context.js';

interface PersonalizeCliOptions {
  project: string;
  route?: string;
  base?: string;
  spec?: string;
  upstream?: string;
  segments?: string;
  minRatings?: number;
  share?: number;
  trainOnly?: boolean;
  dataDir?: string;
  json?: boolean;
}

/** The spec file (YAML or JSON, see PersonalizeSpec) with the flags on top; the spec checks it all. */
function specFrom(o: PersonalizeCliOptions): PersonalizeSpecInput {
  const file = o.spec
    ? (parseYaml(readFileSync(o.spec, 'utf8')) as Record<string, unknown>)
    : ({} as Record<string, unknown>);
  return {
    ...file,
    ...(o.route ? { route: o.route } : {}),
    ...(o.base ? { baseModel: o.base } : {}),
    ...(o.upstream ? { upstream: o.upstream } : {}),
    ...(o.segments ? { segments: o.segments.split(',').map((s) => s.trim()) } : {}),
    ...(o.minRatings !== undefined ? { minRatings: o.minRatings } : {}),
    ...(o.share !== undefined ? { share: o.share } : {}),
    ...(o.trainOnly ? { updateRoute: false } : {}),
  } as PersonalizeSpecInput;
}

export function registerPersonalizeCommand(program: Command): void {
  program
    .command('personalize')
    .description(
      "Per-segment adapters: for each segment (calls sent with x-ratchet-segment) with enough ratings, train an adapter on that segment's feedback only, register it as <route>-<segment>-rN and route the segment to it; other calls keep the global model",
    )
    .requiredOption('--project <name>', 'project name')
    .option('--route <name>', 'the gateway route to personalize')
    .option('--base <dir>', 'model folder the adapters are trained from')
    .option(
      '--spec <file>',
      'YAML or JSON personalization spec (dataset, training, tagPrefix, ...); flags override it',
    )
    .option('--upstream <name>', 'gateway upstream that serves the adapters (default worker)')
    .option('--segments <list>', 'comma-separated segments (default: every segment with ratings)')
    .option('--min-ratings <n>', 'ratings a segment needs for an adapter (default 60)', positiveInteger)
    .option(
      '--share <x>',
      "share of a segment's calls its adapter gets; the rest stay on the global model",
      positiveShare,
    )
    .option('--train-only', 'train and register only; leave the route as it is')
    .option('--data-dir <dir>', 'datasets and runs (RATCHET_DATA_DIR)')
    .option('--json', 'print JSON')
    .action(async (o: PersonalizeCliOptions) => {
      await withStore(program.opts(), async (store) => {
        const projectId = await projectIdByName(store, o.project);
        const result = await personalize(store, projectId, specFrom(o), {
          dataDir: o.dataDir,
          actor: 'cli',
          log: o.json ? undefined : (line) => console.log(line),
        });
        if (o.json) {
          console.log(JSON.stringify(result));
          return;
        }
        console.table(
          result.segments.map((s) => ({
            segment: s.segment,
            ratings: s.ratings,
            rows: s.rows ?? '',
            model: s.model?.name ?? '',
            skipped: s.skipped ?? '',
          })),
        );
      });
    });
}
