import {
  analyzeProject,
  buildDatasetVersion,
  calibrateProject,
  type DatasetBuildSpec,
  datasetMethods,
  type ExportFormat,
  exportDataset,
  exportFormats,
} from '@ratchet/loop';
import type { Store } from '@ratchet/store';
import { type Command, Option } from 'commander';
import { jsonObject } from '../arguments.js';
import { projectIdByName, withStore } from '../context.js';
import { progressBar } from '../progress.js';

const fmt = (x: number | null | undefined, digits = 2) =>
  x === null || x === undefined || !Number.isFinite(x) ? '' : x.toFixed(digits);

export async function calibrateWithProgress(store: Store, projectId: string): Promise<void> {
  const bar = progressBar('reading ratings', await store.calibration.countCurrentScalarRatings(projectId));
  let seen = 0;
  const summary = await calibrateProject(store, projectId, {
    onProgress: (e) => {
      if (e.stage === 'read') {
        bar.increment(e.ratings - seen);
        seen = e.ratings;
      } else if (e.stage === 'fit') {
        bar.stop();
        console.error('fitting done; saving');
      }
    },
  });
  console.error(
    `calibrated ${summary.ratings} ratings of ${summary.items} interactions by ${summary.raters} raters; flagged ${summary.flagged}` +
      ` (read ${summary.seconds.read.toFixed(1)} s, fit ${summary.seconds.fit.toFixed(1)} s, save ${summary.seconds.save.toFixed(1)} s)`,
  );
}

export async function printRaters(store: Store, projectId: string, flaggedOnly: boolean): Promise<void> {
  const raters = await store.raters.list(projectId, {
    limit: 10_000,
    ...(flaggedOnly ? { flagged: true } : {}),
  });
  console.table(
    raters.map((r) => ({
      rater: r.id,
      source: r.source,
      ratings: r.feedbackCount,
      bias: fmt(r.bias),
      scale: fmt(r.scale),
      reliability: fmt(r.reliability),
      influence: fmt(r.influence),
      flagged: r.flagged ? 'yes' : '',
      reason: r.flagReason ?? '',
    })),
  );
}

export async function buildWithProgress(
  store: Store,
  projectId: string,
  spec: DatasetBuildSpec,
): Promise<void> {
  const version = await buildDatasetVersion(store, projectId, spec, {
    onProgress: (stage, detail) =>
      console.error(
        `${stage}: ${Object.entries(detail)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ')}`,
      ),
  });
  console.log(
    `${version.name}@${version.version} (${version.method}): ${version.rowCount} rows, sha256 ${version.contentHash.slice(0, 16)}…, at ${version.path}`,
  );
}

export async function printDatasets(store: Store, projectId: string): Promise<void> {
  const versions = await store.datasets.list(projectId);
  console.table(
    versions.map((v) => {
      const splits = (v.manifest.splits ?? {}) as { train?: number; test?: number };
      return {
        dataset: `${v.name}@${v.version}`,
        method: v.method,
        rows: v.rowCount,
        train: splits.train ?? '',
        test: splits.test ?? '',
        hash: v.contentHash.slice(0, 12),
        created: new Date(v.createdAt).toISOString(),
      };
    }),
  );
}

export async function exportVersion(
  store: Store,
  projectId: string,
  ref: string,
  format: ExportFormat,
  out: string,
): Promise<void> {
  const version = await store.datasets.get(projectId, ref);
  if (!version) throw new Error(`no dataset "${ref}" in this project (see: ratchet dataset list)`);
  const counts = await exportDataset(version, format, out);
  console.log(
    `exported ${version.name}@${version.version} as ${format} to ${out}: ${Object.entries(counts)
      .map(([s, n]) => `${n} ${s}`)
      .join(', ')}`,
  );
}

export async function printAnalysis(store: Store, projectId: string, json: boolean): Promise<void> {
  const report = await analyzeProject(store, projectId);
  if (json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  console.log(
    `\nComplaint themes (${report.negativeTexts} comments and corrections on answers that went badly):`,
  );
  console.table(
    report.themes.map((t) => ({
      theme: t.label,
      count: t.count,
      share: `${Math.round(t.share * 100)}%`,
      example: t.examples[0]?.text.slice(0, 80) ?? '',
    })),
  );
  console.log('\nWorst-rated prompts (mean calibrated reward):');
  console.table(
    report.worstPrompts.map((p) => ({
      prompt: p.prompt.slice(0, 80),
      answers: p.n,
      reward: fmt(p.meanReward),
    })),
  );
  for (const dim of ['model', 'route', 'tag'] as const) {
    if (report.breakdown[dim].length === 0) continue;
    console.log(`\nCriteria by ${dim} (mean on the criterion's scale, n):`);
    console.table(
      report.breakdown[dim].map((r) => ({
        criterion: r.criterion,
        [dim]: r.group ?? '(none)',
        mean: fmt(r.meanValue),
        n: r.n,
      })),
    );
  }
  const agreement = Object.entries(report.agreement.criteria);
  if (agreement.length) {
    console.log("\nAgreement between raters (Krippendorff's alpha):");
    console.table([
      ...agreement.map(([criterion, a]) => ({
        criterion,
        level: a.level,
        alpha: fmt(a.alpha, 3),
        raters: a.raters,
        units: a.units,
      })),
      ...(report.agreement.overall
        ? [
            {
              criterion: '(all, pooled)',
              level: report.agreement.overall.level,
              alpha: fmt(report.agreement.overall.alpha, 3),
              raters: report.agreement.overall.raters,
              units: report.agreement.overall.units,
            },
          ]
        : []),
    ]);
  }
  if (report.correlations.length) {
    console.log('\nHow criteria correlate:');
    console.table(report.correlations.map((c) => ({ criteria: `${c.a} ~ ${c.b}`, r: fmt(c.r), n: c.n })));
  }
}

/** `ratchet raters` and `ratchet analyze`: raters' calibration and error analysis. */
export function registerRatingCommands(program: Command): void {
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
}

/** `ratchet dataset build|list|show|export`: immutable dataset versions. */
export function registerDatasetCommands(program: Command): void {
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
    .option(
      '--augment <json>',
      'reword under-represented segments\' or prompts\' train rows, e.g. \'{"eda":{"variants":2}}\' (see AugmentSpec)',
      jsonObject,
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
        augment?: Record<string, unknown>;
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
            ...(opts.augment ? { augment: opts.augment as DatasetBuildSpec['augment'] } : {}),
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
}
