import type { Command } from 'commander';
import { type GlobalOptions, projectIdByName, withStore } from '../context.js';

/** `ratchet rollups rebuild`: recompute the dashboard's rollups from the raw rows. */
export function registerRollupCommands(program: Command): void {
  const rollups = program
    .command('rollups')
    .description("The dashboard's hourly rollups (kept current by the server as data arrives)");
  rollups
    .command('rebuild')
    .description(
      "Forget a project's rollups (every project's without --project) and recompute them from its interactions and feedback: after loading rows outside the API (COPY, a restore)",
    )
    .option('--project <name>', 'project name')
    .action(async (opts: { project?: string }) => {
      await withStore(program.opts<GlobalOptions>(), async (store) => {
        const projects = opts.project
          ? [{ id: await projectIdByName(store, opts.project), name: opts.project }]
          : await store.projects.list();
        for (const p of projects) {
          const started = Date.now();
          await store.rollups.rebuild(p.id);
          console.log(`rebuilt rollups of ${p.name} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
        }
      });
    });
}
