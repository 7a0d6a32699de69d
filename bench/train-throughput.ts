import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Bench, loadNote } from './lib/bench.js';
import { runJson } from './lib/procs.js';
import { type BenchResultFile, repoDir, resultPath, workDir } from './lib/results.js';

/** What bench/train_throughput.py prints: metrics plus the per-run detail the notes quote. */
interface TrainThroughputOutput {
  metrics: Record<string, number>;
  runs: Record<
    string,
    { final_loss: Record<string, number>; epoch_mean_loss?: Record<string, number> } & Record<string, unknown>
  >;
  config: {
    size: string;
    preset: string;
    pairs: number;
    epochs: number;
    batch: number;
    max_length: number;
    torch_threads: number;
    cpus: number;
    parameters: number;
    mean_row_tokens: Record<string, number>;
  };
}

const methods = ['sft', 'kto', 'dpo', 'reward', 'rwsft'];
/** train_throughput.py's --size values, run in this order: the tiny policy, then ~20M parameters. */
const sizes = ['tiny', '20m'];

export const trainThroughput: Bench = {
  name: 'train-throughput',
  summary:
    "training tokens/s of the worker's trainers vs TRL's with its defaults, on CPU: the tiny model, and a ~20M-parameter Llama at 256 tokens (also vs TRL without gradient checkpointing)",
  keyMetrics: [
    'train_speedup_vs_trl',
    ...methods.flatMap((m) => [`train_tokens_per_s_cpu_${m}`, `trl_tokens_per_s_cpu_${m}`]),
    'train_speedup_vs_trl_20m_min',
    'train_speedup_vs_trl_20m_nockpt_min',
    ...['sft', 'kto', 'dpo'].flatMap((m) => [
      `train_20m_tokens_per_s_cpu_${m}`,
      `trl_20m_tokens_per_s_cpu_${m}`,
      `trl_nockpt_20m_tokens_per_s_cpu_${m}`,
    ]),
  ],
  async run(ctx) {
    // The smoke test trains one TRL-backed method and our own trainer, on 8 pairs for one step,
    // and dpo through the 20m size's path (256-token rows, TRL with and without checkpointing),
    // both on the test preset of the tiny model. BENCH_TT_SIZES=20m runs one size; BENCH_TT_METHODS=reward a subset of
    // methods; BENCH_TT_THREADS=0 keeps torch's default threads (1 by default);
    // BENCH_TT_REPEATS=5 repeats each set of runs five times.
    const methodFilter = process.env.BENCH_TT_METHODS;
    const wanted = ctx.tiny ? sizes : (process.env.BENCH_TT_SIZES?.split(',') ?? sizes);
    const unknown = wanted.filter((s) => !sizes.includes(s));
    if (unknown.length)
      throw new Error(`BENCH_TT_SIZES: unknown ${unknown.join(', ')} (known: ${sizes.join(', ')})`);
    const fromRuns = ctx.tiny ? undefined : process.env.BENCH_TT_FROM_RUNS;
    const metrics: Record<string, number> = {};
    const notes: string[] = [];
    for (const size of sizes.filter((s) => wanted.includes(s))) {
      const args = [
        '--size',
        size,
        ...(ctx.tiny
          ? ['--tiny', '--methods', methodFilter ?? (size === 'tiny' ? 'dpo,rwsft' : 'dpo')]
          : methodFilter
            ? ['--methods', methodFilter]
            : []),
        ...(process.env.BENCH_TT_THREADS ? ['--threads', process.env.BENCH_TT_THREADS] : []),
        // More interleaved repeats steady the medians when other jobs load the machine (3 by default).
        ...(process.env.BENCH_TT_REPEATS ? ['--repeats', process.env.BENCH_TT_REPEATS] : []),
        // BENCH_TT_FROM_RUNS=dir: summarize dir/train-throughput-<size>-runs.json (an earlier run's
        // saved output) again instead of training, e.g. after a change in how metrics are named.
        ...(fromRuns ? ['--from-runs', join(fromRuns, `train-throughput-${size}-runs.json`)] : []),
      ];
      const loadBefore = loadNote();
      ctx.log(`train-throughput: .venv/bin/python bench/train_throughput.py ${args.join(' ')}`);
      const out = await runJson<TrainThroughputOutput>(
        {
          name: `train-throughput-${size}`,
          command: join(repoDir, '.venv', 'bin', 'python'),
          args: [join(repoDir, 'bench', 'train_throughput.py'), ...args],
          env: { PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: undefined },
          // Per-run progress lines (time, tokens/s, loss, load) for watching a long run.
          logFile: join(workDir, 'logs', `train-throughput-${size}.log`),
        },
        (ctx.tiny ? 10 : 150) * 60_000,
      );
      // Every run's time, CPU time, loss and load, for a closer look than the medians.
      mkdirSync(join(workDir, 'logs'), { recursive: true });
      writeFileSync(
        join(workDir, 'logs', `train-throughput-${size}-runs.json`),
        `${JSON.stringify(out, null, 2)}\n`,
      );
      Object.assign(metrics, out.metrics);
      if (fromRuns)
        notes.push(`Size ${size}: metrics summarized again from the runs saved in ${fromRuns}, not re-run.`);
      notes.push(size === 'tiny' ? tinyNote(out, loadBefore) : sizedNote(out));
    }
    // A size left out (BENCH_TT_SIZES) keeps its metrics from the recorded result, said so in the notes.
    const skipped = ctx.tiny ? [] : sizes.filter((s) => !wanted.includes(s));
    if (skipped.length) notes.push(carryOver(skipped, metrics));
    // (a carried note has it already)
    if (!notes.some((n) => n.includes('No GPU here')))
      notes.push(
        'No GPU here: the GPU path (bf16, FSDP through accelerate with worker/configs/fsdp.yaml) is not measured.',
      );
    return { metrics, notes: notes.join(' ') };
  },
};

/** The recorded result's metrics of the sizes not run now, added to metrics; the note saying so. */
function carryOver(skipped: string[], metrics: Record<string, number>): string {
  const path = resultPath('train-throughput');
  if (!existsSync(path)) return `Sizes ${skipped.join(', ')} not run (no recorded result to keep).`;
  const previous = JSON.parse(readFileSync(path, 'utf8')) as BenchResultFile;
  const sizeOf = (name: string) => sizes.find((s) => s !== 'tiny' && name.includes(`_${s}`)) ?? 'tiny';
  for (const [name, value] of Object.entries(previous.metrics)) {
    if (skipped.includes(sizeOf(name)) && !(name in metrics)) metrics[name] = value;
  }
  return `Size(s) ${skipped.join(', ')} not re-run: their metrics are those recorded ${previous.date.slice(0, 10)} at ${previous.commit}, whose notes read: ${previous.notes}`;
}

/** Each method's losses, ours first, then TRL's defaults, then TRL without checkpointing. */
function inSideOrder(losses: Record<string, number> | undefined): string {
  return ['ours', 'trl', 'trl_nockpt']
    .filter((side) => losses && side in losses)
    .map((side) => losses![side])
    .join(' vs ');
}

function losses(out: TrainThroughputOutput): string {
  return Object.entries(out.runs)
    .map(([m, r]) => `${m} ${inSideOrder(r.final_loss)}`)
    .join(', ');
}

function epochLosses(out: TrainThroughputOutput): string {
  return Object.entries(out.runs)
    .map(([m, r]) => `${m} ${inSideOrder(r.epoch_mean_loss)}`)
    .join(', ');
}

function tinyNote(out: TrainThroughputOutput, loadBefore: string): string {
  const c = out.config;
  return [
    `Tiny local policy (${c.preset} preset) on CPU, fp32, LoRA r16 all-linear, ${c.pairs} preference pairs from the demo domain,`,
    `${c.epochs} epoch(s), batch ${c.batch}, lr 1e-3, logging every step; ${c.torch_threads} torch threads on ${c.cpus} cores.`,
    "Ours: the worker's trainers as `ratchet-worker train` runs them (no gradient checkpointing, reference log-probs",
    'precomputed in one batched pass for dpo/kto (kto: a completion and its mismatched KL completion packed in one row, the prompt once), length-grouped batches for sft/rwsft/reward/dpo,',
    'fixed length-grouped batches holding both labels for kto, reward and dpo pairs packed one per row (dpo: the prompt once, a mask keeping the answers apart), an LM head computing log-probs only and the loss-only metrics',
    '(sft, kto, dpo), the heap frozen from the GC while training). TRL: its trainer with its default',
    'config (gradient checkpointing on, reference forward every step, random batches, chosen and rejected as separate padded rows), only the shared hyperparameters set',
    "and fp32 (TRL's default bf16 cannot run on this CPU), plus our objective: assistant-only loss (sft), reward centering 0.01 (reward). rwsft has no TRL counterpart: TRL's SFTTrainer on the same",
    '(prompt, completion) rows stands in, so its losses are of different objectives.',
    'Tokens: real (non-pad) tokens of the rows trained on, the same for both sides; time: model load to trained adapter saved.',
    `Interleaved ours/TRL runs (order alternating), median of the repeats; final loss = mean of the last quarter of steps,`,
    `ours vs TRL: ${losses(out)}. cpu_time_speedup_* is the ratio of process CPU time, less disturbed by other load.`,
    `Machine shared with other engineers' jobs: ${loadBefore} at start, ${loadNote()} at the end; wall times are noisy.`,
  ].join(' ');
}

/** The range of the 1-minute load average read after each run. */
function loadRange(out: TrainThroughputOutput): string {
  const loads = Object.values(out.runs).flatMap((r) =>
    Object.values(r).flatMap((v) =>
      Array.isArray(v) ? v.map((run) => (run as { load_avg_1m: number }).load_avg_1m) : [],
    ),
  );
  return `${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)}`;
}

function sizedNote(out: TrainThroughputOutput): string {
  const c = out.config;
  const rows = Object.entries(c.mean_row_tokens)
    .map(([m, n]) => `${m} ${n}`)
    .join(', ');
  return [
    `Size ${c.size} (metrics *_${c.size}_*): a Llama of ${(c.parameters / 1e6).toFixed(1)}M parameters (${c.preset} preset: hidden 512, 7 layers, GQA 8/4 heads,`,
    `MLP 1376, the tiny model's byte-level BPE tokenizer trained on the domain corpus), random initialization, fp32, LoRA r16 all-linear;`,
    `${c.pairs} preference pairs, each conversation given earlier exchanges of the domain as history up to max_length ${c.max_length}`,
    `(mean real tokens per row: ${rows}), ${c.epochs} epoch, batch ${c.batch}, lr 1e-3; ${c.torch_threads} torch thread(s) on ${c.cpus} cores.`,
    "Three sides per method, order rotating: ours, TRL's defaults (gradient checkpointing on, as TRL 1.16's configs default),",
    'and TRL with gradient_checkpointing=False (trl_nockpt, its fastest fair setting); median of the repeats.',
    `Final loss (last quarter of the steps) ours vs TRL vs TRL without checkpointing: ${losses(out)};`,
    `mean loss over the epoch (every row once on each side, so batch order matters less): ${epochLosses(out)}.`,
    "kto's rows are shuffled (seed 0, the same file for all sides) so that TRL's neighbor KL pairs are mismatched.",
    `Machine shared with other engineers' jobs: 1-minute load average ${loadRange(out)} after the runs (on 2 cores), so wall times stretch; cpu_time_speedup_* beside them.`,
  ].join(' ');
}
