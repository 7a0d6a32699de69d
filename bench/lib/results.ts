import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** bench/ */
export const benchDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The repository root. */
export const repoDir = resolve(benchDir, '..');
/** Scratch space for databases, configs, competitor installs and profiles (gitignored). */
export const workDir = join(benchDir, '.work');

/** One result, in the format of ../shared/BENCH.md. */
export interface BenchResultFile {
  bench: string;
  date: string;
  commit: string;
  machine: { cpus: number; memory_gb: number; gpu: string | null };
  metrics: Record<string, number>;
  notes: string;
}

export function machine(): BenchResultFile['machine'] {
  return { cpus: cpus().length, memory_gb: Math.round(totalmem() / 2 ** 30), gpu: null };
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, {
      cwd: repoDir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return '';
  }
}

export function commit(): string {
  return git(['rev-parse', '--short', 'HEAD']) || 'unknown';
}

/** Whether the code under test (packages/) differs from the commit, for the notes. */
export function packagesDirty(): boolean {
  return git(['status', '--porcelain', '--', 'packages']) !== '';
}

/** A metric value rounded for reading; metrics stay plain numbers. */
export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Names ../shared/BENCH.md (or an issue's "Must show") prescribes though they carry no unit suffix. */
const sharedMetricNames = new Set([
  'aa_fpr_sequential',
  'aa_fpr_naive_ttest',
  'aa_fpr_user_level',
  'aa_fpr_event_level_clustered',
  'gate_false_reject_rate_better10',
  'gate_false_accept_rate_worse10',
  'srm_detected_52_48_at_20k',
  'adversary_recall',
  'calibrated_label_accuracy',
  'raw_label_accuracy',
  'page_load_ms_max_100k',
  'al_ratings_ratio',
  'train_speedup_vs_trl',
  'train_speedup_vs_trl_20m_min', // issue 19's names
  'train_speedup_vs_trl_20m_nockpt_min',
  'serve_concurrency_speedup', // issue 13's name
  'guardrail_users_to_rollback_p50', // issue 13's name (users)
  'ai_label_precision', // issue 19's names (shares)
  'ai_label_share',
  'recalibrate_speedup_1pct', // issue 17's names (a reward difference is in reward units)
  'recalibrate_max_reward_diff',
  'recalibrate_adversarial_max_reward_diff',
  'recalibrate_stored_max_reward_diff',
  'recalibrate_3m_max_reward_diff',
  'recalibrate_converged_max_reward_diff',
  'recalibrate_converged_both_max_reward_diff',
]);

export function assertWellFormed(result: BenchResultFile): void {
  const problems: string[] = [];
  if (!result.bench) problems.push('bench is empty');
  if (Number.isNaN(Date.parse(result.date))) problems.push('date is not ISO-8601');
  if (!/^[0-9a-f]{4,40}$|^unknown$/.test(result.commit)) problems.push(`commit "${result.commit}"`);
  for (const [name, value] of Object.entries(result.metrics)) {
    if (typeof value !== 'number' || !Number.isFinite(value)) problems.push(`metric ${name} = ${value}`);
    if (
      !/_(ms|s|per_s|per_s_cpu_[a-z]+|ratio|rate|corr|minutes|count|bytes|mb|mib)$/.test(name) &&
      !sharedMetricNames.has(name) &&
      // Issue 19's demo metrics: true quality is a share of answers; failed calls a count.
      !/^(demo|realistic)_(seed\d+_)?(true_quality_(start|end|end_min|gain)|failed_calls)$/.test(name) &&
      // BENCH.md's quality_gain_<method>: a difference of two shares, in share units.
      !/^quality_gain_[a-z_]+$/.test(name) &&
      // Issue 17's dashboard_api_ms_max_10m: milliseconds, at a history size.
      !/^dashboard_api_ms_max_\d+[km]?$/.test(name)
    )
      problems.push(`metric ${name} does not end in a unit`);
  }
  if (problems.length) throw new Error(`malformed result for ${result.bench}: ${problems.join('; ')}`);
}

export function resultPath(bench: string, dir = join(benchDir, 'results')): string {
  return join(dir, `${bench}.json`);
}

export function writeResult(result: BenchResultFile, dir = join(benchDir, 'results')): string {
  assertWellFormed(result);
  mkdirSync(dir, { recursive: true });
  const path = resultPath(result.bench, dir);
  writeFileSync(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}

export function readResults(dir = join(benchDir, 'results')): BenchResultFile[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as BenchResultFile);
}

const START = '<!-- results:start (written by bench/run.ts; do not edit by hand) -->';
const END = '<!-- results:end -->';

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

/**
 * The results table: one line per bench from bench/results/*.json, with the metrics named in
 * `keyMetrics` (all of them for a bench not listed).
 */
export function resultsTable(results: BenchResultFile[], keyMetrics: Record<string, string[]>): string {
  const lines = ['| bench | date | commit | key metrics | notes |', '| --- | --- | --- | --- | --- |'];
  for (const r of results) {
    const names = keyMetrics[r.bench] ?? Object.keys(r.metrics);
    const metrics = names
      .filter((n) => n in r.metrics)
      .map((n) => `${n}=${r.metrics[n]}`)
      .join(', ');
    lines.push(
      `| ${cell(r.bench)} | ${r.date.slice(0, 10)} | ${cell(r.commit)} | ${cell(metrics)} | ${cell(r.notes)} |`,
    );
  }
  return lines.join('\n');
}

/** Rewrites the table between the markers in bench/README.md (appends the markers if missing). */
export function updateReadme(
  keyMetrics: Record<string, string[]>,
  readme = join(benchDir, 'README.md'),
  resultsDir = join(benchDir, 'results'),
): void {
  const table = resultsTable(readResults(resultsDir), keyMetrics);
  const text = existsSync(readme) ? readFileSync(readme, 'utf8') : '# Benchmarks\n';
  const block = `${START}\n${table}\n${END}`;
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  const next =
    start >= 0 && end > start
      ? text.slice(0, start) + block + text.slice(end + END.length)
      : `${text.trimEnd()}\n\n## Latest results\n\n${block}\n`;
  writeFileSync(readme, next);
}
