// The demo records itself (issue 19 item 7, issue 13's demo_failed_calls): `ratchet demo` over
// three seeds, each a real run (the tiny policy served by the worker behind the gateway, simulated
// people chatting and rating, the loop's rounds), read back from the record each run writes with
// --record. `demo` runs the default population and times one seed as a newcomer would: a fresh
// `git clone` of main, then `make demo` (install and build included, warm npm and uv caches).
// `demo-realistic` runs the realistic population (about 12% of answers rated, a third of raters
// adversarial) in this checkout. The runs' records are kept beside the result, so the per-round
// outcomes stay machine-readable.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DemoRecord } from '../packages/cli/src/demo/loop-demo.js';
import { workerCommand } from '../packages/loop/src/training/worker.js';
import type { Bench, BenchContext, BenchOutcome } from './lib/bench.js';
import { benchDir, repoDir, round, workDir } from './lib/results.js';

type Population = DemoRecord['population'];

/** Where the runs' records are kept (beside bench/results/demo*.json, not read as results). */
export const demoRecordsDir = join(benchDir, 'results', 'demo-records');

const seeds = [7, 8, 9];

/** The 1-minute load average every 30 s while runs go: the machine is shared. */
function loadSampler(): { stop: () => number[] } {
  const samples = [loadavg()[0]!];
  const timer = setInterval(() => samples.push(loadavg()[0]!), 30_000);
  return {
    stop: () => {
      clearInterval(timer);
      samples.push(loadavg()[0]!);
      return samples;
    },
  };
}

/** Runs a command, its output to a log file; resolves with the exit code. */
function run(cmd: string, args: string[], cwd: string, logPath: string): Promise<number> {
  return new Promise((resolveCode, reject) => {
    const out = (data: Buffer) => writeFileSync(logPath, data, { flag: 'a' });
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', out);
    child.stderr.on('data', out);
    child.on('error', reject);
    child.on('exit', (code) => resolveCode(code ?? 1));
  });
}

/** The demo's arguments for one recorded run that exits, in its own database and folders. */
function demoArgs(
  dir: string,
  seed: number,
  population: Population,
  tiny: boolean,
  extra: string[] = [],
): string[] {
  const args = [
    '--database-url',
    `sqlite:${join(dir, 'ratchet.db')}`,
    'demo',
    '--exit',
    '--port',
    '0',
    '--seed',
    String(seed),
    '--population',
    population,
    '--data-dir',
    join(dir, 'data'),
    '--report-dir',
    join(dir, 'report'),
    '--record',
    join(dir, 'record.json'),
  ];
  // The smoke configuration: the test-size policy, one small round.
  if (tiny)
    args.push(
      ...['--preset', 'test', '--rounds', '1', '--chats', '40', '--probe', '20', '--risky-round', '0'],
      '--no-careless-promotion',
      '--model-dir',
      join(workDir, 'demo-tiny-policy'),
    );
  return [...args, ...extra];
}

interface TimedRecord {
  record: DemoRecord;
  minutes: number;
}

/** One run of `ratchet demo` in this checkout. */
async function runInCheckout(
  ctx: BenchContext,
  seed: number,
  population: Population,
  checkout = repoDir,
  extra: string[] = [],
): Promise<TimedRecord> {
  const dir = join(workDir, `demo-${population}-${seed}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const log = join(dir, 'demo.log');
  ctx.log(`demo ${population} seed ${seed}: log ${log}`);
  const t0 = Date.now();
  const code = await run(
    process.execPath,
    ['packages/cli/bin/ratchet.js', ...demoArgs(dir, seed, population, ctx.tiny, extra)],
    checkout,
    log,
  );
  if (code !== 0) throw new Error(`demo ${population} seed ${seed} exited ${code}; see ${log}`);
  return { record: readRecord(join(dir, 'record.json')), minutes: (Date.now() - t0) / 60_000 };
}

/**
 * A newcomer's run: a fresh clone of main, `make install build` then `make demo` with the seed
 * (timed together: what `make demo` does on a fresh clone), from the same warm package caches
 * this machine has.
 */
async function runFromFreshClone(
  ctx: BenchContext,
  clone: string,
  seed: number,
): Promise<TimedRecord & { setupMinutes: number }> {
  const out = join(workDir, 'demo-fresh-clone');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const log = join(out, 'demo.log');
  {
    const gitDir = execFileSync('git', ['rev-parse', '--path-format=absolute', '--git-common-dir'], {
      cwd: repoDir,
      encoding: 'utf8',
    }).trim();
    execFileSync('git', ['clone', '--quiet', '--branch', 'main', gitDir, clone]);
    ctx.log(`demo default seed ${seed}: fresh clone of main at ${clone}, log ${log}`);
    const t0 = Date.now();
    let code = await run('make', ['install', 'build'], clone, log);
    if (code !== 0) throw new Error(`make install build exited ${code}; see ${log}`);
    const setupMinutes = (Date.now() - t0) / 60_000;
    // The demo's own default folders in the clone, as a newcomer gets them; only the record is
    // asked for.
    const args = `--exit --port 0 --seed ${seed} --record ${join(out, 'record.json')}`;
    code = await run('make', ['demo', `DEMO_ARGS=${args}`], clone, log);
    if (code !== 0) throw new Error(`make demo exited ${code}; see ${log}`);
    return {
      record: readRecord(join(out, 'record.json')),
      minutes: (Date.now() - t0) / 60_000,
      setupMinutes,
    };
  }
}

function readRecord(path: string): DemoRecord {
  return JSON.parse(readFileSync(path, 'utf8')) as DemoRecord;
}

const pct = (x: number | null) => (x === null ? '-' : `${(100 * x).toFixed(1)}%`);

/** One line per round: what production and the candidate truly were, and what the loop decided. */
export function roundsNote(r: DemoRecord): string {
  const rounds = r.rounds
    .map(
      (x) =>
        `r${x.round} ${x.method} ${pct(x.trueQuality)} vs ${pct(x.candidateQuality)}: gate ${x.gate}, experiment ${x.experiment}, ${x.outcome}`,
    )
    .join('; ');
  return `seed ${r.seed}: ${pct(r.trueQualityStart)} -> ${pct(r.trueQualityEnd)} (${rounds})`;
}

/** The metrics of a set of runs of one population, under a prefix (`demo` or `realistic`). */
export function demoMetrics(prefix: string, runs: readonly TimedRecord[]): Record<string, number> {
  const m: Record<string, number> = {};
  for (const { record: r, minutes } of runs) {
    m[`${prefix}_seed${r.seed}_minutes`] = round(minutes, 1);
    m[`${prefix}_seed${r.seed}_true_quality_start`] = round(r.trueQualityStart);
    m[`${prefix}_seed${r.seed}_true_quality_end`] = round(r.trueQualityEnd);
    m[`${prefix}_seed${r.seed}_failed_calls_count`] = r.failedCalls;
    // A round the loop promoted ends `succeeded` (rejected and rolled-back rounds say so).
    m[`${prefix}_seed${r.seed}_promoted_count`] = r.rounds.filter(
      (x) => x.outcome === 'succeeded' && x.experiment === 'ship',
    ).length;
  }
  const ends = runs.map((x) => x.record.trueQualityEnd);
  const gains = runs.map((x) => x.record.trueQualityEnd - x.record.trueQualityStart);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  m[`${prefix}_seed_max_minutes`] = round(Math.max(...runs.map((x) => x.minutes)), 1);
  m[`${prefix}_true_quality_start`] = round(mean(runs.map((x) => x.record.trueQualityStart)));
  m[`${prefix}_true_quality_end`] = round(mean(ends));
  m[`${prefix}_true_quality_end_min`] = round(Math.min(...ends));
  m[`${prefix}_true_quality_gain`] = round(mean(gains));
  m[`${prefix}_failed_calls`] = runs.reduce((a, x) => a + x.record.failedCalls, 0);
  m[`${prefix}_calls_count`] = runs.reduce((a, x) => a + x.record.calls, 0);
  return m;
}

function keepRecords(population: Population, runs: readonly TimedRecord[]): void {
  mkdirSync(demoRecordsDir, { recursive: true });
  for (const { record, minutes } of runs)
    writeFileSync(
      join(demoRecordsDir, `${population}-seed${record.seed}.json`),
      `${JSON.stringify({ minutes: round(minutes, 1), ...record }, null, 2)}\n`,
    );
}

function loadText(samples: number[]): string {
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return `1-minute load average during the runs: mean ${mean.toFixed(1)}, ${Math.min(...samples).toFixed(1)} to ${Math.max(...samples).toFixed(1)} (${samples.length} samples, every 30 s)`;
}

export const demoBench: Bench = {
  name: 'demo',
  summary:
    'ratchet demo over three seeds, one from a fresh clone with make demo (minutes, true quality, failed calls)',
  keyMetrics: ['demo_minutes', 'demo_true_quality_start', 'demo_true_quality_end_min', 'demo_failed_calls'],
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const load = loadSampler();
    const runs: TimedRecord[] = [];
    let fresh: (TimedRecord & { setupMinutes: number }) | undefined;
    // The other seeds run in the same clone afterwards (built, tiny policy cached), side by side:
    // only the fresh clone's seed is timed as a newcomer's run, and true quality does not depend on
    // the machine's load, so the bench takes one demo's time less.
    const dir = mkdtempSync(join(tmpdir(), 'ratchet-demo-clone-'));
    const clone = join(dir, 'ratchet');
    try {
      if (!ctx.tiny) {
        fresh = await runFromFreshClone(ctx, clone, seeds[0]!);
        runs.push(fresh);
      }
      const others = ctx.tiny ? [seeds[0]!] : seeds.slice(1);
      runs.push(
        ...(await Promise.all(
          others.map((seed) => runInCheckout(ctx, seed, 'default', ctx.tiny ? repoDir : clone)),
        )),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const samples = load.stop();
    if (!ctx.tiny) keepRecords('default', runs);
    const metrics = demoMetrics('demo', runs);
    if (fresh) {
      metrics.demo_minutes = round(fresh.minutes, 1);
      metrics.demo_fresh_clone_setup_minutes = round(fresh.setupMinutes, 1);
    }
    metrics.demo_load_average_mean_ratio = round(samples.reduce((a, b) => a + b, 0) / samples.length, 1);
    return {
      metrics,
      notes: [
        `ratchet demo (default population: 600 people who rate 95% of answers, 10% of raters adversarial; 4 rounds of 250 chats, round 2 the planted risky recipe, then the careless promotion by hand) on seeds ${runs.map((x) => x.record.seed).join(', ')}.`,
        fresh
          ? `demo_minutes: seed ${fresh.record.seed} as a newcomer runs it: git clone of main into a temp folder, make install build (${round(fresh.setupMinutes, 1)} min: npm install and the uv venv from warm caches, tsc, the web build), then make demo DEMO_ARGS="--exit --seed ${fresh.record.seed} --record ..." (the tiny policy built in the clone).`
          : '',
        "The other seeds ran side by side in the same clone afterwards (built, tiny policy cached), each in its own database and model server, so their _minutes include each other's load. True quality is the oracle on 150 fixed probe prompts; _start is production before round 1, _end production after the last step; the unsuffixed demo_true_quality_start/_end are means over the seeds.",
        `Rounds (production vs candidate true quality): ${runs.map((x) => roundsNote(x.record)).join(' | ')}.`,
        'Records with every round: bench/results/demo-records/default-seed*.json.',
        `${loadText(samples)}; the machine (2 cores) was shared with other engineers' work.`,
      ]
        .filter(Boolean)
        .join(' '),
    };
  },
};

export const demoRealisticBench: Bench = {
  name: 'demo-realistic',
  summary:
    'ratchet demo --population realistic over three seeds (true quality gain with sparse, adversarial ratings)',
  keyMetrics: ['realistic_true_quality_gain', 'realistic_true_quality_end_min', 'realistic_failed_calls'],
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const load = loadSampler();
    // The seeds run side by side (each its own database and model server), on one tiny policy
    // built first so that three builds do not race into one folder. The careless promotion by
    // hand is left out: it shows the guardrail, not the loop, and it is not a round; the gain is
    // the loop's rounds'.
    const modelDir = join(workDir, 'demo-realistic-policy');
    const extra = ['--no-careless-promotion', ...(ctx.tiny ? [] : ['--model-dir', modelDir])];
    if (!ctx.tiny) {
      // One torch thread, as the demo gives its own workers: on this shared 2-core machine two
      // threads wait on each other (the build ran at a tenth of its speed).
      process.env.OMP_NUM_THREADS ??= '1';
      const log = join(workDir, 'demo-realistic-policy.log');
      const code = await run(
        workerCommand({}, repoDir),
        ['tiny', '--out', modelDir, '--preset', 'default'],
        repoDir,
        log,
      );
      if (code !== 0) throw new Error(`building the tiny policy exited ${code}; see ${log}`);
    }
    const runs = await Promise.all(
      (ctx.tiny ? [seeds[0]!] : seeds).map((seed) => runInCheckout(ctx, seed, 'realistic', repoDir, extra)),
    );
    const samples = load.stop();
    if (!ctx.tiny) keepRecords('realistic', runs);
    const metrics = demoMetrics('realistic', runs);
    metrics.realistic_load_average_mean_ratio = round(samples.reduce((a, b) => a + b, 0) / samples.length, 1);
    return {
      metrics,
      notes: [
        `ratchet demo --population realistic on seeds ${runs.map((x) => x.record.seed).join(', ')}, side by side, each in its own database in this checkout (one tiny policy built first), without the careless promotion by hand: 3,000 people, 30% of whom ever rate, 40% of the answers they get (about 12% of answers rated), a third of raters adversarial, three segments with different tastes; 4 rounds (round 2 the planted risky recipe), each after 1,000 chats since the last round, the last round's canary chats counted (at least 250 fresh). The canary decides on each user's net dissatisfaction (answers regenerated, edited or abandoned minus answers copied, per answer served; lower is better; every user served is a unit), the mixture tuned to 4 points and the horizon to 3, with thumbs as a guardrail, up to 1,400 users per arm (9,000 canary chats).`,
        'realistic_true_quality_gain: production true quality (oracle, 150 probe prompts) after the last step minus before round 1, mean over the seeds.',
        `Rounds (production vs candidate true quality): ${runs.map((x) => roundsNote(x.record)).join(' | ')}.`,
        'Records with every round: bench/results/demo-records/realistic-seed*.json.',
        `${loadText(samples)}; the machine (2 cores) was shared with other engineers' work.`,
      ].join(' '),
    };
  },
};
