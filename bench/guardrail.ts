// The guardrail bench (issue 13, "Must show"): simulated deployments after a promotion, watched
// by the product's own code. Store path: a real SQLite store in a temp folder, the real
// promotion (store.models.setStage opens the watch), users' calls and their own thumbs inserted
// per user in batches, and lookAtPromotionWatch (what `ratchet serve` runs on its timer) after
// every `lookEvery` users. Pure path: the same simulated users summed per user in memory and
// fed to the same decision function (core's lookAtWatch) that the store path's look calls; it
// runs the 1,000 A/A deployments, which through the store would take hours, and the store path
// checks on shared seeds that both paths decide the same at the same look.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  defaultWatchPolicy,
  emptyUserMetricSums,
  FeedbackInput,
  InteractionInput,
  lookAtWatch,
  type ParsedFeedback,
  type ParsedInteraction,
  parseInput,
  SeededRandom,
  type WatchArmEvidence,
  type WatchState,
} from '../packages/core/src/index.js';
import { lookAtPromotionWatch } from '../packages/loop/src/index.js';
import { Store } from '../packages/store/src/index.js';
import type { Bench, BenchContext, BenchOutcome } from './lib/bench.js';
import { round } from './lib/results.js';

interface Config {
  /** Deployments with the planted drop through the real store. */
  dropDeploymentsStore: number;
  /** A/A deployments through the real store (the agreement check). */
  aaDeploymentsStore: number;
  /** A/A deployments through the pure decision function. */
  aaDeploymentsPure: number;
  /** Drop deployments through the pure path too (the same seeds as the store's: agreement). */
  baseRate: number;
  drop: number;
  concentration: number;
  maxRatingsPerUser: number;
  lookEvery: number;
  /** A drop deployment not rolled back by then counts as never rolled back. */
  maxUsersDrop: number;
  /** Users of a store A/A deployment (the pure ones run the watch's whole length). */
  maxUsersAaStore: number;
}

const FULL: Config = {
  dropDeploymentsStore: 200,
  aaDeploymentsStore: 10,
  aaDeploymentsPure: 1000,
  baseRate: 0.7,
  drop: 0.1,
  concentration: 4,
  maxRatingsPerUser: 20,
  lookEvery: 100,
  maxUsersDrop: 6000,
  maxUsersAaStore: 2000,
};

const TINY: Config = {
  ...FULL,
  dropDeploymentsStore: 4,
  aaDeploymentsStore: 2,
  aaDeploymentsPure: 20,
  maxUsersAaStore: 500,
};

/** One simulated user: which arm, and their ratings (1 up, 0 down) from their own propensity. */
interface SimUser {
  holdback: boolean;
  ratings: number[];
}

/**
 * The users of one deployment, drawn from its seed: each is held back with the policy's share
 * (the gateway's sticky hash does this per user; a seeded draw has the same distribution), then
 * rates 1..maxRatingsPerUser answers with a propensity Beta(rate·c, (1-rate)·c) of their own.
 */
function* users(seed: number, c: Config, drop: number): Generator<SimUser> {
  const rng = new SeededRandom(seed);
  const share = defaultWatchPolicy.holdbackShare;
  for (;;) {
    const holdback = rng.uniform() < share;
    const rate = holdback ? c.baseRate : c.baseRate - drop;
    const p = rng.beta(rate * c.concentration, (1 - rate) * c.concentration);
    const k = 1 + rng.int(c.maxRatingsPerUser);
    const ratings = Array.from({ length: k }, () => (rng.uniform() < p ? 1 : 0));
    yield { holdback, ratings };
  }
}

function emptyArm(): WatchArmEvidence {
  const e = () => ({ ...emptyUserMetricSums });
  return {
    users: 0,
    interactions: 0,
    metrics: { thumbs_up_rate: e(), reward: e(), error_rate: e(), empty_rate: e(), slow_rate: e() },
    latencyP50Ms: null,
    latencyP95Ms: null,
  };
}

/**
 * What the store sums per user, in memory: the users' thumbs, and (every call answered, none
 * empty, none slower than the holdback's p95 with one latency for all) zeros for the operations.
 */
function addUser(arm: WatchArmEvidence, u: SimUser): void {
  const mean = u.ratings.reduce((a, b) => a + b, 0) / u.ratings.length;
  arm.users++;
  arm.interactions += u.ratings.length;
  const t = arm.metrics.thumbs_up_rate;
  t.users++;
  t.events += u.ratings.length;
  t.sum += mean;
  t.sumOfSquares += mean * mean;
  for (const m of ['error_rate', 'empty_rate', 'slow_rate'] as const) {
    arm.metrics[m].users++;
    arm.metrics[m].events += u.ratings.length;
  }
}

interface DeploymentResult {
  /** Users after the promotion at the look that rolled back, or null. */
  rolledBackAt: number | null;
  /** The decision at each look, in order. */
  decisions: string[];
}

function purePath(seed: number, c: Config, drop: number, maxUsers: number): DeploymentResult {
  const arms = { newArm: emptyArm(), holdback: emptyArm() };
  let previous: WatchState | undefined;
  const decisions: string[] = [];
  let n = 0;
  for (const u of users(seed, c, drop)) {
    addUser(u.holdback ? arms.holdback : arms.newArm, u);
    n++;
    if (n % c.lookEvery !== 0) continue;
    const r = lookAtWatch({ policy: defaultWatchPolicy, openedAt: 0, now: 0, ...arms, previous });
    previous = r.state;
    decisions.push(r.decision);
    if (r.decision === 'rollback') return { rolledBackAt: n, decisions };
    if (n >= maxUsers) break;
  }
  return { rolledBackAt: null, decisions };
}

const gatewayFacts = { upstreams: ['local'], routeUpstreams: {}, defaultUpstream: 'local' };

/** One deployment on the real store: its own project, a real promotion, rows per user, real looks. */
async function storePath(
  store: Store,
  d: string,
  seed: number,
  c: Config,
  drop: number,
  maxUsers: number,
): Promise<DeploymentResult> {
  const projectId = (await store.projects.create(`deploy-${d}`)).id;
  for (const name of ['previous', 'promoted'])
    await store.models.register(projectId, { name, route: 'r', baseModel: 'tiny' }, 'bench');
  await store.models.setStage(projectId, 'previous', 'production', 'bench', 'baseline', gatewayFacts);
  const promoted = await store.models.setStage(
    projectId,
    'promoted',
    'production',
    'bench',
    'ship',
    gatewayFacts,
  );
  let watch = (await store.watches.get(projectId, promoted.watchId!))!;
  const decisions: string[] = [];
  let n = 0;
  let calls: ParsedInteraction[] = [];
  let thumbs: ParsedFeedback[] = [];
  for (const u of users(seed, c, drop)) {
    const user = `u${n}`;
    u.ratings.forEach((up, k) => {
      const id = `${user}-${k}`;
      calls.push(
        parseInput(InteractionInput, {
          id,
          route: 'r',
          variant: u.holdback ? 'holdback' : 'production',
          model: u.holdback ? 'previous' : 'promoted',
          userId: user,
          messages: [{ role: 'user', content: 'q' }],
          output: 'a',
          latencyMs: 100,
          usage: { inputTokens: 1, outputTokens: 1 },
          createdAt: watch.openedAt + n,
        }),
      );
      thumbs.push(
        parseInput(FeedbackInput, { kind: 'thumbs', interactionId: id, value: up ? 'up' : 'down' }),
      );
    });
    n++;
    if (n % c.lookEvery !== 0) continue;
    await store.interactions.insert(projectId, calls);
    await store.feedback.insert(projectId, thumbs);
    calls = [];
    thumbs = [];
    const out = await lookAtPromotionWatch(store, watch, { actor: 'bench' });
    decisions.push(out.decision);
    if (out.decision === 'rollback') {
      if ((await store.models.production(projectId, 'r'))?.name !== 'previous')
        throw new Error(`deployment ${d}: rolled back, but the registry does not say so`);
      return { rolledBackAt: n, decisions };
    }
    if (n >= maxUsers) break;
    watch = (await store.watches.get(projectId, watch.id))!;
  }
  return { rolledBackAt: null, decisions };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Users until rollback per deployment, never-rolled-back as +Infinity (so the median is honest). */
function usersToRollback(results: DeploymentResult[]): number[] {
  return results.map((r) => r.rolledBackAt ?? Number.POSITIVE_INFINITY);
}

export const guardrailBench: Bench = {
  name: 'guardrail',
  summary:
    'Promotion watches: users until a planted 10-point drop is rolled back, false rollbacks in A/A (real store + pure)',
  keyMetrics: [
    'guardrail_users_to_rollback_p50',
    'guardrail_drop_rolled_back_rate',
    'guardrail_false_rollback_rate',
    'guardrail_store_pure_agreement_rate',
  ],
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const c = ctx.tiny ? TINY : FULL;
    const dir = mkdtempSync(join(tmpdir(), 'ratchet-bench-guardrail-'));
    // synchronous=normal: a bench's rows need not survive a power cut, and fsyncs would measure the disk.
    const store = await Store.open(`sqlite:${join(dir, 'ratchet.db')}?synchronous=normal`);
    const started = performance.now();
    try {
      const drops: DeploymentResult[] = [];
      let agree = 0;
      let compared = 0;
      for (let d = 0; d < c.dropDeploymentsStore; d++) {
        const seed = 1_000 + d;
        const viaStore = await storePath(store, `drop-${d}`, seed, c, c.drop, c.maxUsersDrop);
        const pure = purePath(seed, c, c.drop, c.maxUsersDrop);
        drops.push(viaStore);
        compared++;
        if (JSON.stringify(viaStore.decisions) === JSON.stringify(pure.decisions)) agree++;
        if ((d + 1) % 20 === 0) ctx.log(`drop deployments: ${d + 1}/${c.dropDeploymentsStore}`);
      }
      const storeAa: DeploymentResult[] = [];
      for (let d = 0; d < c.aaDeploymentsStore; d++) {
        const seed = 500_000 + d;
        const viaStore = await storePath(store, `aa-${d}`, seed, c, 0, c.maxUsersAaStore);
        const pure = purePath(seed, c, 0, c.maxUsersAaStore);
        storeAa.push(viaStore);
        compared++;
        if (JSON.stringify(viaStore.decisions) === JSON.stringify(pure.decisions)) agree++;
      }
      const storeSeconds = (performance.now() - started) / 1000;
      ctx.log(`store path: ${storeSeconds.toFixed(0)} s`);
      const aa: DeploymentResult[] = [];
      for (let d = 0; d < c.aaDeploymentsPure; d++)
        aa.push(purePath(1_000_000 + d, c, 0, defaultWatchPolicy.users));
      const toRollback = usersToRollback(drops);
      const rolled = drops.filter((r) => r.rolledBackAt !== null).length;
      const metrics = {
        guardrail_users_to_rollback_p50: median(toRollback),
        guardrail_users_to_rollback_p90_count: [...toRollback].sort((a, b) => a - b)[
          Math.floor(0.9 * toRollback.length)
        ]!,
        guardrail_drop_rolled_back_rate: round(rolled / drops.length, 4),
        guardrail_false_rollback_rate: round(aa.filter((r) => r.rolledBackAt !== null).length / aa.length, 4),
        guardrail_false_rollback_store_rate: round(
          storeAa.filter((r) => r.rolledBackAt !== null).length / Math.max(1, storeAa.length),
          4,
        ),
        guardrail_store_pure_agreement_rate: round(agree / compared, 4),
        guardrail_store_s: round(storeSeconds, 1),
      };
      const notes =
        `Default watch policy (holdback ${defaultWatchPolicy.holdbackShare * 100}%, alpha ${defaultWatchPolicy.alpha} ` +
        `split over 5 metrics, thumbs-up share ${0.6 * defaultWatchPolicy.alpha}, tau ${defaultWatchPolicy.tauInStandardDeviations} sd, ` +
        `length ${defaultWatchPolicy.users} users). Users: each held back with probability 0.05, rates 1 to ` +
        `${c.maxRatingsPerUser} answers (uniform) with a propensity Beta(rate x ${c.concentration}, (1 - rate) x ` +
        `${c.concentration}) of their own; holdback rate ${c.baseRate}, promoted model ${c.baseRate} - drop. ` +
        `Drop: ${c.dropDeploymentsStore} deployments of a ${c.drop * 100}-point drop on the real store (SQLite in a temp ` +
        `folder; a project per deployment; setStage opens the watch; each user's calls and source-user thumbs inserted ` +
        `every ${c.lookEvery} users, then lookAtPromotionWatch, the look ratchet serve runs), at most ${c.maxUsersDrop} ` +
        `users each (a deployment not rolled back by then counts as never: infinite in the median). A/A: ` +
        `${c.aaDeploymentsPure} deployments through the pure path (the same per-user sums fed to core's lookAtWatch, ` +
        `the function the store path's look calls) for the watch's whole length of ${defaultWatchPolicy.users} users, ` +
        `looked at every ${c.lookEvery}; the store path would take hours for them. Agreement: on ${compared} shared ` +
        `seeds (the ${c.dropDeploymentsStore} drop deployments and ${c.aaDeploymentsStore} A/A ones of ` +
        `${c.maxUsersAaStore} users through the store), the share where both paths took the same decision at every ` +
        `look. The gateway's sticky per-user hash is simulated by a seeded draw per user. Seeded: the same numbers ` +
        'on every run.';
      return { metrics, notes };
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
