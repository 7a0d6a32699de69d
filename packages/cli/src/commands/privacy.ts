import { ClientId, parseInput, RetentionPolicy } from '@ratchet/core';
import { applyRetention, type DeletionReport, deleteData } from '@ratchet/loop';
import type { Command } from 'commander';
import { z } from 'zod';
import { type GlobalOptions, projectIdByName, withStore } from '../context.js';

const EndUserId = z.string().min(1).max(200);

/** Counts and marks, never content (the same as the audit entry). */
function printDeletion(report: DeletionReport, json: boolean | undefined): void {
  if (json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  const counts = Object.entries(report.counts)
    .filter(([, n]) => n > 0)
    .map(([what, n]) => `${what} ${n}`);
  console.log(`deleted: ${counts.join(', ') || 'nothing'} (audit ${report.auditId})`);
  for (const d of report.datasets)
    console.log(`  dataset ${d.name}@${d.version} held ${d.interactions} of them (marked)`);
  for (const s of report.scrubbed)
    console.log(
      `  dataset ${s.name}@${s.version}: ${s.rowsRemoved} rows out of its files; runs rewritten: ${s.runsRewritten.length}`,
    );
  for (const m of report.models) console.log(`  model ${m.name} was trained on data now deleted (marked)`);
}

/** `ratchet delete end-user|interaction` and `ratchet retention show|set|clear|run`. */
export function registerPrivacyCommands(program: Command): void {
  const del = program
    .command('delete')
    .description("Delete people's data everywhere Ratchet keeps it (audited with counts, never content)");
  del
    .command('end-user')
    .description(
      "An end user's interactions, feedback about them and by them, rater row, usage and dead letters",
    )
    .requiredOption('--project <name>', 'project name')
    .argument('<userId>', 'the end user id the calls were logged with')
    .option('--json', 'print JSON')
    .action(async (userId: string, opts: { project: string; json?: boolean }) => {
      const id = parseInput(EndUserId, userId, 'userId');
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        printDeletion(await deleteData(store, projectId, { kind: 'end_user', userId: id }, 'cli'), opts.json);
      });
    });
  del
    .command('interaction')
    .description('Interactions by id, with their feedback')
    .requiredOption('--project <name>', 'project name')
    .argument('<ids...>', 'interaction ids')
    .option('--json', 'print JSON')
    .action(async (ids: string[], opts: { project: string; json?: boolean }) => {
      const parsed = parseInput(z.array(ClientId).min(1), ids, 'ids');
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        printDeletion(
          await deleteData(store, projectId, { kind: 'interactions', ids: parsed }, 'cli'),
          opts.json,
        );
      });
    });

  const retention = program
    .command('retention')
    .description(
      "A project's retention policy: interactions older than N days are deleted on ratchet serve's schedule",
    );
  retention
    .command('show')
    .description("Print the project's retention policy")
    .requiredOption('--project <name>', 'project name')
    .action(async (opts: { project: string }) => {
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const policy = await store.projects.retention(await projectIdByName(store, opts.project));
        console.log(policy ? JSON.stringify(policy) : 'no retention policy: interactions are kept');
      });
    });
  retention
    .command('set')
    .description('Set the retention policy')
    .requiredOption('--project <name>', 'project name')
    .requiredOption('--days <n>', 'delete interactions older than this many days')
    .option('--no-keep-production-data', 'also delete what a production model was trained on')
    .action(async (opts: { project: string; days: string; keepProductionData: boolean }) => {
      const policy = parseInput(RetentionPolicy, {
        days: Number(opts.days),
        keepProductionTrainingData: opts.keepProductionData,
      });
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        await store.projects.setRetention(await projectIdByName(store, opts.project), policy, 'cli');
        console.log(`retention: ${JSON.stringify(policy)}`);
      });
    });
  retention
    .command('clear')
    .description('Remove the retention policy: interactions are kept')
    .requiredOption('--project <name>', 'project name')
    .action(async (opts: { project: string }) => {
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        await store.projects.setRetention(await projectIdByName(store, opts.project), null, 'cli');
        console.log('retention policy removed: interactions are kept');
      });
    });
  retention
    .command('run')
    .description('Apply the policy now (ratchet serve also applies it on its schedule)')
    .requiredOption('--project <name>', 'project name')
    .option('--json', 'print JSON')
    .action(async (opts: { project: string; json?: boolean }) => {
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const report = await applyRetention(store, await projectIdByName(store, opts.project), {
          actor: 'cli',
        });
        if (!report)
          throw new Error(`project "${opts.project}" has no retention policy (ratchet retention set)`);
        if (opts.json) console.log(JSON.stringify(report, null, 2));
        else
          console.log(
            `retention (${report.policy.days} days): deleted ${report.counts.interactions} interactions, ${report.counts.feedback} feedback events in ${report.batches} batch(es)`,
          );
      });
    });
}
