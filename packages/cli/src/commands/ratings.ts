import {
  analyzeProject,
  buildDatasetVersion,
  calibrateProject,
  type DatasetBuildSpec,
  type ExportFormat,
  exportDataset,
} from '@ratchet/loop';
import type { Store } from '@ratchet/store';
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
