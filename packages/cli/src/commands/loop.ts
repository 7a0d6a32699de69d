import {
  advanceLoop,
  createDeployTarget,
  type DeployTarget,
  type LoopContext,
  type LoopPolicy,
  loadLoopPolicies,
  roundIsDue,
  withRoundLease,
} from '@ratchet/loop';
import type { Store } from '@ratchet/store';
import { type Command, InvalidArgumentError } from 'commander';
import { portNumber } from '../arguments.js';
import { projectIdByName, withStore } from '../context.js';

interface LoopRunOptions {
  project: string;
  policy: string;
  modelsUrl?: string;
  localWorkerPort?: number;
  dataDir?: string;
  force?: boolean;
}

/**
 * One pass over the policies: for each route, continue its running round, or start one when
 * enough feedback arrived (or `force`). Stops at a stage that must wait (an experiment collecting
 * users), so it is safe to run from cron; `ratchet serve --loop-policy` runs the same pass on a timer.
 */
export async function runLoopPass(
  store: Store,
  projectId: string,
  opts: Omit<LoopRunOptions, 'project'>,
  log: (line: string) => void,
): Promise<void> {
  const policies = loadLoopPolicies(opts.policy);
  // One target per distinct deploy setting: routes on the same server share it (and, for the
  // built-in worker, one process, as before).
  const targets = new Map<string, DeployTarget | undefined>();
  const targetFor = (policy: LoopPolicy) => {
    const key = JSON.stringify(policy.deploy);
    if (!targets.has(key)) {
      const target = createDeployTarget(policy.deploy, {
        baseModel: policy.baseModel,
        workerPort: opts.localWorkerPort,
        onLog: () => {},
      });
      if (target) log(`${policy.route}: models served by ${target.describe()}`);
      targets.set(key, target);
    }
    return targets.get(key);
  };
  try {
    for (const policy of policies) {
      const target = targetFor(policy);
      const modelsBaseUrl = opts.modelsUrl ?? target?.baseUrl;
      if (!modelsBaseUrl)
        throw new Error(
          "give --models-url (where the route's models are served) or --local-worker-port, or set the policy's deploy target",
        );
      const ctx: LoopContext = {
        store,
        projectId,
        policy,
        modelsBaseUrl,
        serve: target ? (m) => target.ensure(m) : undefined,
        dataDir: opts.dataDir,
        actor: 'ratchet loop',
        log: (line) => log(`${policy.route}: ${line}`),
      };
      // Servers sharing one database take turns: the route's lease says whose pass advances it.
      const leased = await withRoundLease(
        store,
        projectId,
        policy.route,
        () => advanceRoute(ctx, opts.force ?? false),
        {
          onLost: (err) =>
            log(
              `${policy.route}: lost the round's lease${err ? ` (${String(err)})` : ''}; another server may take it over`,
            ),
        },
      );
      if (!leased) log(`${policy.route}: another server is running this route's round`);
    }
  } finally {
    for (const target of targets.values()) await target?.close();
  }
}

/** Continues the route's round, or starts one when its trigger fired (or `force`). */
async function advanceRoute(ctx: LoopContext, force: boolean): Promise<void> {
  const { policy, log } = ctx;
  const running = await ctx.store.loops.current(ctx.projectId, policy.route);
  if (running) log?.(`round ${running.round} resumes at ${running.stage}`);
  else {
    const { due, newFeedback } = await roundIsDue(ctx);
    if (!due && !force) {
      log?.(`${newFeedback} new feedback events, a round starts at ${policy.trigger.minNewFeedback}`);
      return;
    }
  }
  const round = await advanceLoop(ctx, { start: true });
  if (round) log?.(`round ${round.round} is ${round.status} at ${round.stage}`);
}

interface ReviewOptions extends Partial<Omit<LoopRunOptions, 'project' | 'force'>> {
  project: string;
  route: string;
  reason?: string;
}

/**
 * A person's answer to the route's round awaiting approval. Recorded and audited; with
 * `--policy` the round resumes here at once (promotes, or keeps production), otherwise the next
 * loop pass (`ratchet serve --loop-policy`, `ratchet loop run`) does it.
 */
async function reviewRound(program: Command, opts: ReviewOptions, approved: boolean): Promise<void> {
  await withStore(program.opts(), async (store) => {
    const projectId = await projectIdByName(store, opts.project);
    const round = await store.loops.current(projectId, opts.route);
    if (round?.status !== 'awaiting_approval')
      throw new InvalidArgumentError(
        round
          ? `route "${opts.route}": round ${round.round} is ${round.status} at ${round.stage}, not awaiting approval`
          : `route "${opts.route}" has no round awaiting approval`,
      );
    const actor = `cli:${process.env.USER ?? 'operator'}`;
    await store.loops.review(projectId, round.id, { approved, actor, reason: opts.reason });
    console.log(
      `${opts.route}: round ${round.round} ${approved ? 'approved' : 'rejected'} (${String(round.state.candidate ?? '')})`,
    );
    if (opts.policy) await runLoopPass(store, projectId, { ...opts, policy: opts.policy }, console.log);
    else console.log('the next loop pass (ratchet serve --loop-policy, or ratchet loop run) acts on it');
  });
}

export function registerLoopCommands(program: Command): void {
  const loop = program
    .command('loop')
    .description(
      'The improvement loop: rounds of calibrate, build, train, evaluate, canary, experiment, decide',
    );
  loop
    .command('run')
    .description(
      'Advance every route of a policy file by one pass: continue its round, or start one when enough feedback arrived',
    )
    .requiredOption('--project <name>', 'project name')
    .requiredOption('--policy <file>', 'loop policies, YAML or JSON (see examples/loop.yaml)')
    .option(
      '--models-url <url>',
      "OpenAI-compatible URL (up to /v1) serving the route's models, for evaluation",
    )
    .option(
      '--local-worker-port <port>',
      'serve candidates with ratchet-worker serve on this port (the gateway upstream must point at it)',
      portNumber,
    )
    .option('--data-dir <dir>', 'datasets and runs (RATCHET_DATA_DIR)')
    .option('--force', 'start a round even if the trigger has not fired')
    .action(async (opts: LoopRunOptions) => {
      await withStore(program.opts(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        await runLoopPass(store, projectId, opts, (line) => console.log(line));
      });
    });
  for (const approved of [true, false]) {
    const cmd = loop
      .command(approved ? 'approve' : 'reject')
      .description(
        approved
          ? "Approve the route's round awaiting approval: its candidate is promoted"
          : "Reject the route's round awaiting approval: production stays, the candidate is archived",
      )
      .requiredOption('--project <name>', 'project name')
      .requiredOption('--route <name>', 'the route whose round awaits approval');
    if (approved) cmd.option('--reason <text>', 'why (kept in the audit log)');
    else cmd.requiredOption('--reason <text>', 'why (kept in the audit log)');
    cmd
      .option(
        '--policy <file>',
        'resume the round now with these loop policies (else the next loop pass does)',
      )
      .option('--models-url <url>', "with --policy: where the route's models are served (up to /v1)")
      .option(
        '--local-worker-port <port>',
        'with --policy: serve models with ratchet-worker on this port',
        portNumber,
      )
      .option('--data-dir <dir>', 'datasets and runs (RATCHET_DATA_DIR)')
      .action((opts: ReviewOptions) => reviewRound(program, opts, approved));
  }
  loop
    .command('status')
    .description("The rounds of a project's routes, newest first")
    .requiredOption('--project <name>', 'project name')
    .option('--route <name>', 'only this route')
    .option('--json', 'print JSON')
    .action(async (opts: { project: string; route?: string; json?: boolean }) => {
      await withStore(program.opts(), async (store) => {
        const projectId = await projectIdByName(store, opts.project);
        const rounds = await store.loops.list(projectId, opts.route ? { route: opts.route } : {});
        if (opts.json) {
          console.log(JSON.stringify(rounds));
          return;
        }
        if (rounds.length === 0) console.log('no rounds yet');
        else
          console.table(
            rounds.map((r) => ({
              route: r.route,
              round: r.round,
              stage: r.stage,
              status:
                r.status === 'awaiting_approval'
                  ? 'awaiting approval (ratchet loop approve|reject)'
                  : r.status,
              candidate: String(r.state.candidate ?? ''),
              gate: String(
                r.state.gateDecision ??
                  (r.state.gatePassed === undefined ? '' : r.state.gatePassed ? 'pass' : 'fail'),
              ),
              experiment: String(r.state.decision ?? ''),
              error: r.error ?? '',
              started: new Date(r.createdAt).toISOString(),
            })),
          );
      });
    });
}
