import { readFileSync } from 'node:fs';
import {
  comparisonRows,
  type EvaluationItemResult,
  type EvaluationSummary,
  type GateResult,
  worstRegressions,
} from '@ratchet/core';
import { type EvaluationProgress, type EvaluationSpecInput, runEvaluation } from '@ratchet/loop';
import type { Evaluation } from '@ratchet/store';
import type { Command } from 'commander';
import { positiveInteger } from '../arguments.js';
import { type GlobalOptions, projectIdByName, withStore } from '../context.js';
import { type Progress, progressBar } from '../progress.js';

const fmt = (x: number | null | undefined, digits = 3) =>
  x === null || x === undefined || !Number.isFinite(x) ? '' : Number(x.toFixed(digits)).toString();

/** The side-by-side table, the gate verdict, the largest disparities and the worst regressions. */
export function printEvaluation(
  evaluation: Evaluation,
  summary: EvaluationSummary,
  gate: GateResult,
  items: readonly EvaluationItemResult[],
): void {
  console.log(
    `evaluation ${evaluation.id}${evaluation.name ? ` (${evaluation.name})` : ''}: ${summary.items} items`,
  );
  console.table(
    comparisonRows(summary).map((r) => ({
      metric: r.metric,
      candidate: fmt(r.candidate),
      production: fmt(r.baseline),
      delta: fmt(r.delta),
      better:
        r.delta === null || r.delta === 0
          ? ''
          : r.delta > 0 === r.higherIsBetter
            ? 'candidate'
            : 'production',
    })),
  );
  if (summary.judgeAgreement)
    console.log(
      `judge vs human thumbs: Cohen's kappa ${fmt(summary.judgeAgreement.kappa)}, agreement ${fmt(summary.judgeAgreement.agreement)} on ${summary.judgeAgreement.n} items`,
    );
  if (summary.rewardModel)
    console.log(
      `reward model on held-out thumbs: precision ${fmt(summary.rewardModel.precision)}, recall ${fmt(summary.rewardModel.recall)}, F1 ${fmt(summary.rewardModel.f1)} (n ${summary.rewardModel.n})`,
    );
  const widest = [...summary.disparities].sort((a, b) => b.gap - a.gap).slice(0, 3);
  for (const d of widest)
    console.log(
      `largest disparity in ${d.metric} (${d.model}): ${d.highest.segment} ${fmt(d.highest.value)} vs ${d.lowest.segment} ${fmt(d.lowest.value)}`,
    );
  for (const note of summary.notes) console.log(`note: ${note}`);
  const regressions = worstRegressions(items, 5);
  if (regressions.length) {
    console.log('worst regressions:');
    for (const r of regressions)
      console.log(`  #${r.index} ${r.suite} ${r.itemId} [${r.segments.join(', ')}]: ${r.reason}`);
  }
  console.log(
    gate.decision === 'pass'
      ? 'GATE PASSED'
      : gate.decision === 'undecided'
        ? `GATE UNDECIDED (no gate failed; a canary decides):\n${gate.undecided.map((r) => `  - ${r}`).join('\n')}`
        : `GATE FAILED:\n${gate.reasons.map((r) => `  - ${r}`).join('\n')}`,
  );
}

interface EvalOptions {
  project: string;
  spec?: string;
  candidateUrl?: string;
  candidateModel?: string;
  candidateRef?: string;
  baselineUrl?: string;
  baselineModel?: string;
  baselineRef?: string;
  apiKeyEnv?: string;
  dataset?: string;
  judgeUrl?: string;
  judgeModel?: string;
  judgeKeyEnv?: string;
  rewardUrl?: string;
  rewardModel?: string;
  suites?: string;
  maxItems?: number;
  name?: string;
  json?: boolean;
  show?: string;
}

/** The spec from --spec (a JSON file) with the flags laid over it. */
function specFrom(opts: EvalOptions): EvaluationSpecInput {
  const base = (opts.spec ? JSON.parse(readFileSync(opts.spec, 'utf8')) : {}) as Record<string, unknown>;
  const endpoint = (
    url: string | undefined,
    model: string | undefined,
    keyEnv: string | undefined,
    prior: unknown,
  ) => {
    const p = (prior ?? {}) as Record<string, unknown>;
    return {
      ...p,
      ...(url ? { baseURL: url } : {}),
      ...(model ? { model } : {}),
      ...(keyEnv ? { apiKeyEnv: keyEnv } : {}),
    };
  };
  const side = (key: 'candidate' | 'baseline', url?: string, model?: string, ref?: string) => {
    const prior = (base[key] ?? {}) as Record<string, unknown>;
    return {
      ...prior,
      endpoint: endpoint(url, model, opts.apiKeyEnv, prior.endpoint),
      ...(ref ? { model: ref } : {}),
    };
  };
  const spec: Record<string, unknown> = {
    ...base,
    candidate: side('candidate', opts.candidateUrl, opts.candidateModel, opts.candidateRef),
    baseline: side('baseline', opts.baselineUrl, opts.baselineModel, opts.baselineRef),
  };
  if (opts.name) spec.name = opts.name;
  if (opts.dataset) spec.dataset = opts.dataset;
  if (opts.suites) spec.suites = opts.suites.split(',').map((s) => s.trim());
  if (opts.maxItems) spec.maxItems = opts.maxItems;
  if (opts.judgeUrl || base.judge)
    spec.judge = {
      ...((base.judge ?? {}) as object),
      endpoint: endpoint(
        opts.judgeUrl,
        opts.judgeModel,
        opts.judgeKeyEnv,
        (base.judge as { endpoint?: unknown })?.endpoint,
      ),
    };
  if (opts.rewardUrl || base.rewardModel)
    spec.rewardModel = {
      ...((base.rewardModel ?? {}) as object),
      endpoint: endpoint(
        opts.rewardUrl,
        opts.rewardModel,
        undefined,
        (base.rewardModel as { endpoint?: unknown })?.endpoint,
      ),
    };
  return spec as unknown as EvaluationSpecInput;
}

/** One progress bar per stage, replaced when the stage changes. */
function stageBars(): (p: EvaluationProgress) => void {
  let stage: string | undefined;
  let bar: Progress | undefined;
  let done = 0;
  return (p) => {
    if (p.stage !== stage) {
      bar?.stop();
      stage = p.stage;
      done = 0;
      bar = p.total > 0 ? progressBar(p.stage, p.total) : undefined;
    }
    if (p.done > done) {
      bar?.increment(p.done - done);
      done = p.done;
    }
    if (p.done === p.total) bar?.stop();
  };
}

export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description(
      'Evaluate a candidate against the production model (both OpenAI-compatible endpoints): held-out split, red-team and adversarial suites, LLM judge both ways, reward model, reference metrics, segments, gates; prints the comparison table',
    )
    .requiredOption('--project <name>', 'project name')
    .option('--spec <file>', 'the evaluation spec as JSON (flags override it)')
    .option('--candidate-url <url>', "candidate's OpenAI-compatible base URL (…/v1)")
    .option('--candidate-model <name>', 'model name sent to the candidate endpoint')
    .option('--candidate-ref <model>', 'the registry model the candidate is (records the gate verdict on it)')
    .option('--baseline-url <url>', "production model's base URL")
    .option('--baseline-model <name>', 'model name sent to the production endpoint')
    .option('--baseline-ref <model>', 'the registry model in production')
    .option('--api-key-env <name>', 'environment variable with the API key for both endpoints')
    .option('--dataset <ref>', 'dataset version (name, name@N or id) whose held-out split to use')
    .option('--judge-url <url>', 'LLM judge base URL')
    .option('--judge-model <name>', 'LLM judge model')
    .option('--judge-key-env <name>', "environment variable with the judge's API key")
    .option('--reward-url <url>', "reward model base URL (the worker's serve, /v1/score)")
    .option('--reward-model <name>', 'reward model name')
    .option('--suites <list>', 'comma-separated: heldout, redteam, adversarial')
    .option('--max-items <n>', 'held-out items at most', positiveInteger)
    .option('--name <name>', 'a name for this evaluation')
    .option('--show <id>', 'print a stored evaluation instead of running one')
    .option('--json', 'print the evaluation as JSON')
    .action(async (opts: EvalOptions) => {
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        if (opts.show) {
          const e = await store.evaluations.get(projectId, opts.show);
          if (!e) throw new Error(`evaluation "${opts.show}" not found`);
          const items = (await store.evaluations.items(projectId, e.id)).map(
            (i) => i.result as EvaluationItemResult,
          );
          if (opts.json) console.log(JSON.stringify({ ...e, items }));
          else if (e.status !== 'succeeded')
            console.log(`evaluation ${e.id}: ${e.status}${e.error ? `: ${e.error}` : ''}`);
          else
            printEvaluation(
              e,
              e.summary as unknown as EvaluationSummary,
              e.gate as unknown as GateResult,
              items,
            );
          return;
        }
        const outcome = await runEvaluation(store, projectId, specFrom(opts), {
          actor: 'cli',
          onProgress: stageBars(),
        });
        if (opts.json) console.log(JSON.stringify(outcome.evaluation));
        else printEvaluation(outcome.evaluation, outcome.summary, outcome.gate, outcome.items);
        if (!outcome.gate.passed) process.exitCode = 3;
      });
    });
}
