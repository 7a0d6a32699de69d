import { readFileSync } from 'node:fs';
import { type SelfCritiqueOptions, type SelfCritiqueReport, selfCritique } from '@ratchet/loop';
import { type Command, InvalidArgumentError } from 'commander';
import { finiteNumber } from '../arguments.js';
import { type GlobalOptions, projectIdByName, withStore } from '../context.js';

interface CritiqueFlags {
  project: string;
  route?: string;
  modelsUrl: string;
  writerUrl?: string;
  writerModel?: string;
  apiKeyEnv?: string;
  rewardModel: string;
  rewardUrl?: string;
  judgeUrl?: string;
  judgeModel?: string;
  judgeKeyEnv?: string;
  rubric?: string;
  maxReward?: number;
  stars?: number;
  samples?: number;
  minMargin?: number;
  limit?: number;
  maxTokens?: number;
  json?: boolean;
}

/** The options from the flags; bad values are reported by selfCritique's schema, naming the field. */
function optionsFrom(f: CritiqueFlags): SelfCritiqueOptions {
  if (f.judgeUrl && !f.judgeModel) throw new InvalidArgumentError('--judge-url needs --judge-model');
  const rubric = f.rubric?.startsWith('@') ? readFileSync(f.rubric.slice(1), 'utf8').trim() : f.rubric;
  return {
    ...(f.route ? { route: f.route } : {}),
    writer: {
      baseURL: f.writerUrl ?? f.modelsUrl,
      ...(f.writerModel ? { model: f.writerModel } : {}),
      ...(f.apiKeyEnv ? { apiKeyEnv: f.apiKeyEnv } : {}),
    },
    rewardModel: { baseURL: f.rewardUrl ?? f.modelsUrl, model: f.rewardModel },
    ...(f.judgeUrl
      ? {
          judge: {
            baseURL: f.judgeUrl,
            model: f.judgeModel!,
            ...(f.judgeKeyEnv ? { apiKeyEnv: f.judgeKeyEnv } : {}),
          },
        }
      : {}),
    ...(rubric ? { rubric } : {}),
    select: {
      ...(f.maxReward !== undefined ? { maxReward: f.maxReward } : {}),
      ...(f.stars !== undefined ? { maxStars: f.stars === 0 ? null : f.stars } : {}),
    },
    ...(f.samples !== undefined ? { samples: f.samples } : {}),
    ...(f.minMargin !== undefined ? { minMargin: f.minMargin } : {}),
    ...(f.limit !== undefined ? { limit: f.limit } : {}),
    ...(f.maxTokens !== undefined ? { maxTokens: f.maxTokens } : {}),
  };
}

function printReport(r: SelfCritiqueReport): void {
  console.log(
    `${r.rater}: looked at ${r.looked} low-rated answers (${r.skipped} already corrected, skipped); revised ${r.revised}, kept ${r.kept} as corrections`,
  );
  const { noRevision, reward, judge, error } = r.rejected;
  console.log(
    `rejected: ${reward} not scored above the original by the margin, ${judge} not preferred by the judge in both orders, ${noRevision} without a usable revision, ${error} failed`,
  );
  if (r.firstError) console.log(`first error: ${r.firstError}`);
}

export function registerCritiqueCommand(program: Command): void {
  program
    .command('critique')
    .description(
      'Self-critique: a model critiques low-rated answers against a rubric and revises them; revisions the reward model (and the judge, if given, in both orders) prefer become corrections from source judge',
    )
    .requiredOption('--project <name>', 'project name')
    .option('--route <route>', "only this route's answers; its production model writes unless --writer-model")
    .requiredOption(
      '--models-url <url>',
      'OpenAI-compatible base URL (…/v1) serving the writer and reward model',
    )
    .option('--writer-url <url>', 'base URL of the model that critiques and revises (default --models-url)')
    .option(
      '--writer-model <name>',
      "the model that critiques and revises (default the route's production model)",
    )
    .option('--api-key-env <name>', "environment variable with the writer's API key")
    .requiredOption('--reward-model <name>', 'the reward model (scored through /v1/score)')
    .option('--reward-url <url>', "the reward model's base URL (default --models-url)")
    .option('--judge-url <url>', 'LLM judge base URL (the revision must win in both orders)')
    .option('--judge-model <name>', 'LLM judge model')
    .option('--judge-key-env <name>', "environment variable with the judge's API key")
    .option('--rubric <text>', 'the rubric, or @file to read it from a file')
    .option(
      '--max-reward <r>',
      'pick answers whose calibrated reward is below this (default 0)',
      finiteNumber,
    )
    .option(
      '--stars <n>',
      'pick answers rated at most this many stars (default 2; 0: ignore stars)',
      finiteNumber,
    )
    .option('--samples <k>', 'revisions sampled per answer (default 1)', finiteNumber)
    .option(
      '--min-margin <m>',
      "how far above the original's the revision's reward must be (default 0.5)",
      finiteNumber,
    )
    .option('--limit <n>', 'answers to work on (default 50)', finiteNumber)
    .option('--max-tokens <n>', 'tokens per critique and revision (default 256)', finiteNumber)
    .option('--json', 'print the report as JSON')
    .action(async (flags: CritiqueFlags) => {
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const projectId = await projectIdByName(store, flags.project);
        const report = await selfCritique(store, projectId, optionsFrom(flags));
        if (flags.json) console.log(JSON.stringify(report));
        else printReport(report);
        if (report.rejected.error > 0 && report.kept === 0 && report.revised === 0) process.exitCode = 1;
      });
    });
}
